"""The sections of a run, each filling its part of the report from the measuring modules; `run()` calls them in
order. A section fills its dict as it goes, so that what it measured before a failure stays in the report."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

from ..errors import HuggingTweetsError
from .child import in_child
from .data import Data, evenly, padding
from .figures import utilisation
from .options import BenchOptions, Say
from .race import compare, default_config, race_arm, reference_config


class Sections:
    """Runs each section, keeping a failure in its own section instead of losing the whole run."""

    def __init__(self, report: dict[str, Any], say: Say) -> None:
        self.report, self.say, self.started = report, say, time.perf_counter()

    @contextmanager
    def section(self, name: str) -> Iterator[dict[str, Any]]:
        self.say(f"[bench {time.perf_counter() - self.started:5.0f} s] {name}")
        data: dict[str, Any] = self.report.setdefault(name, {})
        try:
            yield data
        except HuggingTweetsError:
            raise
        except Exception as e:
            data["error"] = f"{type(e).__name__}: {e}"
            self.say(traceback.format_exc())


def data_summary(data: Data) -> dict[str, Any]:
    return {
        "source": data.source, "posts": data.posts, "train_posts": len(data.train), "validation_posts": len(data.validation),
        "race_train_posts": len(data.race_train), "race_validation_posts": len(data.race_validation), "quality_posts": len(data.quality),
    }


def throughput(section: dict[str, Any], options: BenchOptions, data: Data, peak: dict[str, Any], cuda: bool, say: Say) -> None:
    arms = [("full", default_config(2, "full")), ("lora", default_config(2))]
    if not cuda and arms[1][1].precision != "fp32":
        # The default trains in bf16 on this CPU: the same steps in float32 are the baseline, in the same run.
        arms += [(f"{name}_fp32", replace(config, precision="fp32")) for name, config in arms]
    if not options.quick:
        # A run of 500+ steps compiles its layers by default (compiling.py); two more warm-up steps take the
        # compilation and its variants, so the timed steps are the steady state such a run trains at.
        arms += [(f"{name}_compiled", replace(config, compile="on")) for name, config in arms[:2]]
    for name, config in arms:
        warmup = options.warmup_steps + 2 * (config.compile == "on")
        say(f"  {name}: {warmup} warm-up + {options.throughput_steps} timed steps in a fresh process")
        got = in_child("train_steps", {"base_model": options.base_model, "texts": evenly(data.train, 256), "config": asdict(config),
                                       "warmup": warmup, "steps": options.throughput_steps}, options.child_timeout_s)
        got["utilisation"] = utilisation(got, peak)
        section[name] = got


def padding_section(section: dict[str, Any], data: Data, tokenizer: Any) -> None:
    section["all_posts"] = padding(data.train, tokenizer)
    section["race_posts"] = padding(data.race_train, tokenizer)


def race_and_bot(section: dict[str, Any], report: dict[str, Any], options: BenchOptions, data: Data, tokenizer: Any, bot_dir: str,
                 say: Say) -> None:
    """The race (the reference only when "race" is asked for), whose default run is the bot that the quality and
    generation sections judge: saved to `bot_dir`, and its perplexity against the base's in report["quality"]."""
    from .. import models
    from ..evaluate import perplexity
    from ..wrappers import is_peft

    base, _ = models.load_base(options.base_model)
    base_ppl = perplexity(base, tokenizer, data.quality)
    del base
    evals = options.evals_per_epoch
    reference: dict[str, Any] = {}
    if "race" in options.sections:
        say(f"  reference recipe on {len(data.race_train)} posts")
        reference, trained = race_arm("reference", reference_config(evals), options.base_model, data.race_train, data.race_validation)
        del trained
    say(f"  default settings on {len(data.race_train)} posts")
    config = default_config(evals)
    default, bot = race_arm("default", config, options.base_model, data.race_train, data.race_validation)
    bot = bot.merge_and_unload() if is_peft(bot) else bot
    bot.eval()
    bot_ppl = perplexity(bot, tokenizer, data.quality)
    say(f"  where its posts end: held-out calibration, then {options.length_posts} posts per try")
    report["end_calibration"] = calibrate(bot, tokenizer, data, config, options.length_posts)
    bot.save_pretrained(bot_dir)  # for the generation process
    tokenizer.save_pretrained(bot_dir)
    del bot
    section.update({
        "reference": reference or None,
        "default": default,
        **(compare(reference, default) if reference else {}),
        "meaningful": not options.quick,
        "note": "batch 8 for both (the original used 1); our framing and packing for both; evaluation and checkpoint writes excluded",
    })
    report["quality"] = {
        "posts": len(data.quality),
        "base_perplexity": base_ppl,
        "bot_perplexity": bot_ppl,
        "ratio": bot_ppl / base_ppl if base_ppl and not math.isnan(base_ppl) else None,
        "bot": f"the race's default run ({len(data.race_train)} posts)",
    }


