#!/usr/bin/env python3
"""The GPU kit's runner, called by `scripts/gpu-kit` (it travels with the working tree; the kit
holds what the GPU machine lacks: the binary, weights, wheels, the Vulkan loader).

    gpu_kit.py manifest --kit DIR ...      list the packed kit (sizes, SHA-256) and check its size
    gpu_kit.py run --kit DIR --repo . [--local] [--out DIR] [--budget S]
    gpu_kit.py torch eager ...             PyTorch's timings, in their own process (internal)

`run` is what executes on a lent GPU machine, in one command: it unpacks the kit, builds a
random-initialised full Swin-B checkpoint with the reference code (transparent-background 1.3.4,
fixed seed: the same weights as `scripts/inspyrenet-reference --full`), then runs each step under
its own time limit inside an overall budget, rewriting results.json and results.md in the output
folder after every step, so a step that fails or runs out of time leaves the others' results:

  setup              unpack the binary, the Vulkan loader and the wheels; what the machine is
  u2netp-parity      gpu-server's masks on the GPU against rembg + onnxruntime's (committed), f32, f16
  reference          the checkpoint and every stage's output on PyTorch CUDA (TF32 off), written
                     by scripts/generate_inspyrenet_reference.py --full
  first-result       process start to the first cut-out: the first ever (checkpoint conversion,
                     autotune), a warm start, and a warm start without the tuning cache
  inspyrenet-parity  every stage on the GPU against that, f32 and f16 (`gpu-server bench
                     --stages-against`: the parity tests' comparison and bounds)
  speed              `gpu-server bench`: ms per image at batch 1 and 4, f32 and f16, peak GPU memory
  torch-eager        PyTorch eager on the same GPU, same models, batches and precisions
  serve              `gpu-server serve` with BATCH_SIZE=4: process start to /ready (the warm-up
                     pass included), the first upload, 4 concurrent uploads, then 4 in a row
  profile            where a pass's GPU time goes: each kernel's time as cubecl's profiler logs it
                     (CUBECL_DEBUG_OPTION=profile), summed by kernel over `bench` passes

`--local` runs the steps Mesa's lavapipe can (U²-Netp on Vulkan; no CUDA, no PyTorch): the CI
variant. It exits non-zero when any step it planned did not pass.
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import lzma
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid

from benchlib import GpuMemory, torch_time

PARITY_PHOTOS = ["chelsea", "astronaut", "coffee"]
# Mean abs difference of the 8-bit masks, /255: the CPU tests' bounds for U²-Netp (f32 1.0,
# f16 2.0). InSPyReNet's check is per stage (its final map, min-max normalised, saturates with
# random weights, so its mask would say little).
BOUNDS = {("u2netp", "f32"): 1.0, ("u2netp", "f16"): 2.0}
# Without the `autotune` feature, Burn's convolution on wgpu is cubek's direct kernel, which
# accumulates in the element type: in f16, U²-Netp's mask is 4.1/255 off on lavapipe (measured),
# where the tuned kernels and onnxruntime accumulate in f32.
F16_DIRECT_BOUND = 6.0
DEVICE_STEPS = ["setup", "u2netp-parity", "reference", "first-result", "serve", "profile", "inspyrenet-parity", "speed",
                "torch-eager"]
LOCAL_STEPS = ["setup", "u2netp-parity", "first-result", "speed", "profile", "serve"]
# The reference's device: CUDA on the GPU machine; `cpu` tries the reference side here (slow).
TORCH_DEVICE = os.environ.get("GPU_KIT_TORCH_DEVICE", "cuda:0")
CAPS = {"setup": 90, "u2netp-parity": 90, "reference": 150, "first-result": 180, "inspyrenet-parity": 90,
        "speed": 180, "torch-eager": 120, "serve": 150, "profile": 120}


class Failed(Exception):
    """A step's check did not hold; the message says which."""


class OutOfTime(Exception):
    """The step's time limit (or the run's budget) is spent."""


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# manifest


def manifest(args):
    kit = pathlib.Path(args.kit)
    files = sorted(p for p in kit.rglob("*") if p.is_file() and p.name != "MANIFEST.json")
    entries = [{"path": str(p.relative_to(kit)), "bytes": p.stat().st_size, "sha256": sha256(p)} for p in files]
    total = sum(e["bytes"] for e in entries)
    doc = {"commit": args.commit, "features": args.features, "bytes": total, "files": entries}
    (kit / "MANIFEST.json").write_text(json.dumps(doc, indent=2) + "\n")
    for e in entries:
        print(f"{e['bytes'] / 2**20:8.2f} MiB  {e['path']}")
    print(f"{total / 2**20:8.2f} MiB  in all (limit {args.limit_mib} MiB)")
    if total > args.limit_mib * 2**20:
        sys.exit(f"the kit is {total / 2**20:.1f} MiB, over {args.limit_mib} MiB")


