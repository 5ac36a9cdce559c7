#!/usr/bin/env python3
"""Reference outputs for the InSPyReNet parity tests, produced by the reference code itself.

The product's InSPyReNet (gpu-server/src/model/inspyrenet) is a port of the PyPI package
`transparent-background==1.3.4`. This script builds that package's own `InSPyReNet` with random
weights under a fixed seed, saves the checkpoint exactly as `torch.save(model.state_dict())`
writes one (the format of the operator's `ckpt_base.pth`), runs it, and saves the outputs of
every stage. The Rust tests load the checkpoint through the product's own loader and compare.

Regenerate (from the repository root; needs ~6 GB for torch and its CUDA libraries, which it
does not use):

    scripts/inspyrenet-reference            # creates .cache/refvenv-inspyrenet (pinned), then runs this

Configurations:
  tiny   committed to tests/fixtures/inspyrenet/ (CI). The reference network with a shrunk
         backbone (embed 16, depths 2-2-2-2, heads 1-2-4-8, window 12 as Swin-B), decoder depth
         16, base size 64x64; a batch of two 64x96 inputs (non-square on purpose: padding,
         shifted-window masks, the SICA reshape quirk and H/W order all show).
  full   `--full DIR`: the real `InSPyReNet_SwinB(depth=64, base_size=[1024, 1024])`, random
         weights, one 1024x1024 input: the documented full-size check (~430 MB, not committed):
         INSPYRENET_FULL_FIXTURE=DIR cargo test -p gpu-server --release --test it inspyrenet_parity -- --ignored

Random weights: PyTorch's initialisers leave SelfAttention's `gamma` at 0 and BatchNorm at the
identity, which would hide whole branches from the comparison; every such tensor is redrawn so
that each parameter and buffer changes the output. BatchNorm's running statistics are then
measured on a random batch (one training-mode pass), so activations stay in the range of a
trained network.

Files: checkpoint.pth (state dict), transition.pth (the Transition module's kernels and outputs
on d3, d2, d1; `--transition-only` rewrites just this file), outputs.pth (dict of tensors: input, features.0-4, d3, d2,
d1, d0, p2, p1, p0, pred — pred per image, as `Remover` runs batch 1), preprocess.pth (a real
photo through the package's own static and dynamic transforms), reference.json (versions,
configuration, summary numbers, and the sizes the dynamic resize picks for a few photo sizes;
its resampling is the static one's PIL bilinear).
"""

import argparse
import hashlib
import json
import pathlib

import numpy as np
import PIL
import torch
import torch.nn.functional as F
import transparent_background
from PIL import Image
from transparent_background.InSPyReNet import InSPyReNet, InSPyReNet_SwinB
from transparent_background.backbones.SwinTransformer import SwinTransformer
from transparent_background.utils import dynamic_resize, normalize, static_resize, tonumpy, totensor

SEED = 20261123
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def tiny_model():
    backbone = SwinTransformer(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=12)
    return InSPyReNet(backbone, [16, 16, 32, 64, 128], depth=16, base_size=[64, 64], threshold=None)


def full_model():
    return InSPyReNet_SwinB(depth=64, pretrained=False, base_size=[1024, 1024], threshold=None)


def randomise(model, gen, shape):
    """Redraw what the default initialisers leave at identity or zero, then calibrate."""
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            if not t.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("threshold", "lthreshold"):
                t.copy_(torch.rand(t.shape, generator=gen) * 0.4 + 0.3)
            elif leaf == "gamma":
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
            elif leaf == "relative_position_bias_table":
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
            elif leaf == "weight" and t.dim() == 1:  # BatchNorm and LayerNorm scales
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif leaf == "bias":
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
    model.load_state_dict(sd)
    # BatchNorm statistics measured on a random batch, as training would leave them: the
    # activations stay in a trained network's range instead of growing stage after stage.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model.forward_inspyre(torch.randn(shape, generator=gen))
    model.eval()


def photo(size):
    from skimage import data

    return Image.fromarray(data.chelsea()).resize(size, Image.BILINEAR) if size else Image.fromarray(data.chelsea())


def preprocess_fixture(out):
    """The package's own transforms (Remover.transform) on a real photo."""
    img = photo(None)  # 451x300
    tensors = {}
    for name, tf in {
        "static64": static_resize([64, 64]),
        "static96x64": static_resize([96, 64]),
    }.items():
        x = totensor()(normalize(MEAN, STD)(tonumpy()(tf(img))))
        tensors[name] = x.contiguous()
    sizes = {}
    for w, h in [(451, 300), (1500, 1400), (1400, 1500), (4000, 3000), (1281, 700), (33, 47)]:
        sizes[f"{w}x{h}"] = list(dynamic_resize(L=1280)(Image.new("RGB", (w, h))).size)
    torch.save(tensors, out / "preprocess.pth")
    np.asarray(photo(None)).tofile(out / "chelsea.rgb")
    return sizes


