"""Benchmarks: speed, memory and quality on one set of posts, each figure next to its target (GitHub issue 5).

    huggingtweets bench --quick --json test-artifacts/bench-quick.json          # about 2 minutes on 2 cores
    python benchmarks/bench.py --json test-artifacts/bench.json                 # about 15 minutes on 2 cores
    python benchmarks/bench.py --levers-only --json test-artifacts/levers.json  # the levers, about 30 minutes
    bash benchmarks/gpu_check.sh                                                 # the GPU check alone (issue 21), < 8 minutes
    huggingtweets bench --voice --data posts.jsonl                              # issue 22's targets, whole archive (voice_check.py)

    from huggingtweets.bench import BenchOptions, markdown, run
    report = run(BenchOptions.quick_preset(base_model="path/to/model"))
    print(markdown(report))

What one run measures, all on the same posts (default: the real archive in ../shared, replies kept):

1. `peak`: the machine's fp32 matmul rate (best of several `torch.matmul`), the reference for utilisation.
2. `throughput`: training tokens/s of a full fine-tune and of LoRA with the project's defaults (a fixed number of
   steps after warm-up), and utilisation = FLOPs per token x tokens/s / peak, where FLOPs per token is 6N for a
   full fine-tune and 4N + 2N_trainable for LoRA (forward 2N, gradients through the activations 2N, weight
   gradients only for the adapters). N counts every parameter once (tied embeddings once); every position of a
   batch counts as a token, padding included, since the model computes on it. The full run also times both with
   compiled layers (`compile="on"`, what runs of 500+ steps use; compilation falls in two extra warm-up steps).
3. `race`: the original HuggingTweets recipe (full fine-tune, lr 1.372e-4, cosine, no warm-up, 4 epochs, at our
   batch of 8 instead of its 1) against `TrainConfig().resolved("cpu")` on a deterministic subset of the posts:
   training seconds (evaluation and checkpoint writing excluded) until each reaches the reference's best held-out
   perplexity, and their ratio.
4. `padding`: share of the trained positions that are padding, and (the packing lever) the padding and positions per
   epoch with one post per row instead.
5. `generation`: posts/s at batch 1 and batched, and time to the first streamed text.
6. `memory`: peak RSS (VmHWM) of full and LoRA training and of generation, each in a fresh Python process.
7. `quality`: held-out perplexity of the base and of the bot (the race's default run) on the newest 10% of posts,
   and the share of 50 generated posts that repeat an 8-word run of the training posts, before and after the filter.
8. `voice` (issue 22): the batched generation's posts against the bot's training posts: median length and its
   ratio, the share that ended before the token limit, distinct-1/2, and repeated 4-grams and duplicates.
9. `gpu` (issue 21), on a CUDA device only: the card (name, capability, memory, torch/CUDA versions) and the
   precision the defaults pick there (bf16 from capability 8, fp16 before); its matmul peak in that precision;
   3,200 posts x 4 epochs with the GPU defaults in a fresh process (training seconds, judged against 30 s only on
   an H100; tokens/s, utilisation against that peak, peak GPU memory allocated and reserved); the race with the GPU
   defaults (`default_config(evals, device="cuda")`); generation posts/s of its bot. Parts that would start past
   `gpu_budget_s` are skipped, with a note. `--gpu` (`BenchOptions.gpu_preset`, `benchmarks/gpu_check.sh`) runs
   this section alone, its budget counted from the start; without a CUDA device it prints one line (`NO_GPU`),
   writes nothing and exits 0.

`--levers` adds `levers`: LoRA rank, target modules and learning rate, top vs bottom layers, block size, batch,
threads, gradient checkpointing, torch.compile, the KV cache, int8 weights and batch size in generation, and whole
race runs of a few variants of the default (`BenchOptions.race_variants`).

Measurements that need their own peak memory (training throughput, generation, each lever) run in a fresh
Python process (`child.in_child`); the race runs in this process, timed through `train_model`'s listener.

Layout, lower modules first (a module imports only those above it): `options` and `figures` (pure arithmetic);
`peak`, `data`, `training`, `gpu`, `steps`, `quality`, `generating`, `race` (the measures); `child` (fresh processes);
`lever_runs` and `sections` (what a run does, section by section); `formatting`, `targets`, `report_levers` and `report`
(the one report writer, reading the report only); this module's `run()` and `main()` on top. Beside them,
`second_archive` builds a second real archive and `voice_check` judges issue 22's targets on whole archives.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from .child import child_main, in_child, peak_rss_bytes
from .data import DEFAULT_DATA, Data, evenly, load_data, padding, unpacked
from .formatting import publish
from .figures import flops_per_token, median, utilisation
from .generating import generation
from .gpu import describe_gpu, gpu_peak
from .lever_runs import levers, training_levers
from .options import GB, GPU_SECTIONS, NO_GPU, REFERENCE_LR, SECTIONS, BenchOptions, Say, options_from_args
from .peak import machine, matmul_peak
from .quality import distinct, duplicate_share, repeated_ngram_share, voice
from .race import compare, default_config, race_arm, race_arms, reference_config
from .report import markdown
from .targets import targets
from .sections import Sections, data_summary, failed_sections, generation_section, gpu, memory, padding_section, race_and_bot, throughput
from .steps import PAIR_VARIANTS, compile_speedup, step_pairs
from .training import Clock, count_parameters, gpu_config, gpu_run, prepare, train_steps

__all__ = [
    "DEFAULT_DATA", "GB", "GPU_SECTIONS", "NO_GPU", "PAIR_VARIANTS", "REFERENCE_LR", "SECTIONS", "BenchOptions", "Clock", "Data", "child_main", "compare", "compile_speedup",
    "count_parameters", "default_config", "describe_gpu", "distinct", "duplicate_share", "evenly", "flops_per_token", "generation", "gpu_config", "gpu_peak", "gpu_run",
    "in_child", "levers", "load_data", "machine", "main", "markdown", "matmul_peak", "median", "options_from_args", "padding",
    "peak_rss_bytes", "prepare", "race_arm", "race_arms", "reference_config", "repeated_ngram_share", "run", "step_pairs",
    "targets", "train_steps", "training_levers", "unpacked", "utilisation", "voice",
]


def run(options: BenchOptions, say: Say | None = None) -> dict[str, Any]:
    """Measure everything in `options.sections`; return the report (see `markdown`)."""
    import torch

    from .. import models

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.perf_counter()
    report = _start(options)
    runner = Sections(report, say)
    sections = set(options.sections)
    data = load_data(options)
    report["data"] = data_summary(data)
    tokenizer = models.load_tokenizer(options.base_model)
    cuda = torch.cuda.is_available()

    if sections - {"gpu", "padding"}:  # the fp32 peak of the other sections (the GPU section measures its own)
        with runner.section("peak") as section:
            section.update(matmul_peak(options.matmul_size, options.matmul_repeats))
    if "throughput" in sections or "memory" in sections:
        with runner.section("throughput") as section:
            throughput(section, options, data, report["peak"], cuda, say)
    if "padding" in sections:
        with runner.section("padding") as section:
            padding_section(section, data, tokenizer)
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-bot-") as bot_dir:
        _with_the_bot(runner, report, options, data, tokenizer, bot_dir, say)
    if "memory" in sections:
        with runner.section("memory") as section:
            memory(section, report)
    if "gpu" in sections:
        with runner.section("gpu") as section:
            # --gpu: the budget counts from the start, model conversion included; in a whole run, from the section's.
            gpu(section, options, data, tokenizer, cuda, started if options.gpu_mode else time.perf_counter(), say)

    report["targets"] = targets(report)
    report["failed_sections"] = failed_sections(report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _start(options: BenchOptions) -> dict[str, Any]:
    from .. import models

    models.check_available(options.base_model)
    if models.is_default(options.base_model):
        models.default_model_dir()  # convert once here, not inside a timed or measured child
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": options.quick,
        "options": asdict(options),
        "machine": machine(),
        "base_model": models.describe(options.base_model),
    }


def _with_the_bot(runner: Sections, report: dict[str, Any], options: BenchOptions, data: Data, tokenizer: Any, bot_dir: str,
                  say: Say) -> None:
    """The sections that need the race's bot, saved in `bot_dir` while they run (the levers run in its time too)."""
    sections = set(options.sections)
    if sections & {"race", "quality", "generation"}:
        with runner.section("race") as section:
            race_and_bot(section, report, options, data, tokenizer, bot_dir, say)
    if "generation" in sections and "error" not in report.get("race", {}):
        with runner.section("generation") as section:
            generation_section(section, report, options, data, bot_dir, say)
    if "levers" in sections:
        with runner.section("levers") as section:
            section.update(levers(options, data, tokenizer, report["peak"], say, report.get("race", {}).get("reference")))


def _quiet() -> None:
    # As the CLI does: library chatter and progress bars would bury the bench's own progress lines.
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(args: argparse.Namespace) -> int:
    """`huggingtweets bench` / `benchmarks/bench.py`: run, print the markdown, write the JSON. 1 if a section failed."""
    _quiet()
    if getattr(args, "voice", False):
        from .voice_check import main as voice_main

        return voice_main(args)
    options = options_from_args(args)
    if options.gpu_mode:
        import torch

        if not torch.cuda.is_available():
            print(NO_GPU, flush=True)  # the one line; exit 0 and no JSON: no file means no GPU figures
            return 0
    report = run(options)
    publish(markdown(report), report, getattr(args, "json_out", None))
    return 1 if report["failed_sections"] else 0