def calibrate(bot: Any, tokenizer: Any, data: Data, config: Any, n: int) -> dict[str, Any]:
    """The end bias as `Bot.train_corpus` sets it: held out (ending.py), then tuned on the bot's posts (lengths.py)."""
    from ..ending import end_bias
    from ..lengths import tune

    held_out = end_bias(bot, tokenizer, data.race_validation, config.block_size)
    found = tune(bot, tokenizer, data.race_train, held_out, n, bf16=config.precision == "bf16")
    return {"held_out_bias": held_out, "bias": found.bias if found else held_out, **(found.to_dict() if found else {})}


def generation_section(section: dict[str, Any], report: dict[str, Any], options: BenchOptions, data: Data, bot_dir: str, say: Say) -> None:
    """The bot's generation in a child; its memorisation goes to report["quality"] and its voice to report["voice"]."""
    # The batched draw; the full section adds batch 1, streaming and memorisation to it.
    calibration = report.get("end_calibration") or {}
    draw = {"model": bot_dir, "max_new_tokens": 96, "batched_posts": options.batched_posts,
            "batch_size": options.generation_batch, "train_texts": data.race_train, "end_bias": calibration.get("bias", 0.0)}
    # The end-bias lever (issue 22): the same draw with no bias and with the held-out one, beside the tuned one.
    arms = {"as learnt (0)": 0.0, "held-out calibration": calibration["held_out_bias"]} if calibration else {}
    section.update(in_child("generation", {
        **draw, "batch1_posts": options.batch1_posts, "one_call_posts": 0 if options.quick else options.batched_posts,
        "stream_repeats": options.stream_repeats, "memorisation_samples": options.memorisation_samples, "end_bias_arms": arms,
    }, options.child_timeout_s))
    report.setdefault("quality", {})["memorisation"] = section.pop("memorisation", None)
    report["voice"] = section.pop("voice", None)
    if report["voice"] is not None:
        report["voice"]["end_bias"] = draw["end_bias"]
        report["voice"]["arms"] = section.pop("voice_arms", {})
    if section.get("dtype") == "bfloat16":
        say("  the same batched draw with float32 weights, the baseline")
        baseline = in_child("generation", {**draw, "fast_weights": False}, options.child_timeout_s)
        section["batched_fp32"] = baseline.get("batched", baseline)  # a failed child's error stays in view


def memory(section: dict[str, Any], report: dict[str, Any]) -> None:
    throughput = report.get("throughput", {})
    section["full_training_rss_bytes"] = throughput.get("full", {}).get("peak_rss_bytes")
    section["lora_training_rss_bytes"] = throughput.get("lora", {}).get("peak_rss_bytes")
    section["lora_compiled_training_rss_bytes"] = throughput.get("lora_compiled", {}).get("peak_rss_bytes")
    section["generation_rss_bytes"] = report.get("generation", {}).get("peak_rss_bytes")
    section["how"] = "VmHWM of a fresh Python process per measurement (model loading included)"


# What the GPU section's later parts need of the budget to start (estimates for the default model on an H100: not measured).
RACE_NEEDS_S = 120.0
GENERATION_NEEDS_S = 30.0


