"""Training throughput through `train_model` itself: timed steps of the project's own training (child processes,
so each run's peak memory is its own), and the GPU target."""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .figures import flops_per_token


class Clock:
    """A training listener that notes when each event happens (perf_counter), for timing from outside."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.steps: dict[int, float] = {}
        self.evals: list[dict[str, float]] = []  # step, epoch, eval_loss, at

    def __call__(self, event: Any) -> None:
        now = time.perf_counter()
        if event.kind == "start":
            self.start = now
        elif event.kind == "step":
            self.steps[event.step] = now
        elif event.kind == "eval" and event.eval_loss is not None:
            self.evals.append({"step": event.step, "epoch": event.epoch, "eval_loss": event.eval_loss, "at": now})


def count_parameters(model: Any) -> tuple[int, int]:
    """(all, trainable); `parameters()` yields a tied weight once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def attention_modules(model: Any) -> list[str]:
    """Qualified names of the attention projections (q/k/v/o in Llama, c_attn/c_proj under attn in GPT-2)."""
    import torch

    names = []
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if linear and re.search(r"attn|attention", name, re.IGNORECASE):
            names.append(name)
    return names


def prepare(model: Any, config: Any, lora_target: str, layers: list[Any] | None, checkpointing: bool = False) -> tuple[Any, str]:
    """Apply a lever to a fresh model: LoRA on chosen modules, a full fine-tune of the top/bottom k layers only,
    gradient checkpointing."""
    from ..train import layer_stack

    if checkpointing:
        # Recompute each layer's activations in the backward pass instead of keeping them: less memory, more compute.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.method == "lora" and lora_target == "attention":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0,
            target_modules=attention_modules(model), task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora), "lora"
    if layers:
        where, k = layers[0], int(layers[1])
        for p in model.parameters():
            p.requires_grad = False
        stack = layer_stack(model)
        chosen = list(stack)[-k:] if where == "top" else list(stack)[:k]
        for layer in chosen:
            for p in layer.parameters():
                p.requires_grad = True
        return model, "layers"
    if config.method == "lora" and config.lora_layers:
        return model, "layers"  # the backward pass stops at the lowest adapted layer: 4N + 2N_trainable does not hold
    return model, config.method


def train_steps(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: train `warmup + steps` steps with train_model and time the last `steps`; optionally evaluate after.

    spec: base_model, texts, config (TrainConfig fields), warmup, steps, [validation, lora_target, layers].
    """
    from .. import models
    from ..dataset import build_blocks
    from ..evaluate import perplexity
    from ..train import TrainConfig, train_model

    warmup, steps = int(spec["warmup"]), int(spec["steps"])
    # One evaluation point per epoch and no time-based checkpoints: nothing but training inside the timed steps.
    config = replace(TrainConfig(**spec["config"]), max_steps=warmup + steps, evals_per_epoch=1, save_minutes=1e9)
    model, tokenizer = models.load_base(spec["base_model"])
    model, kind = prepare(model, config, spec.get("lora_target", "all-linear"), spec.get("layers"), bool(spec.get("checkpointing")))
    texts = list(spec["texts"])
    blocks = len(build_blocks(texts, tokenizer, config.block_size))
    need = config.batch_size * (warmup + steps + 1)  # more than the run takes, so no epoch-end checkpoint falls inside it
    if blocks < need:
        texts = texts * math.ceil(need / max(1, blocks))
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as work:
        result = train_model(model, tokenizer, texts, [], config, Path(work) / "run", listener=clock, show_progress=False)
    begin = clock.steps[warmup] if warmup else clock.start
    assert begin is not None
    out = _step_figures(spec, config, kind, result, clock.steps[warmup + steps] - begin, warmup, steps)
    if spec.get("validation"):
        out["eval_loss"] = math.log(perplexity(result.model, tokenizer, spec["validation"], config.block_size))
    return out


def _step_figures(spec: dict[str, Any], config: Any, kind: str, result: Any, seconds: float, warmup: int, steps: int) -> dict[str, Any]:
    import torch

    positions = config.batch_size * config.block_size * steps
    real = result.train_stats["tokens"] / max(1, result.train_stats["blocks"]) * config.batch_size * steps
    total, trainable = count_parameters(result.model)
    flops, formula = flops_per_token(kind, total, trainable)
    return {
        "kind": kind,
        "method": config.method,
        "lora_rank": config.lora_rank if config.method == "lora" else None,
        "lora_target": spec.get("lora_target", "all-linear") if config.method == "lora" else None,
        "layers": spec.get("layers"),
        "checkpointing": bool(spec.get("checkpointing")),
        "batch_size": config.batch_size,
        "block_size": config.block_size,
        "learning_rate": config.learning_rate,
        "precision": config.precision,
        "threads": torch.get_num_threads(),
        "warmup_steps": warmup,
        "steps": steps,
        "step_seconds": seconds / steps,
        "tokens_per_s": positions / seconds,  # every position of a batch, padding included
        "real_tokens_per_s": real / seconds,  # positions holding a post's token
        "parameters": total,
        "trainable_parameters": trainable,
        "flops_per_token": flops,
        "flops_formula": formula,
        "padding_share": result.train_stats["padding_share"],
        "eval_loss": None,
    }


def gpu_config(**overrides: Any) -> Any:
    """The defaults on a CUDA device: `TrainConfig().resolved("cuda")` (full fine-tune, 4 epochs, batch 8, bf16 from
    compute capability 8, fp16 before), no time-based checkpoints."""
    from ..train import TrainConfig

    return TrainConfig(save_minutes=1e9, **overrides).resolved("cuda")


def gpu_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: the GPU target, a full fine-tune of `posts` posts for 4 epochs with the GPU defaults, no evaluation;
    its tokens/s (from the first step to the last) and peak GPU memory.

    spec: base_model, texts, posts, [config: TrainConfig fields; default `gpu_config(evals_per_epoch=1)`].
    """
    import torch

    from .. import models
    from ..train import TrainConfig, train_model

    config = TrainConfig(**spec["config"]) if spec.get("config") else gpu_config(evals_per_epoch=1)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model, tokenizer = models.load_base(spec["base_model"])
    texts = list(spec["texts"])
    texts = (texts * math.ceil(int(spec["posts"]) / len(texts)))[: int(spec["posts"])]
    clock = Clock()
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as work:
        start = time.perf_counter()
        result = train_model(model, tokenizer, texts, [], config, Path(work) / "run", listener=clock, show_progress=False)
        seconds = time.perf_counter() - start
    total, trainable = count_parameters(result.model)
    flops, formula = flops_per_token(config.method, total, trainable)
    positions = config.batch_size * config.block_size  # per step, padding included
    first, last = min(clock.steps), max(clock.steps)
    steady = clock.steps[last] - clock.steps[first]
    return {
        "posts": len(texts), "epochs": config.epochs, "steps": result.steps, "train_seconds": seconds, "precision": config.precision,
        "method": config.method, "batch_size": config.batch_size, "block_size": config.block_size,
        "compiled": result.train_stats.get("compiled"), "padding_share": result.train_stats.get("padding_share"),
        # From the end of the first step to the end of the last: the steady rate, without loading and the first step.
        "tokens_per_s": positions * (last - first) / steady if last > first and steady > 0 else None,
        "run_tokens_per_s": positions * result.steps / seconds,  # over the whole train_model call
        "parameters": total, "trainable_parameters": trainable, "flops_per_token": flops, "flops_formula": formula,
        "max_memory_allocated_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "max_memory_reserved_bytes": int(torch.cuda.max_memory_reserved()) if cuda else None,
    }