# ---------------------------------------------------------------------------------------------
# run: steps, results


class Step:
    def __init__(self, run, name):
        self.run, self.name = run, name
        self.deadline = time.monotonic() + min(run.caps.get(name, CAPS[name]), run.left())
        self.data = {}

    def left(self):
        r = self.deadline - time.monotonic()
        if r < 1:
            raise OutOfTime(f"{self.name}: out of time")
        return r

    def sh(self, cmd, env=None, cwd=None):
        """Run a command within the step's time; its stdout. A non-zero exit is a failure."""
        try:
            p = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                               timeout=self.left())
        except subprocess.TimeoutExpired as e:
            raise OutOfTime(f"{pathlib.Path(str(cmd[0])).name} {cmd[1]}: still running at the step's limit") from e
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip()[-1500:]
            how = f"was killed by {signal.Signals(-p.returncode).name}" if p.returncode < 0 else f"exited {p.returncode}"
            raise Failed(f"{pathlib.Path(str(cmd[0])).name} {' '.join(map(str, cmd[1:3]))} {how}: {tail}")
        return p.stdout


class Run:
    def __init__(self, args):
        self.args = args
        self.local = args.local
        self.kit = pathlib.Path(args.kit).resolve()
        self.repo = pathlib.Path(args.repo).resolve()
        self.out = pathlib.Path(args.out or os.environ.get("OUT") or self.repo / "target/gpu-kit/out")
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = pathlib.Path(args.work)
        shutil.rmtree(self.work, ignore_errors=True)
        for d in ("models", "photos", "cwd", "xdg-cache", "xdg-cache-parity"):
            (self.work / d).mkdir(parents=True)
        self.start = time.monotonic()
        self.budget = args.budget
        self.plan = LOCAL_STEPS if self.local else DEVICE_STEPS
        self.caps = {k: float(v) for k, v in (c.split("=") for c in (args.caps or "").split(",") if c)}
        if args.steps:  # a second, shorter call: some steps (setup always)
            wanted = set(args.steps.split(",")) | {"setup"}
            unknown = wanted - set(self.plan)
            if unknown:
                sys.exit(f"--steps: no step {', '.join(sorted(unknown))} in {', '.join(self.plan)}")
            self.plan = [n for n in self.plan if n in wanted]
        self.bin = self.work / "gpu-server"
        self.backend = "vulkan" if self.local else "wgpu"
        self.models = ["u2netp"] if self.local else ["u2netp", "inspyrenet-base"]
        manifest = self.kit / "MANIFEST.json"
        features = json.loads(manifest.read_text())["features"] if manifest.exists() else ""
        self.autotune = "autotune" in features
        self.env = dict(os.environ, MODEL_DIR=str(self.work / "models"), LOG_LEVEL="warn",
                        XDG_CACHE_HOME=str(self.work / "xdg-cache"), BACKEND=self.backend,
                        INSPYRENET_CHECKPOINT=str(self.work / "full/checkpoint.pth"))
        self.results = {
            "kit": json.loads((self.kit / "MANIFEST.json").read_text()) if (self.kit / "MANIFEST.json").exists() else None,
            "variant": "local (lavapipe)" if self.local else "device",
            "budget_s": self.budget,
            "steps": {},
        }
        if self.results["kit"]:
            self.results["kit"].pop("files", None)

    def left(self):
        return self.budget - (time.monotonic() - self.start)

    def step(self, name, fn):
        if name not in self.plan:
            return
        rec = {"status": "running"}
        self.results["steps"][name] = rec
        if self.left() < 5:
            rec.update(status="not reached", error="the run's budget was spent")
            self.write()
            return
        s = Step(self, name)
        rec["data"] = s.data
        t0 = time.monotonic()
        print(f"== {name} (up to {s.deadline - t0:.0f} s)", flush=True)
        try:
            fn(s)
            rec["status"] = "ok"
        except OutOfTime as e:
            rec.update(status="timed out", error=str(e))
        except Failed as e:
            rec.update(status="failed", error=str(e))
        except Exception as e:  # noqa: BLE001 - any failure is recorded, the next step still runs
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
        rec["seconds"] = round(time.monotonic() - t0, 2)
        print(f"   {rec['status']} in {rec['seconds']} s" + (f": {rec['error']}" if "error" in rec else ""), flush=True)
        self.write()

    def write(self):
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2) + "\n")
        (self.out / "results.md").write_text(markdown(self.results))

    def gs(self, s, *args, env=None):
        """gpu-server with the run's environment (plus `env`), in an empty working directory."""
        return s.sh([self.bin, *args], env=dict(self.env, **(env or {})), cwd=self.work / "cwd")