def run(model, x, out, device="cpu"):
    model.eval().to(device)
    x = x.to(device)
    with torch.no_grad():
        feats = model.backbone(x)
        res = model.forward_inspyre(x)
        d3, d2, d1, d0 = res["saliency"]
        p2, p1, p0 = res["laplacian"]
        # Remover runs one image at a time; forward_inference min-maxes over its whole batch.
        pred = torch.cat([model.forward_inference(x[i : i + 1]) for i in range(x.shape[0])])
        # Remover's last step: back to the photo's size, bilinear with align_corners=True.
        back = F.interpolate(pred, (x.shape[2] * 3 // 2, x.shape[3] + 5), mode="bilinear", align_corners=True)
    tensors = {"input": x}
    for i, f in enumerate(feats):
        tensors[f"features.{i}"] = f
    tensors.update(d3=d3, d2=d2, d1=d1, d0=d0, p2=p2, p1=p1, p0=p0, pred=pred, back=back)
    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    torch.save(tensors, out / "outputs.pth")
    return {k: {"shape": list(v.shape), "min": v.min().item(), "max": v.max().item()} for k, v in tensors.items()}


def transition_fixture(out):
    """The package's Transition (upstream's LR/HR blending marks the uncertain band with it) on
    the saliency maps in outputs.pth, with the sizes and pairing of forward_inference:
    transition2 (k=5) on d3, transition1 (k=9) on d2, transition0 (k=17) on d1."""
    from transparent_background.modules.layers import Transition

    saved = torch.load(out / "outputs.pth")
    tensors = {}
    for name, k, d in [("t2", 5, "d3"), ("t1", 9, "d2"), ("t0", 17, "d1")]:
        t = Transition(k)
        tensors[f"kernel{k}"] = t.kernel.contiguous()
        tensors[name] = t(saved[d]).contiguous()
    torch.save(tensors, out / "transition.pth")
    return {k: {"shape": list(v.shape), "ones": int(v.sum().item())} for k, v in tensors.items()}


def seeded(full):
    """The randomised model, its input and a description, drawn from SEED in a fixed order: the
    same weights on any machine (also what `scripts/gpu-kit run` builds on the GPU machine)."""
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    if full:
        model = full_model()
        x = torch.randn(1, 3, 1024, 1024, generator=gen)
        config = "full: InSPyReNet_SwinB(depth=64, base_size=[1024, 1024]), input 1x3x1024x1024"
    else:
        model = tiny_model()
        x = torch.randn(2, 3, 64, 96, generator=gen)
        config = "tiny: Swin embed 16, depths 2-2-2-2, heads 1-2-4-8, window 12; depth 16; base 64x64; input 2x3x64x96"
    randomise(model, gen, x.shape)
    return model, x, config


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", metavar="DIR", help="write the full Swin-B check into DIR instead")
    ap.add_argument(
        "--device",
        default="cpu",
        help="run the reference there (e.g. cuda; TF32 off, so float32 is float32); weights are drawn on the CPU",
    )
    ap.add_argument(
        "--transition-only", action="store_true", help="only (re)write transition.pth from outputs.pth"
    )
    args = ap.parse_args()
    if args.transition_only:
        print(json.dumps(transition_fixture(pathlib.Path("tests/fixtures/inspyrenet"))))
        return
    out = pathlib.Path(args.full or "tests/fixtures/inspyrenet")
    out.mkdir(parents=True, exist_ok=True)
    model, x, config = seeded(full=bool(args.full))
    torch.save(model.state_dict(), out / "checkpoint.pth")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    summary = run(model, x, out, args.device)
    meta = {
        "generator": "scripts/generate_inspyrenet_reference.py",
        "config": config,
        "device": args.device,
        "seed": SEED,
        "versions": {
            "transparent-background": "1.3.4",
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "outputs": summary,
        "sha256": {"checkpoint.pth": sha256(out / "checkpoint.pth"), "outputs.pth": sha256(out / "outputs.pth")},
    }
    if not args.full:
        meta["dynamic_sizes"] = preprocess_fixture(out)
        meta["transition"] = transition_fixture(out)
    (out / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: v["shape"] for k, v in summary.items()}))


if __name__ == "__main__":
    assert transparent_background.__file__
    main()
