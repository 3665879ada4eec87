"""`--levers`: each lever against the default (training, step pairs, torch.compile, generation), then whole race
runs of a few variants of the default."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from .child import in_child
from .data import Data, evenly, padding
from .figures import utilisation
from .options import BenchOptions, Say
from .race import compare, default_config, race_arm, race_arms, reference_config
from .steps import PAIR_VARIANTS


def levers(
    options: BenchOptions, data: Data, tokenizer: Any, peak: dict[str, Any], say: Say, reference: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Each lever against the default, tokens/s and (where cheap) held-out loss after the same number of steps;
    then a few variants of the default run the whole race (compared with `reference` when the race ran too)."""
    from ..train import TrainConfig

    depth = _depth(options.base_model)
    out: dict[str, Any] = {"steps": options.lever_steps, "training": _training(options, data, peak, say, depth)}
    out["padding_by_block"] = {str(b): padding(data.train, tokenizer, b)["padding_share"] for b in (64, 128, 256)}
    out.update(_step_pairs(options, data, say))
    say("  lever: torch.compile")
    out["compile"] = in_child("compile_speedup", {"base_model": options.base_model, "texts": evenly(data.train, 256), "batch_size": 8,
                                                   "block_size": TrainConfig().block_size, "steps": options.lever_steps}, 900)
    out["generation"] = _generation(options, data, say)
    out["race_arms"] = _race(options, data, say, depth, reference)
    return out


def training_levers(depth: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each training lever: its config and what else its child does (`no_eval`: tokens/s only, no held-out loss)."""
    lora = default_config(2)
    full = default_config(2, "full")
    k = max(1, depth // 3)
    return {
        "lora r=8": (replace(lora, lora_rank=8), {}),
        "lora r=16 (default)": (lora, {}),
        "lora r=32": (replace(lora, lora_rank=32), {}),
        "lora r=16 attention only": (lora, {"lora_target": "attention"}),
        "lora lr 5e-4": (replace(lora, learning_rate=5e-4), {}),
        "lora lr 4e-3": (replace(lora, learning_rate=4e-3), {}),
        "full, all layers": (full, {}),
        "full, the loss on the logits (not fused)": (replace(full, fused_loss=False), {"no_eval": True}),
        "lora, the loss on the logits (not fused)": (replace(lora, fused_loss=False), {"no_eval": True}),
        f"full, top {k} of {depth} layers": (full, {"layers": ["top", k]}),
        f"full, bottom {k} of {depth} layers": (full, {"layers": ["bottom", k]}),
        "lora block 64": (replace(lora, block_size=64), {"no_eval": True}),
        "lora block 256": (replace(lora, block_size=256), {"no_eval": True}),
        "lora 1 thread": (lora, {"threads": 1, "no_eval": True}),
        "lora batch 4": (replace(lora, batch_size=4), {"no_eval": True}),
        "lora batch 8": (replace(lora, batch_size=8), {"no_eval": True}),
        f"lora, top {depth // 2} of {depth} layers only": (replace(lora, lora_layers=depth // 2), {}),
        "lora + gradient checkpointing": (lora, {"checkpointing": True, "no_eval": True}),
    }


def _training(options: BenchOptions, data: Data, peak: dict[str, Any], say: Say, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (config, extra) in training_levers(depth).items():
        say(f"  lever: {name}")
        spec = {"base_model": options.base_model, "texts": data.race_train, "config": asdict(config), "warmup": options.warmup_steps,
                "steps": options.lever_steps, **{k: v for k, v in extra.items() if k != "no_eval"}}
        if not extra.get("no_eval"):
            spec["validation"] = data.race_validation
        got = in_child("train_steps", spec, options.child_timeout_s)
        got["utilisation"] = utilisation(got, peak)
        out[name] = got
    return out


def _step_pairs(options: BenchOptions, data: Data, say: Say) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant, what in PAIR_VARIANTS:
        out[f"{variant}_pairs"] = {}
        for method, config, pairs in (("full", default_config(2, "full"), 6), ("lora", default_config(2), 20)):
            say(f"  lever: {what.lower()}, {method}, {pairs} alternating pairs of steps")
            out[f"{variant}_pairs"][method] = in_child("step_pairs", {
                "base_model": options.base_model, "texts": data.race_train, "method": method, "batch_size": config.batch_size,
                "block_size": config.block_size, "pairs": max(2, pairs * options.lever_steps // 6), "variant": variant,
                "precision": config.precision}, options.child_timeout_s)
    return out


def _generation(options: BenchOptions, data: Data, say: Say) -> dict[str, Any]:
    # On the base model, 32 new tokens (without the KV cache every token recomputes the whole prefix).
    batch = options.generation_batch
    variants: tuple[tuple[str, int, dict[str, Any]], ...] = (
        ("KV cache (default)", batch, {"validation": data.race_validation}),
        ("no KV cache", batch, {"use_cache": False}),
        ("transformers' sampling (do_sample=True, sorts the vocabulary)", batch, {"fast_sampling": False}),
        # A higher temperature widens the nucleus: the sort's cost grows with it, the project's sampler's does not.
        ("the project's sampler at temperature 1.3", batch, {"temperature": 1.3}),
        ("transformers' sampling at temperature 1.3", batch, {"fast_sampling": False, "temperature": 1.3}),
        ("int8 dynamic quantisation of the layers", batch, {"int8": True, "validation": data.race_validation}),
        ("batch 32", 32, {}),
    )
    out: dict[str, Any] = {}
    for name, size, extra in variants:
        say(f"  lever: generation, {name}")
        out[name] = in_child("generation", {
            "model": options.base_model, "max_new_tokens": 32, "batched_posts": size, "batch_size": size, **extra,
        }, options.child_timeout_s)
    return out


def _race(options: BenchOptions, data: Data, say: Say, depth: int, reference: dict[str, Any] | None) -> dict[str, Any]:
    """Whole runs of default variants on the race's posts: what reaches the reference's best perplexity, and when."""
    evals = options.evals_per_epoch
    variants = options.race_variants or race_arms(depth)
    arms = [(name, f"default with {name}", replace(default_config(evals), **overrides)) for name, overrides in variants]
    if reference:
        # The recipe with this project's fused loss: how much of the race is the loss's and how much the settings'.
        name = "the reference recipe with the fused loss"
        arms.insert(0, (name, name, replace(reference_config(evals), fused_loss=True)))
    out: dict[str, Any] = {}
    for name, label, config in arms:
        say(f"  lever: race arm, {label}")
        arm, model = race_arm(name, config, options.base_model, data.race_train, data.race_validation)
        del model
        out[name] = {**arm, **(compare(reference, arm) if reference else {})}
    return out


def _depth(base_model: str | None) -> int:
    from transformers import AutoConfig

    from .. import models
    from ..train import layer_count

    return max(1, layer_count(AutoConfig.from_pretrained(models.resolve(base_model))))
