"""The one report writer: the report as markdown (`markdown`), with the verdicts of `targets.py`. It reads the
report only, so it imports no measuring module."""

from __future__ import annotations

from typing import Any

from .formatting import fmt, gb, get, pct
from .report_levers import lever_lines
from .targets import gpu_only


class _Table:
    """The main table's rows, each with its target's verdict where it carries one."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.lines = ["", "| section | measure | value | target | result |", "|---|---|---:|---|---|"]
        self.by_id = {t["id"]: t for t in report.get("targets", [])}

    def row(self, section: str, measure: str, value: str, target: str = "", result: str = "") -> None:
        self.lines.append(f"| {section} | {measure} | {value} | {target} | {result} |")

    def verdict(self, id: str) -> tuple[str, str]:
        t = self.by_id.get(id, {})
        result = {True: "pass", False: "**fail**", None: "—" if t.get("value") is None else ""}[t.get("passed")]
        return t.get("target", ""), result + (f" ({t['note']})" if t.get("note") else "")

    def value(self, id: str) -> Any:
        return self.by_id.get(id, {}).get("value")


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a header, the main table (targets with pass/fail), the race, and the levers."""
    lines = _header(report)
    if gpu_only(report):  # --gpu
        table = _Table(report)
        _gpu_rows(table, report)
        failed = ["", f"Failed sections: {', '.join(report['failed_sections'])} (see the JSON)."] if report.get("failed_sections") else []
        return "\n".join(lines + table.lines + failed) + "\n"
    if not any(name in report for name in ("throughput", "race", "generation")):
        return "\n".join(lines + [""] + lever_lines(report)) + "\n"  # --levers-only
    table = _Table(report)
    for rows in (_peak_rows, _training_rows, _race_rows, _padding_rows, _generation_rows, _memory_rows, _quality_rows, _voice_rows,
                 _gpu_rows):
        rows(table, report)
    lines += table.lines
    if report.get("failed_sections"):
        lines += ["", f"Failed sections: {', '.join(report['failed_sections'])} (see the JSON)."]
    return "\n".join(lines + _race_table(report) + lever_lines(report)) + "\n"


def _header(report: dict[str, Any]) -> list[str]:
    m = report.get("machine", {})
    d = report.get("data", {})
    return [
        f"### huggingtweets bench, {report.get('date', '')}{' (quick)' if report.get('quick') else ''}",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cpu_capability')}, "
        f"{'with' if m.get('cpu_bf16') else 'without'} bf16 arithmetic), torch {m.get('torch')} ({m.get('torch_threads')} threads), "
        f"GPU: {m.get('gpu') or 'none'}. Base model: {report.get('base_model')}.",
        f"Data: {d.get('source')}, {d.get('posts')} posts after cleaning (replies kept): {d.get('train_posts')} training, "
        f"{d.get('validation_posts')} newest held out. Race and bot: {d.get('race_train_posts')} training posts spread evenly over time, "
        f"evaluated on {d.get('race_validation_posts')} held-out posts; quality on {d.get('quality_posts')} held-out posts.",
    ]


def _peak_rows(table: _Table, report: dict[str, Any]) -> None:
    peak = report.get("peak", {})
    table.row("peak", f"fp32 matmul {peak.get('size')}² (best of {peak.get('repeats')})", f"{fmt(peak.get('gflops'))} GFLOP/s", "reference")
    if peak.get("bf16_gflops"):
        table.row("peak", f"bf16 matmul {peak.get('size')}² (best of {peak.get('repeats')})", f"{fmt(peak.get('bf16_gflops'))} GFLOP/s",
                  "reference for bf16 runs")


TRAINING_ARMS = (("full", "full fine-tune"), ("lora", "LoRA r=16 all-linear"), ("full_compiled", "full fine-tune, compiled layers"),
                 ("lora_compiled", "LoRA r=16, compiled layers"), ("full_fp32", "full fine-tune in float32 (baseline)"),
                 ("lora_fp32", "LoRA r=16 in float32 (baseline)"))


def _training_rows(table: _Table, report: dict[str, Any]) -> None:
    throughput = report.get("throughput", {})
    counted = "full_compiled" if "full_compiled" in throughput else "full"  # the arm the target judges
    for name, label in TRAINING_ARMS:
        if name not in throughput:
            continue
        t = throughput[name] or {}
        if "error" in t:
            table.row("training", label, f"error: {t['error'][:80]}")
            continue
        precision = f", {t['precision']}" if t.get("precision") and t["precision"] != "fp32" else ""
        value = f"{fmt(t.get('tokens_per_s'))} tokens/s{precision}, {pct(t.get('utilisation'))} of peak ({t.get('flops_formula')})"
        table.row("training", label, value, *(table.verdict("full_utilisation") if name == counted else ("", "")))


