"""Levers timed in a plain training loop instead of `train_model`: two ways of taking a step alternating on one
model (the fused loss, compiled layers, the end marker's weight, the framing), and torch.compile of the whole model."""

from __future__ import annotations

import time
from typing import Any

from .figures import median

# step_pairs' variants: what the new way is against the old one (the report's wording).
PAIR_VARIANTS = (
    ("loss", "Fused loss vs transformers' loss"),
    ("compile", "Compiled layers vs eager"),
    ("end_weight", "End marker 3x vs 1x in the loss"),
    ("framing", "Posts packed together vs each alone"),
)


def _loop_model(spec: dict[str, Any], lora_rank: int | None) -> tuple[Any, Any]:
    """The base model ready for a plain training loop (LoRA when `lora_rank`), and its tokenizer."""
    from .. import models
    from ..train import add_lora

    model, tokenizer = models.load_base(spec["base_model"])
    if lora_rank:
        model = add_lora(model, lora_rank)
    model.config.use_cache = False
    model.train()
    return model, tokenizer


def _blocks(spec: dict[str, Any], tokenizer: Any, isolate: bool = True) -> Any:
    from ..dataset import build_blocks

    return build_blocks(list(spec["texts"]), tokenizer, int(spec["block_size"]), isolate)


def step_pairs(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: two ways of taking a training step, alternating step by step on one model and the same batches.

    Separate runs of a few steps differ by more than the effects (±15% on this shared machine); alternating steps in
    one process sees the same machine state for both. spec: base_model, texts, method, batch_size, block_size, pairs,
    precision (fp32, or bf16: autocast and transformers' attention, as `train_model` runs on a CPU),
    variant: "loss", the fused loss (new) against transformers' own (old); "compile", compiled layers (new, as
    `train_model` compiles them) against eager ones (old), both with the fused loss; "end_weight", the end marker
    weighted 3x in the fused loss (new) against 1x; "framing", posts packed together (new, positions running on
    through a block) against each alone (old, positions restarting at every post), the same tokens.
    speedup = old / new step time.
    """
    from ..dataset import markers
    from ..hardware import BF16_CPU_ATTENTION, set_attention
    from ..loss import EndWeight

    batch, pairs, variant = int(spec["batch_size"]), int(spec["pairs"]), spec.get("variant", "loss")
    model, tokenizer = _loop_model(spec, 16 if spec["method"] == "lora" else None)
    bf16 = spec.get("precision") == "bf16"
    if bf16:
        set_attention(model, BF16_CPU_ATTENTION)
    old = _blocks(spec, tokenizer).inputs(slice(None))
    new = _blocks(spec, tokenizer, isolate=False).inputs(slice(None)) if variant == "framing" else old
    if len(old["input_ids"]) < batch:
        return {"error": f"need at least {batch} blocks"}
    end = EndWeight(markers(tokenizer)[1], 3.0) if variant == "end_weight" else None
    seconds = _alternate(model, (old, new), batch, pairs, variant, bf16, end)
    new_s, old_s = median(seconds["new"]), median(seconds["old"])
    return {"variant": variant, "method": spec["method"], "precision": "bf16" if bf16 else "fp32", "batch_size": batch, "pairs": pairs,
            "new_step_s": new_s, "old_step_s": old_s,
            "speedup": old_s / new_s if new_s and old_s else None}


def _alternate(
    model: Any, data: tuple[dict[str, Any], dict[str, Any]], batch: int, pairs: int, variant: str, bf16: bool, end: Any = None,
) -> dict[str, list[float]]:
    """Seconds of each timed step, the new way's and the old way's, taken in turn on the same batches (`data`: the
    old way's inputs and the new way's, the same tokens); `end` weighs the end marker in the new way's loss."""
    import torch

    from ..compiling import compiled
    from ..loss import causal_lm_loss
    from ..train import layer_stack

    layers = list(layer_stack(model)) if variant == "compile" else []
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, fused=True)
    seconds: dict[str, list[float]] = {"new": [], "old": []}
    warm = 3 if variant == "compile" else 1  # pairs before timing: compilation and its variants fall in the first steps
    for i in range(2 * (pairs + warm)):
        new = bool(i % 2)
        at = (i // 2 * batch) % max(1, len(data[0]["input_ids"]) - batch + 1)  # both steps of a pair see the same batch
        inputs = {k: v[at : at + batch] for k, v in data[int(new)].items()}
        with compiled(layers if new else []):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**inputs).loss if variant == "loss" and not new else causal_lm_loss(model, inputs, end=end if new else None)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= 2 * warm:
                seconds["new" if new else "old"].append(time.perf_counter() - start)
    return seconds


def compile_speedup(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: LoRA training steps eager vs the whole model under torch.compile, in a plain loop.

    Training compiles the layers only (compiling.py, timed in the `throughput` section); this shows what compiling
    everything would add, and what it would cost in compile time.
    """
    import torch

    batch, block, steps = int(spec["batch_size"]), int(spec["block_size"]), int(spec["steps"])
    model, tokenizer = _loop_model(spec, int(spec.get("lora_rank", 16)))
    data = _blocks(spec, tokenizer)
    full = max(1, len(data) // batch)  # whole batches only: one shape, so one compilation
    batches = [{k: v[i * batch : (i + 1) * batch] for k, v in data.inputs(slice(None)).items()} for i in range(full)] if len(data) >= batch else []
    if not batches:
        return {"error": f"need at least {batch} blocks"}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(m: Any, i: int) -> None:
        m(**batches[i % len(batches)]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def rate(m: Any) -> float:
        start = time.perf_counter()
        for i in range(steps):
            step(m, i + 1)
        return batch * block * steps / (time.perf_counter() - start)

    step(model, 0)
    eager = rate(model)
    out: dict[str, Any] = {"steps": steps, "eager_tokens_per_s": eager}
    try:
        compiled = torch.compile(model)
        start = time.perf_counter()
        step(compiled, 0)
        out["compile_seconds"] = time.perf_counter() - start
        out["compiled_tokens_per_s"] = rate(compiled)
        out["speedup"] = out["compiled_tokens_per_s"] / eager
        saved = batch * block * (1 / eager - 1 / out["compiled_tokens_per_s"])
        out["break_even_steps"] = out["compile_seconds"] / saved if saved > 0 else None
    except Exception as e:  # no compiler, an unsupported op: that is a result too
        out["compile_error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
    return out