def gpu(section: dict[str, Any], options: BenchOptions, data: Data, tokenizer: Any, cuda: bool, started: float, say: Say) -> None:
    """The GPU check (issue 21): the card and its precision, its matmul peak in that precision, the 3,200-post target
    run (tokens/s, utilisation, peak GPU memory) in a fresh process, the race with the GPU defaults, and generation
    posts/s. A part that would start after `options.gpu_budget_s` seconds from `started` is skipped, with a note."""
    if not cuda:
        section.update({"train_seconds": None, "note": "n/a: no CUDA device"})
        return
    import tempfile

    from .. import hardware
    from .gpu import describe_gpu, gpu_peak
    from .training import gpu_config

    deadline = started + options.gpu_budget_s
    skipped: list[str] = section.setdefault("skipped", [])

    def fits(part: str, needs: float) -> bool:
        left = deadline - time.perf_counter()
        if left < needs:
            skipped.append(f"{part}: {max(0.0, left):.0f} s of the {options.gpu_budget_s:.0f} s budget left, it needs about {needs:.0f}")
        return left >= needs

    device = section["device"] = describe_gpu()
    section.update({"precision": device["precision"], "budget_s": options.gpu_budget_s, "train_seconds": None,
                    "note": "" if device["h100"] else f"not an H100 ({device['name']}): reported, not judged"})
    section["peak"] = peak = gpu_peak(device["precision"], options.gpu_matmul_size, options.matmul_repeats, hardware.accelerator())
    say(f"  {options.gpu_posts} posts x 4 epochs, {device['precision']}, in a fresh process")
    config = gpu_config(evals_per_epoch=1)
    run = section["target_run"] = in_child("gpu_run", {"base_model": options.base_model, "texts": data.train, "posts": options.gpu_posts,
                                                       "config": asdict(config)}, options.child_timeout_s)
    run["utilisation"] = utilisation(run, {"gflops": peak["gflops"]})  # against the peak in the run's own precision
    section["train_seconds"] = run.get("train_seconds")
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-gpu-bot-") as bot_dir:
        bot = None
        if fits("race", RACE_NEEDS_S):
            bot = _gpu_race(section, options, data, tokenizer, bot_dir, say)
        if fits("generation", GENERATION_NEEDS_S):
            say("  generation, batched")
            got = in_child("generation", {"model": bot or options.base_model, "max_new_tokens": 96, "batched_posts": options.batched_posts,
                                          "batch_size": options.generation_batch, "train_texts": data.race_train}, options.child_timeout_s)
            section["generation"] = {"model": "the race's default run" if bot else "the base model", **got}


def _gpu_race(section: dict[str, Any], options: BenchOptions, data: Data, tokenizer: Any, bot_dir: str, say: Say) -> str:
    """The race with the GPU defaults (a full fine-tune, 4 epochs, batch 8, bf16/fp16) against the reference recipe;
    the default's model saved to `bot_dir` for generation."""
    evals = options.evals_per_epoch
    say(f"  race on the GPU: reference recipe on {len(data.race_train)} posts")
    reference, trained = race_arm("reference", reference_config(evals), options.base_model, data.race_train, data.race_validation)
    del trained
    say(f"  race on the GPU: default settings on {len(data.race_train)} posts")
    default, bot = race_arm("default", default_config(evals, device="cuda"), options.base_model, data.race_train, data.race_validation)
    bot.save_pretrained(bot_dir)
    tokenizer.save_pretrained(bot_dir)
    section["race"] = {"reference": reference, "default": default, **compare(reference, default),
                       "note": "the GPU defaults against the reference recipe (fp32, batch 8); evaluation and checkpoint writes excluded"}
    return bot_dir


def failed_sections(report: dict[str, Any]) -> list[str]:
    """A section fails on an exception, or when one of its measurements (a child process) reports an error."""
    return [
        name for name, value in report.items()
        if isinstance(value, dict) and ("error" in value or any(isinstance(v, dict) and "error" in v for v in value.values()))
    ]
