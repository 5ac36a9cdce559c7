#!/usr/bin/env python3
"""Burn (gpu-server) against onnxruntime and rembg on this machine, in one run.

Called by scripts/bench-u2netp, which builds gpu-server and prepares the virtualenv. Prints
ms per image for each and the ratio Burn / reference (below 1.0 means Burn is faster).

1. Model only: U²-Netp forward pass on a 1x3x320x320 input, onnxruntime (all cores) vs Burn.
2. End to end: one 12 MP JPEG photo -> RGBA cut-out PNG bytes, rembg's remove() vs
   `gpu-server bench --photo` (decode, preprocess, inference, mask, compose, encode).
"""

import argparse
import io
import json
import os
import pathlib
import statistics
import subprocess
import time

import numpy as np
import onnxruntime as ort
from PIL import Image
from rembg import new_session, remove
from skimage import data


def median_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def make_photo(path: pathlib.Path):
    """A 12 MP (4000x3000) JPEG of a real cat photo, with sensor-like noise so it compresses
    like a phone photo rather than a smooth upscale."""
    if path.exists():
        return
    img = Image.fromarray(data.chelsea()).resize((4000, 3000), Image.LANCZOS)
    rng = np.random.default_rng(0)
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (3000, 4000, 3)).astype(np.int16)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=92)


def gpu_server(binary, *args):
    out = subprocess.run([binary, "bench", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpu-server", required=True)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--e2e-iters", type=int, default=5)
    ap.add_argument("--photo", default=".cache/bench/cat-12mp.jpg")
    args = ap.parse_args()

    session = new_session("u2netp")
    inner = session.inner_session
    x = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    name = inner.get_inputs()[0].name
    ort_ms = median_ms(lambda: inner.run(None, {name: x}), 2, args.iters)
    burn = gpu_server(args.gpu_server, "--iters", str(args.iters))
    burn_ms = burn["median_ms_per_image"]

    photo = pathlib.Path(args.photo)
    photo.parent.mkdir(parents=True, exist_ok=True)
    make_photo(photo)
    jpeg = photo.read_bytes()
    rembg_ms = median_ms(lambda: remove(jpeg, session=session), 1, args.e2e_iters)
    e2e = gpu_server(args.gpu_server, "--photo", str(photo), "--iters", str(args.e2e_iters), "--warmup", "1")
    e2e_ms = e2e["median_ms"]

    cores = os.cpu_count()
    print(f"machine: {cores} cores; onnxruntime {ort.__version__} (default threads)")
    print(f"{'':34}{'reference ms':>14}{'burn ms':>10}{'ratio':>8}  goal")
    print(f"{'U2-Netp 320x320 forward':34}{ort_ms:14.1f}{burn_ms:10.1f}{burn_ms / ort_ms:8.2f}  <= 1.00 (onnxruntime)")
    print(f"{'12 MP JPEG -> cut-out PNG':34}{rembg_ms:14.1f}{e2e_ms:10.1f}{e2e_ms / rembg_ms:8.2f}  <= 0.25 (rembg remove)")
    print(json.dumps({"onnxruntime_ms": ort_ms, "burn_ms": burn_ms, "model_ratio": burn_ms / ort_ms,
                      "rembg_ms": rembg_ms, "burn_e2e_ms": e2e_ms, "e2e_ratio": e2e_ms / rembg_ms,
                      "burn_load_ms": burn["load_ms"]}))


if __name__ == "__main__":
    main()