def _race_rows(table: _Table, report: dict[str, Any]) -> None:
    race = report.get("race", {})
    if race.get("reference"):
        ref, default = race["reference"], race["default"]
        table.row("race", f"reference best perplexity ({ref['steps']} steps)", f"{fmt(ref['best_perplexity'], 4)} at {fmt(ref['best_at_train_seconds'])} s")
        reached = f"{fmt(race.get('default_seconds'))} s" if race.get("default_seconds") is not None else "never"
        table.row("race", "default reaches it", f"{reached} (best {fmt(default['best_perplexity'], 4)})")
        table.row("race", "time ratio default / reference", fmt(race.get("ratio")), *table.verdict("race_ratio"))
    elif "error" in race:
        table.row("race", "error", race["error"][:100])


def _padding_rows(table: _Table, report: dict[str, Any]) -> None:
    pad = get(report, "padding", "all_posts") or {}
    table.row("padding", f"padding share of trained positions (block {pad.get('block_size')})", pct(pad.get("padding_share")),
              *table.verdict("padding"))
    loose = pad.get("without_packing") or {}
    if loose:
        block = loose["one_post_per_block"]
        table.row("padding", "without packing: one post per block",
                  f"{pct(block['padding_share'])} ({fmt(block['positions_vs_packed'])}x the positions)")
        for b, got in loose["padded_per_batch"].items():
            table.row("padding", f"without packing: padded to the longest post of a batch of {b}",
                      f"{pct(got['padding_share'])} ({fmt(got['positions_vs_packed'])}x the positions)")


def _generation_rows(table: _Table, report: dict[str, Any]) -> None:
    gen = report.get("generation", {})
    table.row("generation", "posts/s at batch 1", fmt(get(gen, "batch1", "posts_per_s")))
    weights = f", {gen['dtype']} weights" if gen.get("dtype") and gen["dtype"] != "float32" else ""
    table.row("generation", f"posts/s at batch {get(gen, 'batched', 'batch_size')}{weights}", fmt(get(gen, "batched", "posts_per_s")),
              *table.verdict("generation_posts_per_s"))
    if gen.get("batched_fp32"):
        table.row("generation", "the same draw with float32 weights (baseline, own process)", fmt(get(gen, "batched_fp32", "posts_per_s")))
    if gen.get("batched_one_call"):
        table.row("generation", "the same, ended posts kept in the batch (one generate call)",
                  fmt(get(gen, "batched_one_call", "posts_per_s")))
    table.row("generation", "first streamed text, s (median)", fmt(get(gen, "stream", "first_text_s")), *table.verdict("first_token_s"))


def _memory_rows(table: _Table, report: dict[str, Any]) -> None:
    mem = report.get("memory", {})
    table.row("memory", "full fine-tune peak RSS", gb(mem.get("full_training_rss_bytes")))
    table.row("memory", "LoRA training peak RSS", gb(mem.get("lora_training_rss_bytes")), *table.verdict("lora_rss_gb"))
    if mem.get("lora_compiled_training_rss_bytes"):
        table.row("memory", "LoRA training peak RSS, compiled layers", gb(mem.get("lora_compiled_training_rss_bytes")))
    table.row("memory", "generation peak RSS", gb(mem.get("generation_rss_bytes")))


def _quality_rows(table: _Table, report: dict[str, Any]) -> None:
    q = report.get("quality", {})
    gen = report.get("generation", {})
    table.row("quality", "held-out perplexity base → bot", f"{fmt(q.get('base_perplexity'), 4)} → {fmt(q.get('bot_perplexity'), 4)}")
    table.row("quality", "bot / base perplexity", fmt(q.get("ratio")), *table.verdict("perplexity_ratio"))
    mem_q = q.get("memorisation") or {}
    table.row("quality", f"no 8-word copy, before filter ({mem_q.get('samples_before')} posts)", pct(table.value("no_copy_before")),
              *table.verdict("no_copy_before"))
    table.row("quality", f"no 8-word copy, after filter ({mem_q.get('samples_after')} posts)", pct(table.value("no_copy_after")),
              *table.verdict("no_copy_after"))
    if get(gen, "batched", "median_characters") is not None:
        table.row("quality", "post length, median characters: bot (share ended before the token limit) / training posts",
                  f"{fmt(get(gen, 'batched', 'median_characters'))} ({pct(get(gen, 'batched', 'ended_share'))}) / "
                  f"{fmt(gen.get('training_median_characters'))}")


