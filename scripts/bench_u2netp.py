#!/usr/bin/env python3
"""Burn (gpu-server) against onnxruntime and rembg on this machine, in one run.

Called by scripts/bench-u2netp, which builds gpu-server and prepares the virtualenv. Prints
ms per image for each and the ratio Burn / reference (below 1.0 means Burn is faster).

1. Model only: U²-Netp forward pass on a 1x3x320x320 input, onnxruntime (all cores) vs Burn.
2. In process: one 12 MP JPEG photo -> RGBA cut-out PNG bytes, rembg's remove() vs
   `gpu-server bench --photo` (decode, preprocess, inference, mask, compose, encode).
3. As a user runs it: the CLI, `gpu-server remove FOLDER -o OUT`, process start included, on
   12 noisy 1024x683 photos and on 3 noisy 12 MP photos (scikit-image's real photos, with
   phone-like sensor noise), with the default output (matting) and with `--refine off`,
   against rembg's remove() with a session made beforehand (not timed) reading and writing the
   same files. Prints wall seconds, ms per photo, the ratios and the output bytes; for each
   CLI run its system time against its user time and its page faults per photo (the process's
   own counts), and the first photo's model stage against the median photo's (`--timings`).
4. Bytes and ms of each format the 12 MP cut-out can go out in (PNG download, the page's WebP
   preview, WebP at full size, JPEG on white), from `gpu-server bench --photo`.
"""

import argparse
import io
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np
import onnxruntime as ort
from PIL import Image
from rembg import new_session, remove
from skimage import data

from benchlib import cpu_model


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


NOISY_SOURCES = ["chelsea", "astronaut", "coffee", "rocket", "cat", "immunohistochemistry"]


def noisy_photos(folder: pathlib.Path, size, count, seed):
    """`count` phone-like JPEGs of `size` from scikit-image's real photos (cycled, mirrored on
    the second pass so no two files are equal) with Gaussian sensor noise (sigma 4)."""
    if folder.exists() and len(list(folder.glob("*.jpg"))) == count:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        src = getattr(data, NOISY_SOURCES[i % len(NOISY_SOURCES)])()
        if src.ndim == 2:
            src = np.stack([src] * 3, axis=-1)
        img = Image.fromarray(src[..., :3]).resize(size, Image.LANCZOS)
        if i >= len(NOISY_SOURCES):
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (size[1], size[0], 3)).astype(np.int16)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(folder / f"photo{i:02}.jpg", quality=92)


def rembg_folder(folder, out, session):
    """rembg as a script over a folder: read each file, remove(), write the PNG."""
    t = time.perf_counter()
    for f in sorted(folder.glob("*.jpg")):
        (out / (f.stem + ".png")).write_bytes(remove(f.read_bytes(), session=session))
    return time.perf_counter() - t