def table(rows):
    if not rows:
        return ""
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v).replace("|", "/").replace("\n", " ")


def markdown(results):
    out = [f"# GPU kit results ({results['variant']})\n"]
    kit = results.get("kit") or {}
    out.append(f"Kit: commit {kit.get('commit', '?')}, features {kit.get('features', '?')}, "
               f"{kit.get('bytes', 0) / 2**20:.1f} MiB. Budget {results['budget_s']} s.\n")
    for name, rec in results["steps"].items():
        out.append(f"\n## {name}: {rec['status']}" + (f" ({rec['seconds']} s)" if "seconds" in rec else "") + "\n")
        if "error" in rec:
            out.append(f"\n> {fmt(rec['error'])}\n")
        data = rec.get("data", {})
        facts = {k: v for k, v in data.items() if not isinstance(v, list)}
        if facts:
            out.append("\n" + "".join(f"- {k}: {fmt(v)}\n" for k, v in facts.items()))
        for k, v in data.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                out.append(f"\n{k}:\n\n" + table(v))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# helpers


def extract_libs(deb, dest):
    """The shared libraries of a .deb (an ar archive holding data.tar.*), into dest: unpacked
    beside the run rather than over the machine's own /."""
    blob = pathlib.Path(deb).read_bytes()
    assert blob.startswith(b"!<arch>\n"), f"{deb}: not a .deb"
    pos, names = 8, []
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
        if not name.startswith("data.tar"):
            continue
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            for m in tar.getmembers():
                base = os.path.basename(m.name)
                if ".so" in base and (m.isfile() or m.issym()):
                    m.name = base
                    tar.extract(m, dest, filter="data")
                    names.append(base)
    return names


# Vulkan's physical devices through ctypes (no vulkaninfo there): vkCreateInstance with no
# extensions, then each device's name, API version and type (2 = discrete GPU, 4 = CPU).
VULKAN_PROBE = r"""
import ctypes, json
try:
    vk = ctypes.CDLL("libvulkan.so.1")
except OSError as e:
    raise SystemExit(print(json.dumps({"error": f"loader: {e}"})))
class Info(ctypes.Structure):
    _fields_ = [("sType", ctypes.c_int), ("pNext", ctypes.c_void_p), ("flags", ctypes.c_uint32),
                ("app", ctypes.c_void_p), ("layers", ctypes.c_uint32), ("layer_names", ctypes.c_void_p),
                ("extensions", ctypes.c_uint32), ("extension_names", ctypes.c_void_p)]
inst = ctypes.c_void_p()
r = vk.vkCreateInstance(ctypes.byref(Info(sType=1)), None, ctypes.byref(inst))
if r != 0:
    raise SystemExit(print(json.dumps({"error": f"vkCreateInstance returned {r}"})))
n = ctypes.c_uint32()
vk.vkEnumeratePhysicalDevices(inst, ctypes.byref(n), None)
devices = (ctypes.c_void_p * n.value)()
vk.vkEnumeratePhysicalDevices(inst, ctypes.byref(n), devices)
names = []
for d in devices:
    props = ctypes.create_string_buffer(8192)
    vk.vkGetPhysicalDeviceProperties(ctypes.c_void_p(d), props)
    api, kind = int.from_bytes(props.raw[0:4], "little"), int.from_bytes(props.raw[16:20], "little")
    name = props.raw[20:276].split(b"\0")[0].decode()
    names.append(f"{name} (Vulkan {(api >> 22) & 0x7f}.{(api >> 12) & 0x3ff}, type {kind})")
print(json.dumps({"devices": names}))
"""


def vulkan_devices(s, env):
    """What VULKAN_PROBE finds with `env`; the loader's errors where it finds no device."""
    p = subprocess.run([sys.executable, "-c", VULKAN_PROBE], env=dict(env, VK_LOADER_DEBUG="error"),
                       capture_output=True, text=True, timeout=min(30, s.left()))
    lines = p.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"error": f"exited {p.returncode}"}
    if not found.get("devices"):
        found["stderr"] = p.stderr.strip()[-600:]
    return found


