#!/usr/bin/env python3
"""Reference outputs for the matting parity tests, produced by pymatting's own code.

The refinement step (trimap -> closed-form alpha matting -> foreground colour estimation) is
compared against pymatting 1.1.16 (Germer et al.): `estimate_alpha_cf` (Levin, Lischinski and
Weiss, "A Closed-Form Solution to Natural Image Matting", solved by conjugate gradients with an
incomplete-Cholesky preconditioner) and `estimate_foreground_ml` (Germer et al.'s multi-level
foreground estimation).

Run it from the repository root (pinned packages; numba compiles pymatting's kernels once):

    python3 -m venv .cache/refvenv-matting
    .cache/refvenv-matting/bin/pip install pymatting==1.1.16 numpy==2.4.6 scipy==1.17.1 \\
        numba==0.68.1 llvmlite==0.50.0 pillow==13.0.0 pypng==0.20220715.0
    .cache/refvenv-matting/bin/python scripts/generate_matting_reference.py

Inputs: the real photo tests/fixtures/u2netp/chelsea.png (a cat, 451x300 RGB8) and rembg's 8-bit
mask for it at the photo's size, tests/fixtures/u2netp/chelsea.mask.png (the model's 320x320 map,
chelsea.map.png, is 16-bit and square; the mask is what a cut-out is made from). The photo is
cropped to CROP, the right half: the cat's cheek, ear and whiskers against the blurred room,
where the mask has a wide soft band.

Trimap rule (TRIMAP_RULE, plain numpy/scipy):
    fg      = binary_erosion(mask >= 240, structure=ones((9, 9)), border_value=1)
    bg      = binary_erosion(mask <= 15,  structure=ones((9, 9)), border_value=1)
    trimap  = 255 where fg, 0 where bg, 128 elsewhere (unknown)
i.e. each sure region shrinks by 4 px (a 9x9 square: Chebyshev distance 4) away from every
pixel that is not in it; outside the image counts as inside the region (border_value=1), so the
frame of the crop does not make an unknown band. The rule is applied to the mask after cropping.

It writes into tests/fixtures/matting/:
  chelsea.png          the cropped photo, RGB8
  chelsea.trimap.png   the trimap, L8, values exactly 0 / 128 / 255
  chelsea.alpha.png    16-bit grey: round(65535 * clip(alpha, 0, 1)),
                       alpha = estimate_alpha_cf(photo / 255, trimap / 255) (float64, defaults:
                       epsilon 1e-7, radius 1, ichol preconditioner, cg rtol 1e-7)
  chelsea.fg.png       16-bit RGB: round(65535 * clip(F, 0, 1)),
                       F = estimate_foreground_ml(photo / 255, alpha) (defaults), from the float
                       alpha, not the rounded one
  reference.json       versions, crop, rule, counts, seconds per call, mean alpha over the band

16-bit PNGs are written by this script's own encoder (zlib, big-endian samples as the PNG
standard has them; the Rust `image` crate reads them as Luma16 / Rgb16) and read back with
pypng, an independent decoder, to check the round trip. 8-bit ones are written by Pillow and
read back the same way.
"""

import json
import pathlib
import struct
import time
import zlib

import numba
import numpy as np
import PIL
import png  # pypng
import pymatting
import scipy
from PIL import Image
from pymatting import estimate_alpha_cf, estimate_foreground_ml
from scipy.ndimage import binary_erosion

SRC = pathlib.Path("tests/fixtures/u2netp")
OUT = pathlib.Path("tests/fixtures/matting")

# (left, top, right, bottom), PIL's convention: columns left..right-1, rows top..bottom-1.
CROP = (211, 0, 451, 300)
FG_LEVEL = 240
BG_LEVEL = 15
ERODE_PX = 4
TRIMAP_RULE = (
    f"fg = binary_erosion(mask >= {FG_LEVEL}, structure=ones(({2 * ERODE_PX + 1}, {2 * ERODE_PX + 1})), "
    f"border_value=1); bg = binary_erosion(mask <= {BG_LEVEL}, same structure, border_value=1); "
    "trimap = 255 on fg, 0 on bg, 128 elsewhere; mask = crop of rembg's 8-bit mask"
)


