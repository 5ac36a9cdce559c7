"""What the benchmark scripts share: the CPU they ran on, peak GPU memory around a command, and
timing a PyTorch forward pass the way the reference runs it. Imports nothing heavy at module level, so scripts
that never touch PyTorch (scripts/gpu_kit.py on a machine without it) can use it too."""

import shutil
import statistics
import subprocess
import threading
import time


def cpu_model():
    """The CPU as the README's table of machines names it: `lscpu`'s model name, which is
    often only "AMD EPYC" or "Intel Xeon" in a virtual machine, with its family and model
    numbers (which tell the generations apart) and the widest vectors it has, e.g.
    "AMD EPYC (family 23 model 1; AVX2, no AVX-512)"."""
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    name = info.get("Model name", "unknown")
    flags = set(info.get("Flags", "").split())
    if "avx512f" in flags:
        width = "AVX-512"
    elif "avx2" in flags:
        width = "AVX2, no AVX-512"
    else:
        width = "no AVX2"
    family, model = info.get("CPU family"), info.get("Model")
    generation = f"family {family} model {model}; " if family and model else ""
    return f"{name} ({generation}{width})"


class GpuMemory:
    """Peak of the GPU's used memory while a command runs, above what was used before
    (`nvidia-smi`; None where there is none)."""

    def __init__(self):
        self.smi = shutil.which("nvidia-smi")
        self.base = self.read()
        self.peak = self.base
        self.stop = threading.Event()

    def read(self):
        if not self.smi:
            return None
        out = subprocess.run([self.smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
        return float(out.split()[0])

    def __enter__(self):
        def poll():
            while not self.stop.wait(0.05):
                self.peak = max(self.peak, self.read())
        if self.smi:
            self.thread = threading.Thread(target=poll, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.smi:
            self.thread.join()

    def used_mib(self):
        return None if self.base is None else self.peak - self.base


def torch_time(forward, x, device, precision, warmup, iters):
    """Median ms per image of `forward(x)` (x's first dimension is the batch) and the peak of
    PyTorch's allocations in MiB (None off CUDA). f16 is autocast: the way PyTorch runs these
    networks in half precision (InSPyReNet's code does not run under `model.half()`: its
    shifted-window mask is float32, so the attention turns float32 and meets a half `v`)."""
    import torch

    cuda = device.startswith("cuda")
    autocast = torch.autocast(device.split(":")[0], dtype=torch.float16, enabled=precision == "f16")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + iters):
        t = time.perf_counter()
        with torch.inference_mode(), autocast:
            forward(x)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return statistics.median(times) / x.shape[0], peak
