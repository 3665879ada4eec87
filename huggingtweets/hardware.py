"""What this machine's processor does fast, for the choices that depend on it.

    if cpu_bf16(): ...        # train with bf16 autocast, generate with bf16 weights
    precision = default_precision(accelerator())          # "bf16", "fp16" or "fp32" for this machine's device
    previous = set_attention(model, BF16_CPU_ATTENTION)   # and transformers' own attention, faster there in bf16

Why: on a CPU with native bf16 dot products (x86 AVX512-BF16 or AMX: Intel Sapphire Rapids and later, AMD Zen 4
and later) a bf16 matrix multiply runs about 4x as fast as a float32 one (2 Zen 5 cores: 810 against 210 GFLOP/s
at this model's shapes); without them torch emulates bf16 and it runs hundreds of times slower (0.3 GFLOP/s on an
AVX2 machine). So the CPU defaults use bf16 only where the processor has it (benchmarks/README.md).
`HUGGINGTWEETS_CPU_BF16=0` (or `1`) overrides the check, e.g. for float32 results on any machine.
"""

from __future__ import annotations

import os

import torch

from .errors import HuggingTweetsError

CPU_BF16 = "HUGGINGTWEETS_CPU_BF16"


def cpu_bf16() -> bool:
    """Whether bf16 arithmetic is native, and so fast, on this CPU."""
    setting = os.environ.get(CPU_BF16, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    if setting:
        raise HuggingTweetsError(f"{CPU_BF16} must be 0 (float32) or 1 (bf16), or unset to follow the processor; got {setting!r}")
    # torch's own checks (what its compiler uses to pick kernels); a torch without them is taken as lacking bf16.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if callable(check))

# In bf16 on a CPU, transformers' own attention ("eager": two matmuls and a float32 softmax) runs faster than torch's
# SDPA kernels at post lengths (128-token blocks, 64-wide heads): LoRA steps 1.15x, a full fine-tune's ~1.25x,
# generation 1.14x, in alternating runs (benchmarks/README.md). In float32 the two are even.
BF16_CPU_ATTENTION = "eager"


def set_attention(model: object, implementation: str) -> str | None:
    """Switch a transformers model (or the model inside a PEFT wrapper) to another attention implementation; return
    the one it had, or None where it cannot switch (then it is left as it is)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current is None or not hasattr(inner, "set_attn_implementation"):
        return None
    if current != implementation:
        inner.set_attn_implementation(implementation)
    return str(current)


def accelerator() -> str:
    """The device training and generation use: "cuda" (NVIDIA, or AMD through ROCm), "mps" (Apple) or "cpu"."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


# bf16 needs the tensor cores of compute capability 8.0 (Ampere: A100, A10, RTX 30xx) and later. Older cards (T4,
# V100: 7.x; P100: 6.0) run it emulated, many times slower, though torch.cuda.is_bf16_supported() may still say yes:
# they train in fp16 with loss scaling (the Trainer's GradScaler), which their tensor cores do run fast.
BF16_CAPABILITY = 8


def gpu_capability(index: int = 0) -> tuple[int, int]:
    """(major, minor) compute capability of a CUDA device (what tests fake)."""
    return tuple(torch.cuda.get_device_capability(index))  # type: ignore[return-value]


def default_precision(device: str) -> str:
    """The arithmetic a training run on `device` uses unless told otherwise.

    cuda: bf16 from Ampere on, fp16 before (T4, V100). mps: fp32 (not measured here: Apple's bf16 and fp16 training
    are not known to be faster for this model, and fp16 without loss scaling there loses small gradients). cpu: bf16
    autocast where the processor has bf16 arithmetic (`cpu_bf16`), else fp32.
    """
    if device == "cuda":
        return "bf16" if gpu_capability()[0] >= BF16_CAPABILITY else "fp16"
    if device == "mps":
        return "fp32"
    return "bf16" if cpu_bf16() else "fp32"