def make_trimap(mask: np.ndarray) -> np.ndarray:
    """The documented rule above, on an 8-bit mask; returns uint8 0/128/255."""
    structure = np.ones((2 * ERODE_PX + 1, 2 * ERODE_PX + 1), dtype=bool)
    fg = binary_erosion(mask >= FG_LEVEL, structure=structure, border_value=1)
    bg = binary_erosion(mask <= BG_LEVEL, structure=structure, border_value=1)
    trimap = np.full(mask.shape, 128, dtype=np.uint8)
    trimap[fg] = 255
    trimap[bg] = 0
    return trimap


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png16(path: pathlib.Path, samples: np.ndarray):
    """A 16-bit PNG (grey for [H, W], RGB for [H, W, 3]) with big-endian samples. Each row gets
    the PNG filter (None, Sub, Up, Average, Paeth) with the least sum of absolute signed bytes,
    the usual heuristic, only to keep the files small."""
    samples = np.asarray(samples)
    assert samples.dtype == np.uint16
    h, w = samples.shape[:2]
    colour_type = 0 if samples.ndim == 2 else 2
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    assert channels in (1, 3)
    bpp = 2 * channels  # bytes per pixel: the filters' left neighbour distance
    raw = samples.astype(">u2").reshape(h, w * channels).view(np.uint8).reshape(h, w * bpp)
    x = raw.astype(np.int16)
    a = np.zeros_like(x)  # left
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)  # up
    b[1:] = x[:-1]
    c = np.zeros_like(x)  # up-left
    c[1:, bpp:] = x[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    candidates = [x, x - a, x - b, x - (a + b) // 2, x - paeth]
    filtered = [(f & 0xFF).astype(np.uint8) for f in candidates]
    cost = np.stack([np.abs(f.astype(np.int8).astype(np.int32)).sum(axis=1) for f in filtered])
    choice = cost.argmin(axis=0)
    rows = np.stack(filtered)[choice, np.arange(h)]
    data = np.concatenate([choice.astype(np.uint8)[:, None], rows], axis=1).tobytes()
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(data, 9)) + _chunk(b"IEND", b"")
    )


def read_png(path: pathlib.Path) -> np.ndarray:
    """Decode with pypng: [H, W] for grey, [H, W, C] otherwise, uint8 or uint16 as stored."""
    w, h, rows, info = png.Reader(filename=str(path)).read()
    dtype = np.uint16 if info["bitdepth"] == 16 else np.uint8
    planes = info["planes"]
    arr = np.vstack([np.asarray(r, dtype=dtype) for r in rows]).reshape(h, w, planes)
    return arr[:, :, 0] if planes == 1 else arr


