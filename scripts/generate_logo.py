#!/usr/bin/env python3
"""Draw the default share watermark: a white paw print with a soft dark outline.

The product's own artwork, drawn from ellipses so that it needs no font or image from
elsewhere. Regenerate with: python3 scripts/generate_logo.py (needs Pillow).
"""
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
SS = 4  # supersampling factor for smooth edges
OUT = Path(__file__).resolve().parent.parent / "shared" / "assets" / "watermark.png"


def paw(draw: ImageDraw.ImageDraw, fill, grow: float = 0.0) -> None:
    s = SIZE * SS

    def ellipse(cx, cy, rx, ry):
        rx, ry = (rx + grow) * s, (ry + grow) * s
        draw.ellipse([cx * s - rx, cy * s - ry, cx * s + rx, cy * s + ry], fill=fill)

    # Main pad: two overlapping ellipses make a rounded heart-like shape.
    ellipse(0.50, 0.68, 0.22, 0.17)
    ellipse(0.42, 0.64, 0.12, 0.12)
    ellipse(0.58, 0.64, 0.12, 0.12)
    # Toes.
    ellipse(0.23, 0.43, 0.075, 0.10)
    ellipse(0.39, 0.27, 0.08, 0.11)
    ellipse(0.61, 0.27, 0.08, 0.11)
    ellipse(0.77, 0.43, 0.075, 0.10)


def main() -> None:
    big = SIZE * SS
    shadow = Image.new("L", (big, big), 0)
    paw(ImageDraw.Draw(shadow), 150, grow=0.025)
    shadow = shadow.filter(ImageFilter.GaussianBlur(SS * 3))
    white = Image.new("L", (big, big), 0)
    paw(ImageDraw.Draw(white), 255)

    logo = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    logo.putalpha(shadow)
    fg = Image.new("RGBA", (big, big), (255, 255, 255, 255))
    fg.putalpha(white)
    logo = Image.alpha_composite(logo, fg).resize((SIZE, SIZE), Image.LANCZOS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    logo.save(OUT, optimize=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
