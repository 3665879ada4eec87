"""The levers' part of the markdown report (`--levers`, `--levers-only`); `report.markdown` appends it."""

from __future__ import annotations

from typing import Any

from .formatting import fmt, gb, get, pct
from .steps import PAIR_VARIANTS


def lever_lines(report: dict[str, Any]) -> list[str]:
    lev = report.get("levers")
    if lev and "training" in lev:
        return (_training(lev) + _compile(lev) + _pairs(lev) + _generation(lev, get(report, "options", "generation_batch"))
                + _race_arms(lev) + _padding(lev))
    if lev and "error" in lev:
        return ["", f"Levers: error: {lev['error']}"]
    return []


def _training(lev: dict[str, Any]) -> list[str]:
    lines = ["", f"Levers ({lev['steps']} timed steps after warm-up, LoRA batch 2 and full fine-tune batch 8 unless named; loss = held-out loss after those steps):", "",
             "| lever | tokens/s | utilisation | trainable params | held-out loss | peak RSS |", "|---|---:|---:|---:|---:|---:|"]
    for name, t in lev["training"].items():
        if "error" in t:
            lines.append(f"| {name} | error: {t['error'][:60]} | | | | |")
            continue
        lines.append(f"| {name} | {fmt(t['tokens_per_s'])} | {pct(t.get('utilisation'))} | {t['trainable_parameters']:,} | "
                     f"{fmt(t.get('eval_loss'), 4)} | {gb(t.get('peak_rss_bytes'))} |")
    return lines


def _compile(lev: dict[str, Any]) -> list[str]:
    c = lev.get("compile", {})
    if "eager_tokens_per_s" not in c:
        return [f"\ntorch.compile: {c.get('error')}"]
    compiled = (f"{fmt(c['compiled_tokens_per_s'])} tokens/s compiled ({fmt(c['speedup'])}x) after {fmt(c['compile_seconds'])} s of compiling"
                if "compiled_tokens_per_s" in c else f"compile failed: {c.get('compile_error')}")
    return [f"\ntorch.compile (LoRA r=16, plain loop): {fmt(c['eager_tokens_per_s'])} tokens/s eager, {compiled}."]


def _pairs(lev: dict[str, Any]) -> list[str]:
    lines = []
    for variant, what in PAIR_VARIANTS:
        pairs = lev.get(f"{variant}_pairs", {})
        if pairs:
            lines.append(f"{what}, median step in alternating pairs on one model: " + ", ".join(
                f"{m} (batch {p['batch_size']}, {p.get('precision', 'fp32')}, {p['pairs']} pairs) {fmt(p['old_step_s'])} → {fmt(p['new_step_s'])} s, {fmt(p['speedup'])}x"
                if "error" not in p else f"{m} error" for m, p in pairs.items()) + ".")
    return lines


def _generation(lev: dict[str, Any], batch: Any) -> list[str]:
    gens = lev.get("generation", {})
    return [f"Generation, batch {batch} × 32 new tokens on the base model: " + ", ".join(
        f"{name} {fmt(get(g, 'batched', 'posts_per_s'))} posts/s" + (f" (perplexity {fmt(g['perplexity'], 4)})" if g.get("perplexity") else "")
        if "error" not in g else f"{name} error" for name, g in gens.items()) + "."]


def _race_arms(lev: dict[str, Any]) -> list[str]:
    arms = lev.get("race_arms") or {}
    if not arms:
        return []
    lines = ["", "Whole race runs: the recipe with the fused loss, and variants of the default (same posts; training seconds):", "",
             "| variant | steps | best perplexity | at s | reaches the reference's best at s | ratio |", "|---|---:|---:|---:|---:|---:|"]
    for name, a in arms.items():
        lines.append(f"| {name} | {a['steps']} | {fmt(a['best_perplexity'], 4)} | {fmt(a['best_at_train_seconds'])} | "
                     f"{fmt(a.get('default_seconds'))} | {fmt(a.get('ratio'))} |")
    return lines


def _padding(lev: dict[str, Any]) -> list[str]:
    pads = lev.get("padding_by_block", {})
    return ["", "Padding share by block size: " + ", ".join(f"{b}: {pct(v)}" for b, v in pads.items()) + "."]