def compare_masks(a, b):
    """Mean and max abs difference of two 8-bit grey images, in /255."""
    import numpy as np
    from PIL import Image

    x = np.asarray(Image.open(a).convert("L"), dtype=np.int16)
    y = np.asarray(Image.open(b).convert("L"), dtype=np.int16)
    if x.shape != y.shape:
        raise Failed(f"{a.name}: {x.shape} against the reference's {y.shape}")
    d = np.abs(x - y)
    return float(d.mean()), int(d.max())


def make_photos(work, repo, count):
    """Phone-like test photos: the fixture photos at 1024x683 with sensor noise (sigma 4),
    each one different so that no result cache answers for the model."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(20261203)
    paths = []
    for i in range(count):
        src = Image.open(repo / "tests/fixtures/u2netp" / f"{PARITY_PHOTOS[i % 3]}.png").convert("RGB")
        arr = np.asarray(src.resize((1024, 683), Image.BICUBIC), dtype=np.float32)
        arr = np.clip(arr + rng.normal(0, 4, arr.shape), 0, 255).astype(np.uint8)
        p = work / "photos" / f"noisy-{i}.jpg"
        Image.fromarray(arr).save(p, quality=92)
        paths.append(p)
    return paths


def files_under(dirs):
    found = {}
    for d in dirs:
        for p in pathlib.Path(d).rglob("*"):
            if p.is_file():
                found[str(p)] = p.stat().st_size
    return found


# ---------------------------------------------------------------------------------------------
# the steps


def step_setup(run, s):
    with lzma.open(run.kit / "gpu-server.xz") as f, open(run.bin, "wb") as o:
        shutil.copyfileobj(f, o)
    run.bin.chmod(0o755)
    for p in (run.kit / "models").iterdir():
        shutil.copy(p, run.work / "models" / p.name)
    s.data["gpu-server"] = run.gs(s, "--version").strip()
    s.data["cpu"] = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    s.data["cores"] = os.cpu_count()
    if shutil.which("nvidia-smi"):
        s.data["gpu"] = s.sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]).strip()
    if not run.local:
        libdir = run.work / "lib"
        libdir.mkdir()
        libs = []
        for deb in sorted((run.kit / "debs").glob("*.deb")):
            libs += extract_libs(deb, libdir)
        s.data["vulkan loader"] = ", ".join(sorted(libs))
        run.env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(libdir), run.env.get("LD_LIBRARY_PATH")]))
        # Which GPUs Vulkan sees, through the loader as the binary will load it; where the
        # machine's own driver list finds none, the NVIDIA driver's ICD file is named outright.
        s.data["vulkan"] = vulkan_devices(s, run.env)
        nvidia_icd = pathlib.Path("/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json")
        if not any(" type 2)" in d for d in s.data["vulkan"].get("devices", [])) and nvidia_icd.exists():
            run.env["VK_DRIVER_FILES"] = str(nvidia_icd)
            s.data["vulkan, VK_DRIVER_FILES set"] = vulkan_devices(s, run.env)
        site = run.work / "site"
        s.sh([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
              "--disable-pip-version-check", "--target", site, *sorted((run.kit / "wheels").glob("*.whl"))])
        run.env["PYTHONPATH"] = ":".join(filter(None, [str(site), run.env.get("PYTHONPATH")]))
        probe = "import torch, transparent_background, onnx2torch; print(torch.__version__, torch.cuda.get_device_name(0))"
        s.data["reference"] = s.sh([sys.executable, "-c", probe], env=run.env).strip().splitlines()[-1]
    run.photos = make_photos(run.work, run.repo, 9)


def mask_parity(run, s, model, precisions, names, reference):
    fixtures = run.repo / "tests/fixtures/u2netp"
    rows, failures = [], []
    s.data["rows"] = rows
    for prec in precisions:
        outdir = run.work / "masks" / model / prec
        t0 = time.monotonic()
        # A tuning cache of its own, so that first-result's "first ever" is one.
        run.gs(s, "remove", *[fixtures / f"{n}.png" for n in names], "-o", outdir, "--type", "mask",
               "--refine", "off", "--model", model, "--precision", prec,
               env={"XDG_CACHE_HOME": str(run.work / "xdg-cache-parity")})
        seconds = time.monotonic() - t0
        for n in names:
            for ref_name, ref in reference(n, prec):
                mean, worst = compare_masks(outdir / f"{n}.png", ref)
                bound = BOUNDS[(model, prec)] if ref_name == "f32" else None
                if bound is not None and prec == "f16" and not run.autotune:
                    bound = F16_DIRECT_BOUND
                rows.append({"photo": n, "ours": prec, "reference": ref_name, "mean abs /255": mean,
                             "max /255": worst, "bound": bound if bound is not None else "-",
                             "process s": seconds})
                if bound is not None and mean > bound:
                    failures.append(f"{n} {prec}: mean abs {mean:.3f}/255 > {bound}")
        run.write()
    if failures:
        raise Failed("; ".join(failures))


def step_u2netp_parity(run, s):
    names = PARITY_PHOTOS[:1] if run.local else PARITY_PHOTOS
    fixtures = run.repo / "tests/fixtures/u2netp"
    ort = json.loads((fixtures / "reference.json").read_text())["onnxruntime"]
    s.data["reference"] = f"rembg's masks on onnxruntime {ort} (tests/fixtures/u2netp, scripts/generate_reference.py)"
    # On lavapipe a 320² pass takes minutes on a slow CPU (165 s on a 2-core Zen 1), and f16 there
    # is checked by the CPU tests (`half_precision_map_stays_close_to_the_cpu_on_vulkan`, at 96²):
    # locally the kit checks its own loop on the production precision only.
    precisions = ["f32"] if run.local else ["f32", "f16"]
    mask_parity(run, s, "u2netp", precisions, names, lambda n, prec: [("f32", fixtures / f"{n}.mask.png")])


def step_reference(run, s):
    s.sh([sys.executable, pathlib.Path(__file__).with_name("generate_inspyrenet_reference.py"), "--full",
          run.work / "full", "--device", TORCH_DEVICE], env=run.env)
    meta = json.loads((run.work / "full/reference.json").read_text())
    s.data.update(config=meta["config"], seed=meta["seed"], device=meta["device"], **meta["versions"],
                  **{"checkpoint MiB": round((run.work / "full/checkpoint.pth").stat().st_size / 2**20, 1)})


def step_first_result(run, s):
    rows, found = [], set()
    s.data["rows"] = rows
    # Where cubecl keeps its tuning (persistence feature): $XDG_CACHE_HOME/cubecl when no Cargo.toml
    # is above the working directory, as in a container; the driver's shader cache lands beside it.
    caches = [run.work / "xdg-cache", run.work / "cwd", pathlib.Path("/tmp/cubecl")]
    tuning = [run.work / "xdg-cache/cubecl", run.work / "cwd", pathlib.Path("/tmp/cubecl")]

    def describe(paths):
        total = sum(paths.values())
        return f"{len(paths)} files, {total / 2**10:.0f} KiB" if paths else "none"

    photo = run.photos[0]
    for model in run.models:
        def once(label):
            before = files_under(caches)
            t0 = time.monotonic()
            with GpuMemory() as mem:
                run.gs(s, "remove", photo, "-o", run.work / f"first-{model}.png", "--refine", "off", "--model", model)
            new = {k: v for k, v in files_under(caches).items() if k not in before}
            tuned = {k: v for k, v in new.items() if any(k.startswith(str(d)) for d in tuning)}
            rows.append({"model": model, "run": label, "process start to result s": time.monotonic() - t0,
                         "peak GPU MiB": mem.used_mib(), "tuning cache written": describe(tuned),
                         "driver shader cache written": describe({k: v for k, v in new.items() if k not in tuned})})
            found.update(next(str(d) for d in tuning if k.startswith(str(d))) for k in tuned)
            run.write()

        once("first ever" + (" (checkpoint conversion)" if model != "u2netp" else ""))
        once("warm start")
        tuned = [d for d in tuning if d.exists() and any(p.is_file() for p in d.rglob("*"))]
        if tuned:
            aside = run.work / "aside"
            aside.mkdir(exist_ok=True)
            for d in tuned:
                shutil.move(str(d), str(aside / d.name))
                d.mkdir(parents=True)
            try:
                once("warm start, tuning cache removed")
            finally:
                for d in tuned:
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.move(str(aside / d.name), str(d))
    s.data["tuning cache"] = ("kept on disk in " + ", ".join(sorted(found))) if found \
        else "none written: every process tunes again"


def step_inspyrenet_parity(run, s):
    """Every stage on the GPU against PyTorch CUDA's (`gpu-server bench --stages-against`: the
    parity tests' own comparison and bounds, in the release binary)."""
    rows, failures = {}, []
    s.data["rows"] = []
    for prec in ("f32", "f16"):
        cmd = [run.bin, "bench", "--stages-against", run.work / "full", "--precision", prec]
        try:
            p = subprocess.run([str(c) for c in cmd], env=run.env, cwd=run.work / "cwd", capture_output=True,
                               text=True, timeout=s.left())
        except subprocess.TimeoutExpired as e:
            raise OutOfTime(f"{prec}: still running at the step's limit") from e
        lines = p.stdout.strip().splitlines()
        if not lines:
            failures.append(f"{prec}: exited {p.returncode}: {p.stderr.strip()[-800:]}")
            continue
        j = json.loads(lines[-1])
        s.data[f"{prec} load, run ms"] = f"{j['load_ms']:.0f}, {j['run_ms']:.0f}"
        for st in j["stages"]:
            row = rows.setdefault(st["stage"], {"stage": st["stage"], "shape": "x".join(map(str, st["shape"]))})
            row[f"{prec} relative error"] = st["relative_error"]
            row[f"{prec} bound"] = st["bound"]
        if not j["within"]:
            failures.append(f"{prec}: " + ", ".join(f"{st['stage']} {st['relative_error']:.2e}"
                                                   for st in j["stages"] if not st["within"]))
        s.data["rows"] = list(rows.values())
        run.write()
    if failures:
        raise Failed("stages past their bound: " + "; ".join(failures))