def _voice_rows(table: _Table, report: dict[str, Any]) -> None:
    v = report.get("voice")
    if not v:
        return
    person = v.get("person_sample") or {}
    if v.get("end_bias") is not None:
        table.row("voice", "end bias of the draws (held out, then tuned on the bot's posts: lengths.py)", fmt(v["end_bias"]))
    table.row("voice", "median characters, bot / training posts (ratio)",
              f"{fmt(v.get('median_characters'))} / {fmt(v.get('person_median_characters'))} ({fmt(v.get('length_ratio'))})",
              *table.verdict("voice_length"))
    table.row("voice", f"bot posts ended before the token limit ({v.get('posts')} posts)", pct(v.get("ended_share")),
              *table.verdict("voice_ended"))
    table.row("voice", f"distinct-1 / distinct-2 over the batch (the person's, {person.get('posts')} of their posts)",
              f"{fmt(v.get('distinct_1'))} / {fmt(v.get('distinct_2'))} "
              f"({fmt(person.get('distinct_1'))} / {fmt(person.get('distinct_2'))})")
    table.row("voice", "posts repeating a word 4-gram / exact duplicates in the batch (the person's)",
              f"{pct(v.get('repeated_4gram_share'))} / {pct(v.get('duplicate_share'))} "
              f"({pct(person.get('repeated_4gram_share'))} / {pct(person.get('duplicate_share'))})")
    for name, arm in (v.get("arms") or {}).items():  # the end-bias lever: the same draw at other biases
        table.row("voice", f"lever: end bias {fmt(arm.get('end_bias'))}, {name}: length ratio / ended",
                  f"{fmt(arm.get('length_ratio'))} / {pct(arm.get('ended_share'))}")


def _gpu_rows(table: _Table, report: dict[str, Any]) -> None:
    g = report.get("gpu", {})
    dev = g.get("device") or {}
    if dev:
        capability = ".".join(str(c) for c in dev.get("capability") or [])
        table.row("gpu", "device", f"{dev.get('name')} (capability {capability}, {gb(dev.get('memory_bytes'))}), torch {dev.get('torch')}, "
                                   f"CUDA {dev.get('cuda')}; the defaults train in {dev.get('precision')}")
    peak = g.get("peak") or {}
    if peak:
        table.row("gpu", f"{peak.get('precision')} matmul peak ({peak.get('size')}²)", f"{fmt(peak['gflops'] / 1000)} TFLOP/s")
    seconds = g.get("train_seconds")
    posts = get(report, "options", "gpu_posts")
    table.row("gpu", f"{posts:,} posts × 4 epochs" if isinstance(posts, int) else "posts × 4 epochs",
              f"{fmt(seconds)} s" if seconds is not None else "n/a", *table.verdict("gpu_seconds"))
    run = g.get("target_run") or {}
    if "error" in run:
        table.row("gpu", "target run", f"error: {run['error'][:80]}")
    elif run:
        table.row("gpu", f"training tokens/s ({run.get('method')}, batch {run.get('batch_size')}, {run.get('precision')}, steady)",
                  f"{fmt(run.get('tokens_per_s'))} tokens/s, {pct(run.get('utilisation'))} of the {peak.get('precision')} peak "
                  f"({run.get('flops_formula')})")
        table.row("gpu", "peak GPU memory, allocated / reserved",
                  f"{gb(run.get('max_memory_allocated_bytes'))} / {gb(run.get('max_memory_reserved_bytes'))}")
    race = g.get("race") or {}
    if race:
        reached = f"{fmt(race.get('default_seconds'))} s" if race.get("default_seconds") is not None else "never"
        table.row("gpu", "race: reference best perplexity → the GPU defaults reach it",
                  f"{fmt(race.get('target_perplexity'), 4)} at {fmt(race.get('reference_seconds'))} s → {reached}")
    if race or dev:
        table.row("gpu", "race: time ratio default / reference", fmt(race.get("ratio")), *table.verdict("gpu_race_ratio"))
    gen = g.get("generation") or {}
    if "error" in gen:
        table.row("gpu", "generation", f"error: {gen['error'][:80]}")
    elif gen:
        table.row("gpu", f"generation posts/s at batch {get(gen, 'batched', 'batch_size')} ({gen.get('model')}, {gen.get('dtype')} weights)",
                  fmt(get(gen, "batched", "posts_per_s")))
    for part in g.get("skipped") or []:
        table.row("gpu", "skipped (time budget)", part)


def _race_table(report: dict[str, Any]) -> list[str]:
    race = report.get("race", {})
    if not race.get("reference"):
        return []
    lines = ["", "Race (held-out perplexity at each evaluation; training seconds exclude evaluation and checkpoint writes):", "",
             "| arm | step | epoch | train s | wall s | perplexity |", "|---|---:|---:|---:|---:|---:|"]
    for arm in ("reference", "default"):
        for r in race[arm]["history"]:
            lines.append(f"| {arm} | {r['step']} | {r['epoch']:g} | {r['train_seconds']:g} | {r['wall_seconds']:g} | {fmt(r['perplexity'], 4)} |")
    return lines
