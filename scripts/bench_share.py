"""Share render benchmark: one 1024x1024 RGBA PNG -> 1200x630 watermarked JPEG (q85).

Makes the input, times Pillow doing the same job in this process (CPU time, median), reads the
native and Worker medians that scripts/bench-share measured, and prints all three with ratios.
Usage (through scripts/bench-share): python bench_share.py make INPUT | python bench_share.py
report INPUT NATIVE_JSON WORKER_JSON
"""

import io
import json
import statistics
import sys
import time

from PIL import Image, ImageDraw, ImageFilter

ROOT = __file__.rsplit("/scripts/", 1)[0]


def make(path):
    """A cut-out as gpu-server stores it: a real photo, 1024x1024, transparent around the pet."""
    photo = Image.open(f"{ROOT}/tests/fixtures/u2netp/chelsea.png").convert("RGB")
    photo = photo.resize((1024, 1024), Image.LANCZOS)
    mask = Image.new("L", (1024, 1024), 0)
    ImageDraw.Draw(mask).ellipse((120, 80, 900, 980), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(6))
    photo.putalpha(mask)
    photo.save(path, optimize=False)


def pillow_render(png_bytes, logo):
    """The same job in Pillow: decode, gradient background, fit the subject with a 6% margin,
    paste the logo at the bottom right, encode JPEG q85."""
    src = Image.open(io.BytesIO(png_bytes))
    src.load()
    w, h = 1200, 630
    top, bottom = (250, 246, 240), (226, 232, 240)
    grad = Image.linear_gradient("L").resize((w, h))
    canvas = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top), grad)
    bw, bh = int(w * 0.88), int(h * 0.88)
    scale = min(bw / src.width, bh / src.height)
    fw, fh = round(src.width * scale), round(src.height * scale)
    subject = src.resize((fw, fh), Image.LANCZOS)
    canvas.paste(subject, ((w - fw) // 2, (h - fh) // 2), subject)
    lw = int(min(w, h) * 0.14)
    mark = logo.resize((lw, round(logo.height * lw / logo.width)), Image.LANCZOS)
    off = int(min(w, h) * 0.03)
    canvas.paste(mark, (w - mark.width - off, h - mark.height - off), mark)
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=85)
    return out.getvalue()


def report(path, native_json, worker_json):
    png = open(path, "rb").read()
    logo = Image.open(f"{ROOT}/shared/assets/watermark.png").convert("RGBA")
    times = []
    for i in range(33):
        t0 = time.process_time()
        pillow_render(png, logo)
        if i >= 3:
            times.append((time.process_time() - t0) * 1e3)
    pillow = statistics.median(times)
    native = json.loads(native_json)
    worker = json.loads(worker_json)
    rows = [
        ("Pillow (CPU time)", pillow),
        ("shared, native (wall)", native["median_ms"]),
        ("  of which PNG decoding", native["decode_ms"]),
        ("  same card from the result's share-ready subjects", native["cards_median_ms"]),
        ("edge-share in workerd (render inside the isolate)", worker["median_ms"]),
        ("  same card from the result's share-ready subjects", worker["cards_median_ms"]),
        ("  whole request from the PNG (wall, minus an empty one)", worker["request_ms"]),
        ("  whole request from the subjects (same)", worker["cards_request_ms"]),
    ]
    print(f"share render: {png.__len__()} byte 1024x1024 RGBA PNG -> 1200x630 JPEG q85, medians")
    for name, ms in rows:
        print(f"  {name:<55} {ms:7.1f} ms   {pillow / ms:5.2f}x Pillow")
    print(f"  share-ready subjects (all three cards): {worker['cards_bytes']} bytes")
    print(f"  Worker first request of a fresh isolate: {worker['first_ms']:.0f} ms")
    print(f"  Worker .wasm: {worker['wasm_bytes']} bytes, {worker['wasm_gzip_bytes']} gzipped")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        report(*sys.argv[2:5])