def step_speed(run, s):
    rows = []
    s.data["rows"] = rows
    configs = [(m, p, b) for m in run.models for p in (["f32"] if run.local else ["f32", "f16"]) for b in (1, 4)]
    if run.args.speed:
        configs = [(m, p, int(b)) for m, p, b in (c.split(":") for c in run.args.speed.split(","))]
    for model, prec, batch in configs:
        iters, warmup = ("1", "0") if run.local else (("30", "5") if model == "u2netp" else ("10", "3"))
        t0 = time.monotonic()
        with GpuMemory() as mem:
            out = run.gs(s, "bench", "--model", model, "--precision", prec, "--batch", str(batch),
                         "--iters", iters, "--warmup", warmup)
        j = json.loads(out.strip().splitlines()[-1])
        rows.append({"model": model, "precision": prec, "batch": batch,
                     "ms/image": j["median_ms_per_image"], "min ms/image": j["min_ms_per_image"],
                     "load ms": j["load_ms"], "peak GPU MiB": mem.used_mib(),
                     "process s": time.monotonic() - t0})
        run.write()


def step_torch_eager(run, s):
    out = s.sh([sys.executable, pathlib.Path(__file__).resolve(), "torch", "eager", "--kit", run.kit, "--work", run.work,
                "--repo", run.repo], env=run.env)
    s.data.update(json.loads(out.strip().splitlines()[-1]))
    ours = {(r["model"], r["precision"], r["batch"]): r["ms/image"]
            for r in run.results["steps"].get("speed", {}).get("data", {}).get("rows", [])}
    for r in s.data.get("rows", []):
        mine = ours.get((r["model"], r["precision"], r["batch"]))
        r["gpu-server ms/image"] = mine if mine is not None else "-"
        r["ratio (ours / torch)"] = mine / r["ms/image"] if mine and r.get("ms/image") else "-"


