#!/usr/bin/env python3
"""Print-shop effects (crop, sticker outline, drop shadow) against OpenCV, on a 12 MP cut-out.

Called by scripts/bench-effects, which builds gpu-server and prepares the virtualenv. One run,
this machine:
1. A phone-like 12 MP JPEG (scikit-image's chelsea cat upscaled to 4000x3000, Gaussian noise
   sigma 4, quality 92; the photo of scripts/bench-matting), cut out by `gpu-server remove`
   with the default refinement; `gpu-server bench --photo` times that cut-out.
2. `gpu-server bench --effects-of` times each effect on the cut-out as the pipeline runs it
   (shared::effects::apply: specks found, layout, the effect, compositing).
3. The same effects with opencv-python-headless on the same alpha, as the issue defines them:
   crop = connected components with stats, specks dropped, the box cut out; outline = exact
   Euclidean distance transform (DIST_MASK_PRECISE) + threshold; shadow = Gaussian blur of the
   alpha, shifted, scaled by the opacity. Same sizes: outline 3% and shadow sigma 2% of the
   subject's long side.
Prints a table with the ratios and the goals (each effect at most 1.0x OpenCV; all effects
together under 0.5x the cut-out's own time), one JSON line, and writes example outputs to
--out (a sticker, a 4x6in print on white, the shadowed cut-out).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_matting import make_photo  # noqa: E402
from benchlib import cpu_model  # noqa: E402




def gpu(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True)
    return out.stdout


def median_ms(f, iters, warmup=1):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def opencv_effects(rgba, iters):
    a = np.ascontiguousarray(rgba[:, :, 3])

    def box():
        """The subject's box: parts of alpha >= 16, specks under 0.5% of the largest dropped."""
        p = (a >= 16).astype(np.uint8)
        _, _, st, _ = cv2.connectedComponentsWithStats(p, connectivity=8)
        ar = st[1:, cv2.CC_STAT_AREA]
        k = [i + 1 for i, s in enumerate(ar) if s >= 0.005 * ar.max()]
        x0 = min(st[i, cv2.CC_STAT_LEFT] for i in k)
        y0 = min(st[i, cv2.CC_STAT_TOP] for i in k)
        x1 = max(st[i, cv2.CC_STAT_LEFT] + st[i, cv2.CC_STAT_WIDTH] for i in k)
        y1 = max(st[i, cv2.CC_STAT_TOP] + st[i, cv2.CC_STAT_HEIGHT] for i in k)
        return x0, y0, x1, y1

    x0, y0, x1, y1 = box()
    long = max(x1 - x0, y1 - y0)

    def crop():
        bx0, by0, bx1, by1 = box()
        return rgba[by0:by1, bx0:bx1].copy()

    width = 0.03 * long

    def outline():
        outside = np.where(a >= 128, 0, 255).astype(np.uint8)
        d = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        _, border = cv2.threshold(d, width, 255, cv2.THRESH_BINARY_INV)
        return border

    sigma = 0.02 * long
    dx, dy = 0.01 * long, 0.02 * long

    def shadow():
        soft = cv2.GaussianBlur(a, (0, 0), sigma)
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(soft, m, (a.shape[1], a.shape[0]))
        return cv2.convertScaleAbs(moved, alpha=0.5)

    res = {
        "crop": median_ms(crop, iters),
        "outline": median_ms(outline, iters),
        "shadow": median_ms(shadow, iters),
    }
    res["all"] = res["crop"] + res["outline"] + res["shadow"]
    res["threads"] = cv2.getNumThreads()
    res["subject_long_side"] = int(long)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-server", required=True)
    ap.add_argument("--work", default=".cache/bench-effects")
    ap.add_argument("--out", default="tests/out/effects")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--size", default="4000x3000")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    work, out = pathlib.Path(args.work), pathlib.Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    photo = work / f"photo-{w}x{h}.jpg"
    make_photo(photo, (w, h))
    b = args.gpu_server
    cut = work / "cutout.png"
    gpu(b, "remove", str(photo), "-o", str(cut))
    cut_bench = json.loads(gpu(b, "bench", "--photo", str(photo), "--iters", "3", "--warmup", "1").strip().splitlines()[-1])
    ours = json.loads(gpu(b, "bench", "--effects-of", str(cut), "--iters", str(args.iters)).strip().splitlines()[-1])
    rgba = cv2.imread(str(cut), cv2.IMREAD_UNCHANGED)
    cv = opencv_effects(rgba, args.iters)
    # Example outputs, for looking at.
    gpu(b, "remove", str(photo), "-o", str(out / "sticker.png"), "--crop", "--outline", "--shadow", "--crop-margin", "4%")
    gpu(b, "remove", str(photo), "-o", str(out / "print-4x6in.jpg"), "--size", "4x6in", "--scale", "85%", "--bg-color", "white", "--shadow", "--format", "auto")

    cut_ms = cut_bench["median_ms"]
    print(f"\n== print effects on a {w}x{h} cut-out: {cpu_model()}, {os.cpu_count()} cores, OpenCV {cv2.__version__} ({cv['threads']} threads)")
    print(f"the cut-out itself (gpu-server bench --photo, refine {cut_bench.get('refine')}): {cut_ms:.0f} ms")
    print(f"{'effect':<8} {'ours ms':>9} {'OpenCV ms':>10} {'ratio':>7}  goal")
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "size": [w, h], "cutout_ms": cut_ms, "effects": {}}
    ok = True
    for name in ("crop", "outline", "shadow", "all"):
        mine = ours[name]["median_ms"]
        ratio = mine / cv[name]
        good = ratio <= 1.0
        ok &= good
        print(f"{name:<8} {mine:9.1f} {cv[name]:10.1f} {ratio:6.2f}x  <= 1.0x {'met' if good else 'NOT met'}")
        result["effects"][name] = {"ours_ms": mine, "opencv_ms": cv[name], "ratio": ratio}
    share = ours["all"]["median_ms"] / cut_ms
    good = share < 0.5
    print(f"all effects / the cut-out: {share:.2f}x  < 0.5x {'met' if good else 'NOT met'}")
    result["all_over_cutout"] = share
    print(json.dumps(result))
    print(f"examples: {out}/sticker.png, {out}/print-4x6in.jpg")
    return 0 if ok and good else 1


if __name__ == "__main__":
    sys.exit(main())
