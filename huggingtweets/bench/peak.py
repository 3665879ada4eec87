"""The machine the figures come from, and its matmul peak: the ceiling that utilisation is a share of."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    import torch

    from ..hardware import cpu_bf16

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector instructions torch's kernels use
        "cpu_bf16": cpu_bf16(),  # native bf16 arithmetic: the CPU defaults train and generate in bf16
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def matmul_peak(size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best-of-`repeats` fp32 matmul rate on the device training uses: the ceiling for utilisation. On a CPU with bf16
    arithmetic also the bf16 rate (`bf16_gflops`): the ceiling for runs in bf16, the CPU default there."""
    import torch

    from ..hardware import cpu_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = _best_matmul(size, repeats, device, torch.float32)
    out = {"device": device, "size": size, "repeats": repeats, "best_seconds": best, "gflops": 2 * size**3 / best / 1e9}
    if device == "cpu" and cpu_bf16():
        out["bf16_gflops"] = 2 * size**3 / _best_matmul(size, repeats, device, torch.bfloat16) / 1e9
    return out


def _best_matmul(size: int, repeats: int, device: str, dtype: Any) -> float:
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.matmul(a, b)  # warm-up: thread pool, caches, lazy init
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