# One kernel's line in cubecl's profiling log: "| 9.398874ms | CopyKernel_55cc3331".
PROFILE_LINE = re.compile(r"^\| *([0-9.]+)(ns|µs|us|ms|s) *\| (.+?) *$")
UNIT_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def kernel_profile(log, passes):
    """cubecl's profiling log summed by kernel (the hash suffix dropped): ms per pass, launches."""
    totals = {}
    for line in pathlib.Path(log).read_text(errors="replace").splitlines():
        m = PROFILE_LINE.match(line)
        if not m:
            continue
        name = re.sub(r"_[0-9a-f]{8}$", "", m.group(3))
        t = totals.setdefault(name, [0.0, 0])
        t[0] += float(m.group(1)) * UNIT_MS[m.group(2)]
        t[1] += 1
    return sorted(({"kernel": k, "ms/pass": v[0] / passes, "launches/pass": v[1] / passes}
                   for k, v in totals.items()), key=lambda r: -r["ms/pass"])


def step_profile(run, s):
    """Each kernel's GPU time over `bench` passes of the heaviest model, summed by kernel. A plain
    pass in a process of its own comes first, so that autotune's candidates (which the profiler
    would log too) are tuned and cached before the profiled process starts."""
    model = run.models[-1]
    iters = 1 if run.local else 3  # lavapipe: one pass
    # Locally the step checks the log's parsing, not lavapipe's speed: a 128² pass (a sixth of
    # 320²'s work) has the same kernels.
    size = ["--target-size", "128"] if run.local else []
    for prec in (["f32"] if run.local else ["f32", "f16"]):
        if run.autotune:
            run.gs(s, "bench", "--model", model, "--precision", prec, "--iters", "1", "--warmup", "0")
        log = run.work / f"profile-{model}-{prec}.log"
        log.unlink(missing_ok=True)
        out = run.gs(s, "bench", "--model", model, "--precision", prec, "--iters", str(iters), "--warmup", "0",
                     *size, env={"CUBECL_DEBUG_OPTION": "profile", "CUBECL_DEBUG_LOG": str(log)})
        j = json.loads(out.strip().splitlines()[-1])
        rows = kernel_profile(log, iters)
        total = sum(r["ms/pass"] for r in rows)
        s.data[f"{model} {prec}: profiled ms/image, kernels' sum ms/pass"] = \
            f"{j['median_ms_per_image']:.1f}, {total:.1f} ({len(rows)} kernels, {j['side']}² input)"
        for r in rows:
            r["share"] = f"{100 * r['ms/pass'] / total:.1f}%" if total else "-"
        s.data[f"{model} {prec}"] = rows[:25]
        if not rows:
            raise Failed(f"{prec}: cubecl's profiling log holds no kernel lines ({log})")
        run.write()