def png_header(path: pathlib.Path):
    b = path.read_bytes()
    w, h, depth, colour_type = struct.unpack(">IIBB", b[16:26])
    return w, h, depth, colour_type


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    photo = Image.open(SRC / "chelsea.png").convert("RGB").crop(CROP)
    mask_img = Image.open(SRC / "chelsea.mask.png")
    assert mask_img.mode == "L" and mask_img.size == Image.open(SRC / "chelsea.png").size
    mask = np.asarray(mask_img.crop(CROP))
    rgb = np.asarray(photo)
    h, w = mask.shape

    trimap = make_trimap(mask)
    photo.save(OUT / "chelsea.png", optimize=True)
    Image.fromarray(trimap, mode="L").save(OUT / "chelsea.trimap.png", optimize=True)

    image = rgb.astype(np.float64) / 255.0
    trimap_f = trimap.astype(np.float64) / 255.0

    # Compile pymatting's numba kernels before timing (they are cached on disk afterwards).
    tiny = np.zeros((16, 16)) + 0.5
    tiny[:4] = 1.0
    tiny[-4:] = 0.0
    tiny_alpha = estimate_alpha_cf(image[:16, :16], tiny)
    estimate_foreground_ml(image[:16, :16], tiny_alpha)

    t = time.perf_counter()
    alpha = estimate_alpha_cf(image, trimap_f)
    alpha_s = time.perf_counter() - t
    t = time.perf_counter()
    fg = estimate_foreground_ml(image, alpha)
    fg_s = time.perf_counter() - t

    alpha16 = np.round(65535.0 * np.clip(alpha, 0.0, 1.0)).astype(np.uint16)
    fg16 = np.round(65535.0 * np.clip(fg, 0.0, 1.0)).astype(np.uint16)
    write_png16(OUT / "chelsea.alpha.png", alpha16)
    write_png16(OUT / "chelsea.fg.png", fg16)

    # Round trip through an independent decoder, and the headers the Rust side relies on.
    assert png_header(OUT / "chelsea.png") == (w, h, 8, 2)
    assert png_header(OUT / "chelsea.trimap.png") == (w, h, 8, 0)
    assert png_header(OUT / "chelsea.alpha.png") == (w, h, 16, 0)
    assert png_header(OUT / "chelsea.fg.png") == (w, h, 16, 2)
    assert np.array_equal(read_png(OUT / "chelsea.png"), rgb)
    back_trimap = read_png(OUT / "chelsea.trimap.png")
    assert np.array_equal(back_trimap, trimap) and set(np.unique(back_trimap)) <= {0, 128, 255}
    assert np.array_equal(read_png(OUT / "chelsea.alpha.png"), alpha16)
    assert np.array_equal(read_png(OUT / "chelsea.fg.png"), fg16)
    assert np.array_equal(np.asarray(Image.open(OUT / "chelsea.trimap.png")), trimap)

    unknown = trimap == 128
    summary = {
        "pymatting": pymatting.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "pillow": PIL.__version__,
        "source_photo": str(SRC / "chelsea.png"),
        "source_mask": str(SRC / "chelsea.mask.png"),
        "crop_ltrb": list(CROP),
        "size_wh": [w, h],
        "trimap_rule": TRIMAP_RULE,
        "alpha_call": "estimate_alpha_cf(photo / 255.0, trimap / 255.0) float64, default arguments "
        "(cf_laplacian epsilon 1e-7 radius 1, 3x3 windows whose pixels are all known are left out; "
        "trimap_split fg >= 0.9, bg <= 0.1; ichol preconditioner; cg rtol 1e-7, maxiter 10000; clipped to 0..1)",
        "foreground_call": "estimate_foreground_ml(photo / 255.0, alpha) default arguments (regularization 1e-5, "
        "n_small_iterations 10, n_big_iterations 2, small_size 32, gradient_weight 1), float alpha; "
        "pymatting computes it in float32",
        "alpha_png": "16-bit grey, round(65535 * clip(alpha, 0, 1))",
        "fg_png": "16-bit RGB, round(65535 * clip(F, 0, 1))",
        "pixels": int(h * w),
        "fg_pixels": int((trimap == 255).sum()),
        "bg_pixels": int((trimap == 0).sum()),
        "unknown_pixels": int(unknown.sum()),
        "estimate_alpha_cf_s": round(alpha_s, 4),
        "estimate_foreground_ml_s": round(fg_s, 4),
        "alpha_raw_min": float(alpha.min()),
        "alpha_raw_max": float(alpha.max()),
        "alpha_mean_unknown": float(np.clip(alpha, 0, 1)[unknown].mean()),
        "alpha_mean": float(np.clip(alpha, 0, 1).mean()),
        "fg_mean_unknown_rgb": [float(v) for v in np.clip(fg, 0, 1)[unknown].mean(axis=0)],
    }
    (OUT / "reference.json").write_text(json.dumps(summary, indent=2) + "\n")
    for f in sorted(OUT.iterdir()):
        print(f"{f}  {f.stat().st_size / 1024:.1f} KiB")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
