"""The race: the original HuggingTweets recipe against the project's defaults on the same posts, in training
seconds until each reaches the reference's best held-out perplexity (in this process, timed by a listener)."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .options import REFERENCE_LR
from .training import Clock


@contextmanager
def timed_checkpoints(spans: list[tuple[float, float]]) -> Iterator[None]:
    """Note when Trainer writes each checkpoint, so those seconds can be taken out of the training time.

    Trainer has no callback around the write itself, so its method is wrapped for the duration (this process only).
    """
    from transformers import Trainer

    original = getattr(Trainer, "_save_checkpoint", None)
    if original is None:  # another transformers version: checkpoint time then stays in the training time
        yield
        return

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spans.append((start, time.perf_counter()))

    Trainer._save_checkpoint = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        Trainer._save_checkpoint = original  # type: ignore[method-assign]


def race_arm(name: str, config: Any, base_model: str | None, train: list[str], validation: list[str]) -> tuple[dict[str, Any], Any]:
    """Train one arm with evaluations; return its timeline and the trained (best) model.

    Training seconds leave out evaluation (from the step that triggers it to its result) and checkpoint writes.
    """
    from .. import models
    from ..train import train_model

    model, tokenizer = models.load_base(base_model)
    clock, saves = Clock(), []
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as work, timed_checkpoints(saves):
        result = train_model(model, tokenizer, train, validation, config, Path(work) / "run", listener=clock, show_progress=False)
    assert clock.start is not None
    start = clock.start
    pauses = [(clock.steps[e["step"]], e["at"]) for e in clock.evals] + saves

    def training_seconds(at: float) -> float:
        return at - start - sum(end - begin for begin, end in pauses if end <= at)

    history = [
        {
            "step": int(e["step"]),
            "epoch": round(e["epoch"], 3),
            "eval_loss": round(e["eval_loss"], 4),
            "perplexity": round(math.exp(e["eval_loss"]), 3),
            "train_seconds": round(training_seconds(clock.steps[e["step"]]), 1),
            "wall_seconds": round(e["at"] - start, 1),
        }
        for e in clock.evals
    ]
    last = max(clock.steps.values())
    best = min(history, key=lambda r: r["eval_loss"]) if history else None
    summary = {
        "name": name,
        "config": {k: v for k, v in asdict(result.config).items() if k not in ("wandb", "save_minutes")},
        "train_posts": len(train),
        "validation_posts": len(validation),
        "steps": result.steps,
        "train_seconds": round(training_seconds(last), 1),
        "wall_seconds": round(last - start, 1),
        "eval_seconds": round(sum(e["at"] - clock.steps[e["step"]] for e in clock.evals), 1),
        "checkpoint_seconds": round(sum(end - begin for begin, end in saves), 1),
        "best_eval_loss": best["eval_loss"] if best else None,
        "best_perplexity": best["perplexity"] if best else None,
        "best_at_train_seconds": best["train_seconds"] if best else None,
        "history": history,
    }
    return summary, result.model


def reference_config(evals_per_epoch: int) -> Any:
    """The original HuggingTweets training: its recipe, and transformers' Trainer with the model's own loss (as the
    original ran it); this project's fused loss is one of the things measured against it. `--levers` also runs
    the recipe with the fused loss. Pinned, not inherited from today's defaults: posts packed together, each after
    the ones before it, and every token weighing the same in the loss (the end marker too), as in the original."""
    from ..train import TrainConfig

    return TrainConfig(
        method="full", epochs=4.0, learning_rate=REFERENCE_LR, batch_size=8, block_size=128, precision="fp32",
        evals_per_epoch=evals_per_epoch, early_stopping_patience=evals_per_epoch, save_minutes=1e9, fused_loss=False,
        isolate_posts=False, end_loss_weight=1.0,
    )


def default_config(evals_per_epoch: int, method: str = "auto", device: str = "cpu") -> Any:
    """The project's defaults on `device` for `method` (auto: LoRA on a CPU, a full fine-tune on a GPU), with early
    stopping scaled to `evals_per_epoch`. device "cuda": `TrainConfig().resolved("cuda")`, bf16 from capability 8."""
    import torch

    from ..train import TrainConfig

    if device == "cuda":
        defaults = TrainConfig(method=method)  # type: ignore[arg-type]
    else:
        # On a GPU machine these CPU settings train on the GPU, in float32 as they always did (the host CPU's bf16 is moot).
        defaults = TrainConfig(method=method, precision="fp32" if torch.cuda.is_available() else "auto")  # type: ignore[arg-type]
    # Early stopping after the same share of an epoch as the defaults (2 evaluations at 2 per epoch: one epoch).
    patience = max(1, round(defaults.early_stopping_patience * evals_per_epoch / defaults.evals_per_epoch))
    return replace(defaults, evals_per_epoch=evals_per_epoch, early_stopping_patience=patience, save_minutes=1e9).resolved(device)


def compare(reference: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """When each arm first reaches the reference's best held-out loss, and the ratio of those times."""
    target = reference["best_eval_loss"]

    def first(arm: dict[str, Any], key: str) -> float | None:
        return next((r[key] for r in arm["history"] if target is not None and r["eval_loss"] <= target), None)

    t_ref, t_def = first(reference, "train_seconds"), first(default, "train_seconds")
    w_ref, w_def = first(reference, "wall_seconds"), first(default, "wall_seconds")
    return {
        "target_eval_loss": target,
        "target_perplexity": reference["best_perplexity"],
        "reference_seconds": t_ref,
        "default_seconds": t_def,  # None: the default never reached it
        "ratio": t_def / t_ref if t_def is not None and t_ref else None,
        "wall_ratio": w_def / w_ref if w_def is not None and w_ref else None,
        "default_best_perplexity": default["best_perplexity"],
    }


def race_arms(depth: int) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The default's variants that run the whole race with --levers, for a model `depth` layers deep."""
    return (
        ("batch 8, lr 4e-3 (the previous default)", {"batch_size": 8, "learning_rate": 4e-3}),
        ("lr 4e-3", {"learning_rate": 4e-3}),
        ("lr 2e-3, 1 epoch", {"learning_rate": 2e-3, "epochs": 1.0}),
        (f"LoRA on the top {depth // 2} of {depth} layers", {"lora_layers": depth // 2}),
    )