def post(url, photo, fields):
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    for k, v in fields.items():
        body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{photo.name}"\r\n'
               f"Content-Type: image/jpeg\r\n\r\n".encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode())
    req = urllib.request.Request(url, data=body.getvalue(), method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            data, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        data, status = e.read(), e.code
    return {"status": status, "seconds": time.monotonic() - t0, "bytes": len(data)}


def batches(metrics_url):
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    vals = {}
    for name in ("count", "sum"):
        m = re.search(rf"^inference_batch_size_{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
        vals[name] = float(m.group(1)) if m else 0.0
    return vals


def step_serve(run, s):
    model = run.models[-1]
    port = free_port()
    env = dict(run.env, HOST="127.0.0.1", PORT=str(port), MODEL=model, BATCH_SIZE="4", QUEUE_SIZE="8",
               STORAGE_BUCKET=str(run.work / "serve/cache"), CUSTOMER_STORAGE_BUCKET=str(run.work / "serve/shares"),
               RATE_LIMIT_PER_MINUTE="1000")
    base = f"http://127.0.0.1:{port}"
    log = open(run.work / "serve.log", "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([run.bin, "serve"], env=env, cwd=run.work / "cwd", stdout=log, stderr=subprocess.STDOUT)
    s.data.update(model=model, backend=run.backend, BATCH_SIZE=4, refine="off (the GPU's part alone)")
    try:
        with GpuMemory() as mem:
            while True:
                s.left()
                if proc.poll() is not None:
                    raise Failed(f"serve ended ({proc.returncode}): {(run.work / 'serve.log').read_text()[-1500:]}")
                try:
                    if urllib.request.urlopen(base + "/ready", timeout=2).status == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                time.sleep(0.2)
            s.data["process start to ready s"] = time.monotonic() - t0
            url = base + "/api/v2/remove-background"
            fields = {"refine": "off"}
            rows = []
            s.data["rows"] = rows
            if not run.local:  # lavapipe takes ~20 s an image: the CI variant checks batching alone
                rows.append({"phase": "first upload", **post(url, run.photos[0], fields)})
                run.write()
            m0 = batches(base + "/metrics")
            t1 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                got = list(pool.map(lambda p: post(url, p, fields), run.photos[1:5]))
            wall = time.monotonic() - t1
            m1 = batches(base + "/metrics")
            for r in got:
                rows.append({"phase": "4 at once", **r})
            n = m1["count"] - m0["count"]
            s.data["4 at once: wall s"] = wall
            s.data["4 at once: batches"] = f"{n:.0f} (mean {((m1['sum'] - m0['sum']) / n) if n else 0:.2f} images)"
            run.write()
            if not run.local:
                t2 = time.monotonic()
                for p in run.photos[5:9]:
                    rows.append({"phase": "4 in a row", **post(url, p, fields)})
                s.data["4 in a row: wall s"] = time.monotonic() - t2
            if n == 0 or (m1["sum"] - m0["sum"]) / n <= 1.0:
                raise Failed(f"4 uploads at once were not batched: {n:.0f} batches for {m1['sum'] - m0['sum']:.0f} images")
        s.data["peak GPU MiB"] = mem.used_mib()
        bad = [r for r in rows if r["status"] != 200]
        if bad:
            raise Failed(f"{len(bad)} uploads answered {sorted({r['status'] for r in bad})}")
    finally:
        if proc.poll() is not None:
            s.data["serve ended early"] = f"status {proc.returncode}" + (
                f" ({signal.Signals(-proc.returncode).name})" if proc.returncode < 0 else "")
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_all(args):
    run = Run(args)
    print(f"GPU kit run ({run.results['variant']}), budget {run.budget} s, results in {run.out}", flush=True)
    steps = {"setup": step_setup, "u2netp-parity": step_u2netp_parity, "reference": step_reference,
             "first-result": step_first_result, "inspyrenet-parity": step_inspyrenet_parity,
             "speed": step_speed, "torch-eager": step_torch_eager, "serve": step_serve, "profile": step_profile}
    for name in run.plan:
        if name != "setup" and run.results["steps"]["setup"]["status"] != "ok":
            run.results["steps"][name] = {"status": "not reached", "error": "setup failed"}
            run.write()
            continue
        run.step(name, lambda s, fn=steps[name]: fn(run, s))
    run.results["seconds"] = round(time.monotonic() - run.start, 1)
    run.write()
    print((run.out / "results.md").read_text())
    bad = [n for n, r in run.results["steps"].items() if r["status"] != "ok"]
    if bad:
        sys.exit(f"steps that did not pass: {', '.join(bad)}")


# ---------------------------------------------------------------------------------------------
# the reference side (PyTorch), in its own process


def torch_eager(args):
    import onnx2torch
    import torch
    from bench_inspyrenet import torch_bench

    work, kit = pathlib.Path(args.work), pathlib.Path(args.kit)
    rows = []
    dev = TORCH_DEVICE
    for model, prec, batch in [(m, p, b) for m in ("inspyrenet-base", "u2netp") for p in ("f32", "f16") for b in (1, 4)]:
        try:
            if model == "u2netp":
                net = onnx2torch.convert(str(kit / "models/u2netp.onnx")).eval().to(dev)
                x = torch.randn(batch, 3, 320, 320, device=dev)
                ms, peak = torch_time(net, x, dev, prec, 5, 20)
            else:
                ms, peak = torch_bench(work / "full/checkpoint.pth", 1024, dev, prec, batch, 3, 10)
            rows.append({"model": model, "precision": prec, "batch": batch, "ms/image": ms, "peak allocated MiB": peak})
        except Exception as e:  # noqa: BLE001 - recorded per configuration
            rows.append({"model": model, "precision": prec, "batch": batch, "error": f"{type(e).__name__}: {e}"[:300]})
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    print(json.dumps({"torch": torch.__version__, "U²-Netp in PyTorch": "onnx2torch from u2netp.onnx",
                      "f16": "autocast", "rows": rows}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest")
    m.add_argument("--kit", required=True)
    m.add_argument("--features", required=True)
    m.add_argument("--commit", required=True)
    m.add_argument("--limit-mib", type=float, required=True)
    r = sub.add_parser("run")
    r.add_argument("--kit", required=True)
    r.add_argument("--repo", required=True)
    r.add_argument("--local", action="store_true", help="lavapipe: the steps it can run (U²-Netp)")
    r.add_argument("--out", help="results folder (default $OUT, else target/gpu-kit/out)")
    r.add_argument("--budget", type=float, help="seconds for the whole run (default 450; --local 400)")
    r.add_argument("--work", default=f"/tmp/gpu-kit-{os.getuid()}")
    r.add_argument("--steps", help="only these steps, comma-separated (setup always runs)")
    r.add_argument("--caps", help="other time limits for steps, NAME=SECONDS,...")
    r.add_argument("--speed", help="the speed step's configurations, MODEL:PRECISION:BATCH,...")
    t = sub.add_parser("torch")
    t.add_argument("what", choices=["eager"])
    t.add_argument("--kit", required=True)
    t.add_argument("--work", required=True)
    t.add_argument("--repo", required=True)
    args = ap.parse_args()
    if args.cmd == "manifest":
        manifest(args)
    elif args.cmd == "run":
        if args.budget is None:
            args.budget = 400.0 if args.local else 450.0
        run_all(args)
    else:
        torch_eager(args)


if __name__ == "__main__":
    main()
