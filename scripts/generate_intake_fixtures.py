#!/usr/bin/env python3
"""Small photos in every colour type and orientation a phone or shop produces, for the intake
tests (shared/tests/intake_fixtures.rs). Made with Pillow from scikit-image's cat photo:

    .cache/refvenv/bin/python scripts/generate_intake_fixtures.py

Each file is 64x48 (as displayed) and shows the same cat, so decoding it in any format must
give nearly the same RGB picture, upright.
"""

import json
import pathlib

import numpy as np
from PIL import Image
from skimage import data

OUT = pathlib.Path("tests/fixtures/intake")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cat = Image.fromarray(data.chelsea()).resize((64, 48), Image.LANCZOS)
    cat.save(OUT / "reference.png")
    cat.save(OUT / "rgb.jpg", quality=95)
    cat.convert("CMYK").save(OUT / "cmyk.jpg", quality=95)
    cat.convert("L").save(OUT / "gray.png")
    cat.convert("LA").save(OUT / "gray_alpha.png")
    rgba = cat.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 48)))
    rgba.save(OUT / "rgba.png")
    # 16-bit RGB PNG: Pillow cannot write it, so encode the rows by hand through numpy + zlib.
    arr16 = (np.asarray(cat).astype(np.uint16) * 257)
    write_png16(OUT / "rgb16.png", arr16)
    cat.save(OUT / "rgb.webp", lossless=True)
    # Stored sideways with EXIF orientation 6 ("rotate 90° clockwise to display").
    sideways = cat.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(OUT / "exif_rotated.jpg", quality=95, exif=exif.tobytes())
    (OUT / "README.json").write_text(json.dumps({
        "made_by": "scripts/generate_intake_fixtures.py",
        "displayed_size": [64, 48],
    }, indent=2) + "\n")


def write_png16(path, arr):
    import struct
    import zlib

    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
