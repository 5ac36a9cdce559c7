#!/usr/bin/env python3
"""InSPyReNet (Swin-B, 1024x1024) in Burn against the reference code on the same machine, in one run.

Called by scripts/bench-inspyrenet, which builds gpu-server and prepares the reference venv.
Times `forward_inference` of transparent-background==1.3.4's own `InSPyReNet_SwinB` in PyTorch
(f16 under autocast, the way PyTorch runs it in half precision) and `gpu-server bench --model inspyrenet-base` on the same checkpoint, for each precision and
batch asked for, and prints ms per image, images per second, peak device memory and the ratios
against PyTorch (below 1.0: Burn takes less time per image).

Weights: the operator's checkpoint if given (--checkpoint), else the reference network's own
random initialisation under a fixed seed (timing does not depend on the values), saved once.

    scripts/bench-inspyrenet                                   # CPU: f32, batch 1, one run each
    scripts/bench-inspyrenet --backend vulkan --torch-device cuda --configs f32:1,f16:1,f32:4,f16:4
"""

import argparse
import json
import pathlib
import subprocess

import torch
from benchlib import GpuMemory, torch_time
from transparent_background.InSPyReNet import InSPyReNet_SwinB

SEED = 20261123


def checkpoint(path: pathlib.Path, side: int):
    if path.exists():
        return
    torch.manual_seed(SEED)
    model = InSPyReNet_SwinB(depth=64, pretrained=False, base_size=[side, side], threshold=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)


def torch_bench(ckpt, side, device, precision, batch, warmup, iters):
    model = InSPyReNet_SwinB(depth=64, pretrained=False, base_size=[side, side], threshold=None)
    model.load_state_dict(torch.load(ckpt, map_location="cpu"))
    model = model.eval().to(device)
    x = torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(SEED)).to(device)
    result = torch_time(model.forward_inference, x, device, precision, warmup, iters)
    del model, x
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return result


def burn_bench(bin, ckpt, model_dir, backend, precision, batch, warmup, iters):
    cmd = [bin, "bench", "--model", "inspyrenet-base", "--inspyrenet-checkpoint", str(ckpt),
           "--model-dir", str(model_dir), "--backend", backend, "--precision", precision,
           "--batch", str(batch), "--warmup", str(warmup), "--iters", str(iters)]
    with GpuMemory() as mem:
        out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["median_ms_per_image"], mem.used_mib()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gpu-server", required=True)
    p.add_argument("--checkpoint", type=pathlib.Path)
    p.add_argument("--backend", default="cpu", help="gpu-server's --backend")
    p.add_argument("--torch-device", default="cpu")
    p.add_argument("--configs", default="f32:1", help="precision:batch, comma-separated")
    p.add_argument("--side", type=int, default=1024)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path(".cache/bench-inspyrenet"))
    a = p.parse_args()

    ckpt = a.checkpoint or a.work / "ckpt_base.pth"
    if a.checkpoint is None:
        checkpoint(ckpt, a.side)
    configs = [(c.split(":")[0], int(c.split(":")[1])) for c in a.configs.split(",")]
    print(f"InSPyReNet Swin-B {a.side}x{a.side}: PyTorch {torch.__version__} on {a.torch_device}, "
          f"Burn (gpu-server) on {a.backend}; median of {a.iters} after {a.warmup} warm-up")
    rows = []
    for precision, batch in configs:
        t_ms, t_mem = torch_bench(ckpt, a.side, a.torch_device, precision, batch, a.warmup, a.iters)
        b_ms, b_mem = burn_bench(a.gpu_server, ckpt, a.work / "models", a.backend, precision,
                                 batch, a.warmup, a.iters)
        rows.append((precision, batch, t_ms, b_ms, t_mem, b_mem))
        print(f"  {precision} batch {batch}: PyTorch {t_ms:.1f} ms/img, Burn {b_ms:.1f} ms/img", flush=True)
    ref = {(p_, b): t for p_, b, t, *_ in rows}
    base = ref.get(("f32", 1))
    fmt = lambda v, f: "-" if v is None else format(v, f)
    print(f"{'precision':<9} {'batch':>5} {'PyTorch ms/img':>15} {'Burn ms/img':>12} "
          f"{'Burn/PyTorch':>13} {'Burn/PyTorch f32 b1':>20} {'PyTorch MiB':>12} {'Burn MiB':>9}")
    for precision, batch, t_ms, b_ms, t_mem, b_mem in rows:
        print(f"{precision:<9} {batch:>5} {t_ms:>15.1f} {b_ms:>12.1f} {b_ms / t_ms:>13.2f} "
              f"{fmt(base and b_ms / base, '>20.2f'):>20} {fmt(t_mem, '>12.0f'):>12} {fmt(b_mem, '>9.0f'):>9}")
    if base:
        for precision, batch, _, b_ms, *_ in rows:
            if batch > 1:
                print(f"throughput {precision} batch {batch}: Burn {1e3 / b_ms:.2f} img/s = "
                      f"{base / b_ms:.2f}x PyTorch f32 batch 1")


if __name__ == "__main__":
    main()
