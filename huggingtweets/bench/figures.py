"""Arithmetic on measured figures, importing nothing of the bench: the measuring modules and the report share it,
so that the report needs no measuring module to judge a figure."""

from __future__ import annotations

from typing import Any


def median(values: list[Any]) -> float | None:
    """The middle value, the upper one of an even count (None values left out; None when nothing is left)."""
    clean = sorted(v for v in values if v is not None)
    return clean[len(clean) // 2] if clean else None


def flops_per_token(kind: str, total: int, trainable: int) -> tuple[float | None, str]:
    """Training FLOPs per token and the formula used (None where neither formula fits, e.g. frozen layers)."""
    if kind == "full":
        return 6.0 * total, "6N"
    if kind == "lora":
        # Forward 2N and gradients w.r.t. activations 2N run through the whole model; weight gradients only for adapters.
        return 4.0 * total + 2.0 * trainable, "4N + 2N_trainable"
    return None, "n/a (frozen layers: backward stops part-way)"


def utilisation(run: dict[str, Any], peak: dict[str, Any]) -> float | None:
    """Share of the matmul peak of the run's own arithmetic (bf16 runs against the bf16 peak)."""
    peak_gflops = peak.get("bf16_gflops") if run.get("precision") == "bf16" and peak.get("device") == "cpu" else peak.get("gflops")
    if "error" in run or not run.get("flops_per_token") or not peak_gflops:
        return None
    return float(run["flops_per_token"] * run["tokens_per_s"] / (peak_gflops * 1e9))
