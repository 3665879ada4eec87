"""The GPU check's own measures (issue 21): the card and the precision the defaults pick on it, and its matmul peak
in that precision, the ceiling for the GPU run's utilisation. Everything is read through torch.cuda (what tests fake)."""

from __future__ import annotations

from typing import Any

from .peak import _best_matmul

GPU_TARGET_S = 30.0  # issue 5: 3,200 posts x 4 epochs in at most 30 s on one H100
TARGET_CARD = "H100"
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def describe_gpu() -> dict[str, Any]:
    """The first CUDA device: name, compute capability, memory, versions, and the precision training picks there."""
    import torch

    from ..hardware import default_precision, gpu_capability

    name = str(torch.cuda.get_device_name(0))
    return {
        "name": name,
        "capability": list(gpu_capability()),
        "memory_bytes": int(torch.cuda.get_device_properties(0).total_memory),
        "count": int(torch.cuda.device_count()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "precision": default_precision("cuda"),  # bf16 from capability 8 (Ampere, Hopper), fp16 before
        "h100": TARGET_CARD in name.upper(),  # the 30 s target is judged only on the card it names
    }


def gpu_peak(precision: str, size: int, repeats: int, device: str) -> dict[str, Any]:
    """Best-of-`repeats` matmul rate in the run's own precision on `device`."""
    import torch

    best = _best_matmul(size, repeats, device, getattr(torch, DTYPES[precision]))
    return {"device": device, "precision": precision, "size": size, "repeats": repeats, "best_seconds": best,
            "gflops": 2 * size**3 / best / 1e9}