def cli_folder(binary, folder, out, *flags):
    """Wall seconds of one CLI run, and what the process used: user and system seconds, minor
    and major page faults (this script's children's counts before and after), and the first
    photo's model stage over the median photo's."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    done = subprocess.run([binary, "remove", str(folder), "-o", str(out), "--timings", *flags],
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    model = [json.loads(line)["model_ms"] for line in done.stderr.splitlines()
             if line.startswith("{")]
    return wall, {
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        "major_faults": after.ru_majflt - before.ru_majflt,
        "first_model_ms": model[0],
        "median_model_ms": statistics.median(model),
    }


def folder_bytes(out):
    return sum(f.stat().st_size for f in out.glob("*.png"))


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

    cli_rows = []
    use_rows = []
    sets = [("12 x 1024x683", pathlib.Path(".cache/bench/noisy-1024"), (1024, 683), 12, 0.7),
            ("3 x 12 MP", pathlib.Path(".cache/bench/noisy-12mp"), (4000, 3000), 3, 0.5)]
    for label, folder, size, count, goal in sets:
        noisy_photos(folder, size, count, seed=count)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = pathlib.Path(tmp)
            outs = {k: tmp / k for k in ("rembg", "matting", "off")}
            for o in outs.values():
                o.mkdir()
            # Every CLI run once unmeasured first, so each measured one finds the files and
            # the binary in the page cache as rembg's does.
            cli_folder(args.gpu_server, folder, outs["off"], "--refine", "off")
            rembg_s = rembg_folder(folder, outs["rembg"], session)
            matting_s, matting_use = cli_folder(args.gpu_server, folder, outs["matting"])
            off_s, off_use = cli_folder(args.gpu_server, folder, outs["off"], "--refine", "off")
            cli_rows.append((label, count, goal, rembg_s, matting_s, off_s,
                             folder_bytes(outs["rembg"]), folder_bytes(outs["matting"]),
                             folder_bytes(outs["off"])))
            use_rows.append((label, count, matting_use, off_use))
            shutil.rmtree(tmp, ignore_errors=True)

    cores = os.cpu_count()
    print(f"machine: {cpu_model()}, {cores} cores; onnxruntime {ort.__version__} (default threads)")
    print(f"{'':34}{'reference ms':>14}{'burn ms':>10}{'ratio':>8}  goal")
    print(f"{'U2-Netp 320x320 forward':34}{ort_ms:14.1f}{burn_ms:10.1f}{burn_ms / ort_ms:8.2f}  <= 0.80 (onnxruntime)")
    print(f"{'12 MP JPEG -> cut-out PNG':34}{rembg_ms:14.1f}{e2e_ms:10.1f}{e2e_ms / rembg_ms:8.2f}  (in process, default output)")
    print()
    print("the CLI as a user runs it (process start included) against rembg remove() over the same files")
    print(f"{'':16}{'rembg s':>9}{'ours s':>9}{'ratio':>7}{'off s':>9}{'ratio':>7}  goal   "
          f"{'rembg MB':>9}{'ours MB':>9}{'off MB':>8}")
    for label, count, goal, rembg_s, matting_s, off_s, rb, mb, ob in cli_rows:
        print(f"{label:16}{rembg_s:9.2f}{matting_s:9.2f}{matting_s / rembg_s:7.2f}{off_s:9.2f}"
              f"{off_s / rembg_s:7.2f}  <= {goal:.1f}  {rb / 1e6:9.1f}{mb / 1e6:9.1f}{ob / 1e6:8.1f}")
    print()
    print("what each CLI run used: system time / user time (goal < 5%), page faults per photo,")
    print("the first photo's model stage / the median photo's (goal <= 1.10)")
    for label, count, *uses in use_rows:
        for name, u in zip(("default", "off"), uses):
            print(f"{label:16}{name:9}sys/user {u['sys_s'] / u['user_s']:6.1%}"
                  f"  ({u['sys_s']:.2f} s / {u['user_s']:.2f} s)"
                  f"  faults/photo {u['minor_faults'] / count:7.0f} minor {u['major_faults'] / count:4.0f} major"
                  f"  first/median model {u['first_model_ms'] / u['median_model_ms']:5.2f}"
                  f"  ({u['first_model_ms']:.0f} / {u['median_model_ms']:.0f} ms)")
    formats = e2e.get("formats", {})
    print()
    print(f"the 12 MP cut-out in each format ({args.photo}):")
    for name, f in formats.items():
        print(f"{name:16}{f['bytes'] / 1e6:8.2f} MB{f['ms']:9.0f} ms")
    print(json.dumps({"cpu": cpu_model(), "formats": formats, "use": [
        {"set": r[0], "photos": r[1], "default": r[2], "off": r[3]} for r in use_rows], "cli": [
        {"set": r[0], "photos": r[1], "rembg_s": r[3], "matting_s": r[4], "off_s": r[5],
         "matting_ratio": r[4] / r[3], "off_ratio": r[5] / r[3], "rembg_bytes": r[6],
         "matting_bytes": r[7], "off_bytes": r[8]} for r in cli_rows]}))
    print(json.dumps({"onnxruntime_ms": ort_ms, "burn_ms": burn_ms, "model_ratio": burn_ms / ort_ms,
                      "rembg_ms": rembg_ms, "burn_e2e_ms": e2e_ms, "e2e_ratio": e2e_ms / rembg_ms,
                      "burn_load_ms": burn["load_ms"]}))


if __name__ == "__main__":
    main()
