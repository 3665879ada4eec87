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
    default, bot = race_arm("default", default_config(evals), options.base_model, data.race_train, data.race_validation)
    bot = bot.merge_and_unload() if is_peft(bot) else bot
    bot.eval()
    bot_ppl = perplexity(bot, tokenizer, data.quality)
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


def generation_section(section: dict[str, Any], report: dict[str, Any], options: BenchOptions, data: Data, bot_dir: str, say: Say) -> None:
    """The bot's generation in a child; its memorisation goes to report["quality"] and its voice to report["voice"]."""
    # The batched draw; the full section adds batch 1, streaming and memorisation to it.
    draw = {"model": bot_dir, "max_new_tokens": 96, "batched_posts": options.batched_posts,
            "batch_size": options.generation_batch, "train_texts": data.race_train}
    section.update(in_child("generation", {
        **draw, "batch1_posts": options.batch1_posts, "one_call_posts": 0 if options.quick else options.batched_posts,
        "stream_repeats": options.stream_repeats, "memorisation_samples": options.memorisation_samples,
    }, options.child_timeout_s))
    report.setdefault("quality", {})["memorisation"] = section.pop("memorisation", None)
    report["voice"] = section.pop("voice", None)
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


def gpu(section: dict[str, Any], options: BenchOptions, data: Data, cuda: bool) -> None:
    if cuda:
        section.update(in_child("gpu_run", {"base_model": options.base_model, "texts": data.train, "posts": options.gpu_posts},
                                options.child_timeout_s))
    else:
        section.update({"train_seconds": None, "note": "n/a: no CUDA device"})


def failed_sections(report: dict[str, Any]) -> list[str]:
    """A section fails on an exception, or when one of its measurements (a child process) reports an error."""
    return [
        name for name, value in report.items()
        if isinstance(value, dict) and ("error" in value or any(isinstance(v, dict) and "error" in v for v in value.values()))
    ]
