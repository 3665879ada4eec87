"""The benchmark in quick mode on a tiny model: every section is there with the right types (timings are not checked)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

import huggingtweets.bench as bench
from huggingtweets.bench import SECTIONS, BenchOptions, evenly, flops_per_token, lever_runs, markdown, targets, unpacked
from huggingtweets.bench import data as bench_data
from huggingtweets.bench.formatting import fmt
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.train import TrainConfig
from test_bench_keys import key_paths, quick_report_now


def tiny_options(model: Path, data: Path) -> BenchOptions:
    # Everything the quick preset measures, in its smallest form.
    return BenchOptions.quick_preset(
        data=str(data), base_model=str(model), matmul_size=256, race_posts=24, race_validation_posts=8, quality_posts=8,
        batch1_posts=1, batched_posts=4, generation_batch=4, stream_repeats=1, memorisation_samples=4, child_timeout_s=120,
    )


def test_quick_bench_reports_every_section(home, tiny_llama, posts_file, tmp_path, capsys, monkeypatch):
    # main() is what `huggingtweets bench --quick --json OUT` calls; only the sizes are shrunk for the tiny model.
    monkeypatch.setattr(bench, "options_from_args", lambda args: tiny_options(tiny_llama, posts_file))
    out = tmp_path / "out" / "bench.json"
    args = argparse.Namespace(data=str(posts_file), base_model=str(tiny_llama), quick=True, json_out=str(out))
    code = bench.main(args)
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert code == 0, {k: report[k].get("error") for k in report["failed_sections"]}

    for section in (*SECTIONS, "machine", "data", "targets", "date", "voice"):
        assert section in report, section
    # Every field the report had before bench.py became a package, and what issues 21 and 22 added.
    import torch

    gpu_keys = {path for path in key_paths(report) if path.startswith("gpu.")} if torch.cuda.is_available() else set()
    assert key_paths(report) - gpu_keys == key_paths(quick_report_now()) - gpu_keys
    assert report["quick"] is True
    assert isinstance(report["machine"]["cpu"], str) and report["machine"]["cores"] >= 1
    assert report["peak"]["gflops"] > 0

    for method in ("full", "lora"):
        t = report["throughput"][method]
        assert "error" not in t, t
        assert t["tokens_per_s"] > 0 and isinstance(t["utilisation"], float)
        assert t["trainable_parameters"] <= t["parameters"]
    assert report["throughput"]["lora"]["trainable_parameters"] < report["throughput"]["lora"]["parameters"] / 2
    # Each at the project's own CPU defaults for its method, not one method's batch reused for the other.
    assert (report["throughput"]["full"]["batch_size"], report["throughput"]["lora"]["batch_size"]) == (8, 2)

    race = report["race"]
    assert race["meaningful"] is False
    for arm in ("reference", "default"):
        assert race[arm]["history"], arm
        assert all(r["train_seconds"] <= r["wall_seconds"] for r in race[arm]["history"])
    assert race["reference_seconds"] is not None  # the reference reaches its own best
    for key in ("ratio", "wall_ratio", "default_seconds"):
        assert race[key] is None or isinstance(race[key], float), key

    pad = report["padding"]["all_posts"]
    assert 0 <= pad["padding_share"] < 1 and pad["padding_share"] == pytest.approx(pad["mask_zero_share"])
    loose = pad["without_packing"]  # the packing lever: the same posts' tokens, one post per row
    assert loose["tokens"] == round(pad["positions"] * (1 - pad["padding_share"]))
    per_block = loose["one_post_per_block"]
    assert per_block["positions"] == pad["posts"] * pad["block_size"] and per_block["padding_share"] >= pad["padding_share"]
    for got in loose["padded_per_batch"].values():
        assert loose["tokens"] <= got["positions"] <= per_block["positions"]

    gen = report["generation"]
    assert gen["batch1"]["posts_per_s"] > 0 and gen["batched"]["posts_per_s"] > 0
    assert gen["stream"]["first_text_s"] > 0
    # The bot's post length beside the person's: the median of the race's training posts, which the bot trained on.
    race_train = sorted(len(t) for t in bench.load_data(tiny_options(tiny_llama, posts_file)).race_train)
    assert gen["training_median_characters"] == race_train[len(race_train) // 2]
    assert 0 < gen["batched"]["median_characters"] <= 280 and 0 <= gen["batched"]["ended_share"] <= 1

    # The voice of the same batched draw, beside the post-length fields it grew from.
    voice = report["voice"]
    assert voice["posts"] == voice["person_sample"]["posts"] == gen["batched"]["posts"] and voice["person_posts"] == len(race_train)
    assert voice["median_characters"] == gen["batched"]["median_characters"]
    assert voice["person_median_characters"] == gen["training_median_characters"]
    assert voice["ended_share"] == gen["batched"]["ended_share"]
    assert voice["length_ratio"] == pytest.approx(voice["median_characters"] / voice["person_median_characters"])
    for key in ("distinct_1", "distinct_2", "repeated_4gram_share", "duplicate_share"):
        assert voice[key] is None or 0 <= voice[key] <= 1, key  # None: no post of the tiny model's has two words
        assert 0 <= voice["person_sample"][key] <= 1, key  # the test posts have 4 to 20 words

    # The bot's draws carry the end bias tuned on its own posts, never below the held-out one; the lever's arms are the
    # same draw at no bias and at the held-out bias.
    calibration = report["end_calibration"]
    assert math.isfinite(calibration["held_out_bias"]) and calibration["bias"] >= calibration["held_out_bias"]
    assert calibration["tries"][0]["bias"] == pytest.approx(calibration["held_out_bias"], abs=1e-4)
    assert calibration["person_median"] == race_train[len(race_train) // 2]  # the upper middle (race_train is sorted)
    assert gen["end_bias"] == voice["end_bias"] == calibration["bias"]
    arms = voice["arms"]
    assert [a["end_bias"] for a in arms.values()] == [0.0, calibration["held_out_bias"]]
    assert all(a["posts"] == voice["posts"] and 0 <= a["ended_share"] <= 1 for a in arms.values())

    for key in ("full_training_rss_bytes", "lora_training_rss_bytes", "generation_rss_bytes"):
        assert isinstance(report["memory"][key], int) and report["memory"][key] > 10_000_000, key

    quality = report["quality"]
    assert math.isfinite(quality["base_perplexity"]) and math.isfinite(quality["bot_perplexity"])
    assert isinstance(quality["ratio"], float)
    mem = quality["memorisation"]
    assert 0 <= mem["copy_share_before"] <= 1 and mem["copy_share_after"] == 0
    assert report["gpu"]["train_seconds"] is None or isinstance(report["gpu"]["train_seconds"], float)

    ids = {t["id"] for t in report["targets"]}
    assert {"race_ratio", "full_utilisation", "padding", "generation_posts_per_s", "first_token_s", "lora_rss_gb",
            "perplexity_ratio", "no_copy_before", "no_copy_after", "voice_ended", "voice_length", "gpu_seconds"} <= ids
    for t in report["targets"]:
        assert t["passed"] in (True, False, None)
        assert t["value"] is None or isinstance(t["value"], float), t
        # What a quick run cannot judge says so beside its verdict.
        quick_only = ("race_ratio", "full_utilisation", "perplexity_ratio", "voice_ended", "voice_length")
        assert t["note"].startswith("quick:") == (t["id"] in quick_only), t

    assert "| section | measure | value | target | result |" in printed
    assert "| arm | step |" in printed  # the race table
    assert f"post length, median characters: bot (share ended before the token limit) / training posts | {gen['batched']['median_characters']}" in printed
    assert "| voice | median characters, bot / training posts (ratio) |" in printed
    assert f"| voice | end bias of the draws (held out, then tuned on the bot's posts: lengths.py) | {fmt(calibration['bias'])} |" in printed
    assert "| voice | lever: end bias 0, as learnt (0): length ratio / ended |" in printed
    assert "| voice | bot posts ended before the token limit (4 posts) |" in printed
    assert markdown(report) in printed  # the README can paste what markdown() returns


def test_helpers():
    assert evenly(list(range(10)), 3) == [0, 3, 6] and evenly([1, 2], None) == [1, 2] and evenly([1, 2], 5) == [1, 2]
    assert flops_per_token("full", 100, 100)[0] == 600
    assert flops_per_token("lora", 100, 2)[0] == 404
    assert flops_per_token("layers", 100, 10)[0] is None
    # A report with nothing measured still yields every target, not judged.
    assert all(t["passed"] is None for t in targets({"quick": True}))
    assert "| section |" in markdown({"targets": targets({}), "throughput": {}})
    assert "| section |" not in markdown({"levers": {"error": "x"}})  # --levers-only: no empty main table


def test_unpacked_layouts_count_the_padding_each_would_train_on():
    lengths = [10, 20, 30, 40]
    got = unpacked(lengths, 64, (1, 4), packed_positions=128)
    assert got["tokens"] == 100
    assert got["one_post_per_block"] == {"positions": 256, "padding_share": 1 - 100 / 256, "positions_vs_packed": 2.0}
    assert got["padded_per_batch"]["1"]["positions"] == 100 and got["padded_per_batch"]["1"]["padding_share"] == 0
    assert got["padded_per_batch"]["4"]["positions"] == 160  # one batch: every post padded to the longest, 40


def test_missing_default_data_is_a_clear_error(home, tiny_llama, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_data, "DEFAULT_DATA", tmp_path / "nowhere")
    with pytest.raises(HuggingTweetsError, match="--data"):
        bench.load_data(BenchOptions(base_model=str(tiny_llama)))


def test_generation_lever_with_transformers_sampling(home, tiny_llama):
    # The lever that compares the project's sampler with transformers' do_sample on the same model.
    spec = {"model": str(tiny_llama), "max_new_tokens": 8, "batched_posts": 4, "batch_size": 4, "fast_sampling": False}
    got = bench.generation(spec)
    assert got["fast_sampling"] is False and got["batched"]["posts"] == 4 and got["batched"]["posts_per_s"] > 0


def test_generation_compares_one_generate_call_per_batch(home, tiny_llama, monkeypatch):
    # The full run also times the same draw with ended posts kept in the batch (one generate call, as before rounds).
    from huggingtweets import generate as gen

    calls = []
    original = gen.draw_batch
    monkeypatch.setattr(gen, "draw_batch", lambda *a, **k: calls.append(gen.ROUND) or original(*a, **k))
    spec = {"model": str(tiny_llama), "max_new_tokens": 40, "batched_posts": 4, "batch_size": 4, "one_call_posts": 4}
    got = bench.generation(spec)
    assert got["batched"]["posts"] == got["batched_one_call"]["posts"] == 4
    assert calls[-2:] == [gen.ROUND, 40] and gen.ROUND < 40  # rounds, then one call; the module's setting restored


@pytest.mark.parametrize("method, variant, precision", [
    ("full", "loss", "fp32"), ("lora", "loss", "bf16"), ("lora", "compile", "fp32"), ("lora", "end_weight", "bf16"), ("lora", "framing", "fp32"),
])
def test_step_pair_levers_time_both_ways_in_one_child(home, tiny_llama, method, variant, precision):
    from conftest import make_posts

    spec = {"base_model": str(tiny_llama), "texts": make_posts(40), "method": method, "batch_size": 2, "block_size": 64, "pairs": 2,
            "variant": variant, "precision": precision}
    got = bench.in_child("step_pairs", spec, 300)
    assert "error" not in got, got.get("error")
    assert got["new_step_s"] > 0 and got["old_step_s"] > 0 and got["pairs"] == 2 and got["variant"] == variant
    assert got["speedup"] == pytest.approx(got["old_step_s"] / got["new_step_s"]) and got["precision"] == precision
    printed = markdown({"levers": {"steps": 1, "training": {}, f"{variant}_pairs": {method: got}}})
    assert dict(bench.PAIR_VARIANTS)[variant] in printed and f"{method} (batch 2, {precision}, 2 pairs)" in printed


def test_race_arms_follow_the_model_depth():
    arms = dict(bench.race_arms(4))
    assert arms["LoRA on the top 2 of 4 layers"] == {"lora_layers": 2}
    for overrides in arms.values():  # real TrainConfig fields with valid values
        replace(TrainConfig(), **overrides).validate()


def _arm(name: str, losses: list[float], seconds_per_eval: float) -> dict:
    history = [{"step": i + 1, "eval_loss": loss, "train_seconds": seconds_per_eval * (i + 1), "wall_seconds": 2 * seconds_per_eval * (i + 1)}
               for i, loss in enumerate(losses)]
    best = min(losses)
    return {"name": name, "history": history, "steps": len(losses), "best_eval_loss": best, "best_perplexity": math.exp(best),
            "best_at_train_seconds": seconds_per_eval * (losses.index(best) + 1)}


@pytest.mark.parametrize("raced", [True, False])
def test_levers_race_the_recipe_with_the_fused_loss_only_when_the_reference_ran(monkeypatch, raced):
    # The children and the race arms are stood in for (they are tested above and in the quick run); what is
    # checked here is which configs the levers race and how each is compared with the reference.
    configs: dict[str, object] = {}

    def race_arm(name, config, base_model, train, validation):
        configs[name] = config
        return _arm(name, [3.0, 2.0], 5.0), None

    monkeypatch.setattr(lever_runs, "in_child", lambda name, spec, timeout: {"error": "not run here"})
    monkeypatch.setattr(lever_runs, "race_arm", race_arm)
    monkeypatch.setattr(lever_runs, "_depth", lambda base_model: 4)
    monkeypatch.setattr(lever_runs, "padding", lambda texts, tokenizer, block: {"padding_share": 0.0})
    data = bench.Data("x", 4, ["a"], ["b"], ["a"], ["b"], ["b"])
    reference = _arm("reference", [3.0, 2.5, 2.0], 10.0) if raced else None
    out = bench.levers(bench.BenchOptions(), data, None, {"device": "cpu", "gflops": 100.0}, lambda line: None, reference)

    fused = "the reference recipe with the fused loss"
    assert (fused in out["race_arms"]) is raced
    assert set(out["race_arms"]) - {fused} == {name for name, _ in bench.race_arms(4)}  # and every variant of the default
    if raced:
        recipe = configs[fused]
        reference = bench.reference_config(8)
        assert recipe.fused_loss and not reference.fused_loss  # the race's own reference: transformers' loss
        # ... unweighted and packed as the original trained, whatever today's defaults are
        assert (reference.end_loss_weight, reference.isolate_posts) == (1.0, False) == (recipe.end_loss_weight, recipe.isolate_posts)
        assert (recipe.method, recipe.learning_rate, recipe.epochs) == ("full", bench.REFERENCE_LR, 4.0)
        assert out["race_arms"][fused]["ratio"] == pytest.approx(10.0 / 30.0)  # reaches 2.0 after 10 s vs the reference's 30 s
        assert "the reference recipe with the fused loss" in markdown({"levers": out})


def test_compiled_arms_carry_the_utilisation_target_and_both_lora_peaks_count():
    eager = {"full": {"tokens_per_s": 100.0, "utilisation": 0.6, "flops_formula": "6N"}}
    compiled = {**eager, "full_compiled": {"tokens_per_s": 130.0, "utilisation": 0.78, "flops_formula": "6N"}}
    memory = {"lora_training_rss_bytes": 1.7e9, "lora_compiled_training_rss_bytes": 2.1e9}

    def by_id(report: dict) -> dict:
        return {t["id"]: t for t in targets(report)}

    assert by_id({"throughput": eager})["full_utilisation"]["passed"] is False
    full = by_id({"throughput": compiled})["full_utilisation"]
    assert full["passed"] is True and full["value"] == 0.78 and "compiled" in full["measure"] and "60.0%" in full["note"]
    rss = by_id({"memory": memory})["lora_rss_gb"]
    assert rss["value"] == pytest.approx(2.1) and rss["passed"] is False  # the compiled run's peak breaks the 2 GB
    report = {"throughput": compiled, "memory": memory}
    printed = markdown({**report, "targets": targets(report)})
    assert "| training | full fine-tune, compiled layers | 130 tokens/s, 78.0% of peak (6N) | ≥ 75% of peak | pass" in printed
    assert "| training | full fine-tune | 100 tokens/s, 60.0% of peak (6N) |  |  |" in printed


def test_on_a_gpu_machine_the_cpu_settings_stay_float32_whatever_the_host_cpu(monkeypatch):
    import torch

    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")
    assert bench.default_config(2).precision == "bf16"  # a CPU machine with bf16: its default
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # these arms would train on the GPU, as before in float32
    assert bench.default_config(2).precision == bench.default_config(2, "full").precision == "fp32"


def test_on_a_cpu_with_bf16_the_bench_measures_the_bf16_defaults_against_float32_in_the_same_run(home, tiny_llama, posts_file, monkeypatch):
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")  # the defaults switch to bf16 (emulated, slowly, where the CPU has none)
    options = replace(tiny_options(tiny_llama, posts_file), sections=("peak", "throughput", "race", "generation"))
    report = bench.run(options, say=lambda text: None)
    assert not report["failed_sections"], {k: report[k] for k in report["failed_sections"]}
    assert report["machine"]["cpu_bf16"] is True and report["peak"]["bf16_gflops"] > 0
    throughput = report["throughput"]
    assert {throughput[m]["precision"] for m in ("full", "lora")} == {"bf16"}
    assert {throughput[m]["precision"] for m in ("full_fp32", "lora_fp32")} == {"fp32"}  # the baseline, same steps
    assert key_paths(throughput["full_fp32"]) == key_paths(throughput["full"])  # reported as fully as the default
    for name in ("full", "full_fp32"):  # each against the peak of its own arithmetic
        peak = report["peak"]["bf16_gflops" if throughput[name]["precision"] == "bf16" else "gflops"]
        expected = throughput[name]["flops_per_token"] * throughput[name]["tokens_per_s"] / (peak * 1e9)
        assert throughput[name]["utilisation"] == pytest.approx(expected)
    assert report["race"]["default"]["config"]["precision"] == "bf16" and report["race"]["reference"]["config"]["precision"] == "fp32"
    gen = report["generation"]
    assert gen["dtype"] == "bfloat16" and gen["batched_fp32"]["posts"] == gen["batched"]["posts"]
    assert key_paths(gen["batched_fp32"]) == key_paths(gen["batched"])
    full = {t["id"]: t for t in targets(report)}["full_utilisation"]
    assert f"the float32 baseline: {100 * throughput['full_fp32']['utilisation']:.1f}% of the fp32 peak" in full["note"]
    # The issue's own reference, the fp32 peak, for the judged bf16 run too.
    judged = throughput["full_compiled" if "full_compiled" in throughput else "full"]
    against_fp32 = judged["flops_per_token"] * judged["tokens_per_s"] / (report["peak"]["gflops"] * 1e9)
    assert f"against the bf16 peak ({100 * against_fp32:.1f}% of the fp32 peak)" in full["note"]
    printed = markdown({**report, "targets": targets(report)})
    assert "with bf16 arithmetic" in printed and "| peak | bf16 matmul" in printed
    assert "| training | LoRA r=16 in float32 (baseline) |" in printed and "tokens/s, bf16," in printed
    assert "| generation | the same draw with float32 weights (baseline, own process) |" in printed
