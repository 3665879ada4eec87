"""Benchmarks: speed, memory and quality on one set of posts, each figure next to its target (GitHub issue 5).

    huggingtweets bench --quick --json test-artifacts/bench-quick.json          # about 3 minutes on 2 cores
    python benchmarks/bench.py --json test-artifacts/bench.json                 # about 19 minutes
    python benchmarks/bench.py --levers-only --json test-artifacts/levers.json  # the levers, about 30 minutes

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
8. `gpu`: 3,200 posts x 4 epochs on a CUDA device, when there is one.

`--levers` adds `levers`: LoRA rank, target modules and learning rate, top vs bottom layers, block size, batch,
threads, gradient checkpointing, torch.compile, the KV cache, int8 weights and batch size in generation, and whole
race runs of a few variants of the default (`BenchOptions.race_variants`).

Measurements that need their own peak memory (training throughput, generation, each lever) run in a fresh
Python process (`in_child`); the race runs in this process, timed through `train_model`'s listener.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from .errors import HuggingTweetsError

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "x-archive-milahu104"
SECTIONS = ("peak", "throughput", "race", "padding", "generation", "memory", "quality", "gpu")
REFERENCE_LR = 1.372e-4  # the original HuggingTweets learning rate
GB = 1e9

T = TypeVar("T")
Say = Callable[[str], None]


@dataclass
class BenchOptions:
    """What to measure and how much. The defaults are the full run; `quick_preset()` is the short one."""

    data: str | None = None  # any source string; None: the real archive in ../shared (replies kept)
    base_model: str | None = None  # None: the embedded default
    quick: bool = False
    sections: tuple[str, ...] = SECTIONS  # add "levers" for the levers
    matmul_size: int = 2048
    matmul_repeats: int = 5
    warmup_steps: int = 1
    throughput_steps: int = 3
    race_posts: int = 192  # training posts of the race, spread evenly over time (the same for both arms)
    race_validation_posts: int = 48  # held-out posts evaluated during the race (spread over the newest 10%)
    quality_posts: int | None = None  # held-out posts for the quality section; None: all of the newest 10%
    evals_per_epoch: int = 8  # race evaluations: when the default first beats the reference is known to ~9 training s (4: ~17 s)
    batch1_posts: int = 4
    batched_posts: int = 64
    generation_batch: int = 64
    stream_repeats: int = 3
    memorisation_samples: int = 50
    lever_steps: int = 6
    gpu_posts: int = 3200
    # Variants of the default that run the whole race with --levers (name, TrainConfig overrides); None: race_arms().
    race_variants: tuple[tuple[str, dict[str, Any]], ...] | None = None
    child_timeout_s: float = 1200.0

    @classmethod
    def quick_preset(cls, **overrides: Any) -> BenchOptions:
        """Minutes instead of a quarter of an hour: tiny race, one measured step, a few samples."""
        settings: dict[str, Any] = dict(
            quick=True, matmul_repeats=3, throughput_steps=1, race_posts=8, race_validation_posts=8, quality_posts=8,
            evals_per_epoch=1, batch1_posts=1, batched_posts=16, generation_batch=16, stream_repeats=1, memorisation_samples=16,
        )
        return cls(**{**settings, **overrides})


# ---- machine and peak --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from .hardware import cpu_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the vector instructions torch's kernels use
        "cpu_bf16": cpu_bf16(),  # native bf16 arithmetic: the CPU defaults train and generate in bf16
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def matmul_peak(size: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best-of-`repeats` fp32 matmul rate on the device training uses: the ceiling for utilisation. On a CPU with bf16
    arithmetic also the bf16 rate (`bf16_gflops`): the ceiling for runs in bf16, the CPU default there."""
    import torch

    from .hardware import cpu_bf16

    device = "cuda" if torch.cuda.is_available() else "cpu"
    best = _best_matmul(size, repeats, device, torch.float32)
    out = {"device": device, "size": size, "repeats": repeats, "best_seconds": best, "gflops": 2 * size**3 / best / 1e9}
    if device == "cpu" and cpu_bf16():
        out["bf16_gflops"] = 2 * size**3 / _best_matmul(size, repeats, device, torch.bfloat16) / 1e9
    return out


def _best_matmul(size: int, repeats: int, device: str, dtype: Any) -> float:
    import torch

    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.matmul(a, b)  # warm-up: thread pool, caches, lazy init
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


# ---- data --------------------------------------------------------------------------------------------------


@dataclass
class Data:
    source: str
    posts: int
    train: list[str]  # every training post (oldest 90%)
    validation: list[str]  # the newest 10%
    race_train: list[str]
    race_validation: list[str]
    quality: list[str]


def evenly(items: list[T], n: int | None) -> list[T]:
    """`n` items spread evenly over `items` (all of them when n is None or larger): deterministic, whole time range."""
    if n is None or n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def load_data(options: BenchOptions) -> Data:
    from .clean import CleanOptions
    from .corpus import build_corpus

    source = options.data
    if source is None:
        if not DEFAULT_DATA.is_dir():
            raise HuggingTweetsError(f"the benchmark archive {DEFAULT_DATA} is missing: pass --data SOURCE (any source huggingtweets reads)")
        source = str(DEFAULT_DATA)
    corpus = build_corpus([source], CleanOptions(keep_replies=True), min_characters=0)
    train, validation = corpus.texts()
    if not train or not validation:
        raise HuggingTweetsError(f"{source}: too few posts to benchmark ({len(corpus.posts)} after cleaning; at least 10 are needed)")
    race_validation = evenly(validation, options.race_validation_posts)
    return Data(
        source=source if options.data is not None else f"../shared/data/{DEFAULT_DATA.name}",
        posts=len(corpus.posts),
        train=train,
        validation=validation,
        race_train=evenly(train, options.race_posts),
        race_validation=race_validation,
        quality=evenly(validation, options.quality_posts),
    )


def padding(texts: list[str], tokenizer: Any, block_size: int = 128, batches: tuple[int, ...] = (2, 8)) -> dict[str, Any]:
    """Share of the positions in the training blocks that are padding, two ways (they must agree), and what the
    same posts would cost without packing (`without_packing`)."""
    from .dataset import IGNORE, build_blocks, frame

    blocks = build_blocks(texts, tokenizer, block_size)
    positions = blocks.attention_mask.numel()
    lengths = [min(len(frame(tokenizer, t)), block_size) for t in texts]  # build_blocks cuts posts at a block too
    return {
        "block_size": block_size,
        "posts": len(texts),
        "blocks": len(blocks),
        "positions": positions,
        "padding_share": blocks.padding_share,  # Blocks.padding_share
        "mask_zero_share": float((blocks.attention_mask == 0).sum()) / positions if positions else 0.0,
        # Start markers are context, not targets, so a little under 1 - padding is trained on.
        "labelled_share": float((blocks.labels != IGNORE).sum()) / positions if positions else 0.0,
        "without_packing": unpacked(lengths, block_size, batches, positions),
    }


def unpacked(lengths: list[int], block_size: int, batches: tuple[int, ...], packed_positions: int) -> dict[str, Any]:
    """The packing lever: padding share and positions per epoch (compute: every position costs a forward and a
    backward) with one post per row instead of whole posts packed into blocks.

    Two common ways: every post padded to the block size, and posts padded to the longest post of their batch
    (transformers' `DataCollatorWithPadding`), in a shuffled order (seed 0) as `Trainer` draws them.
    """
    import random

    tokens = sum(lengths)

    def layout(positions: int) -> dict[str, float]:
        return {"positions": positions, "padding_share": 1 - tokens / positions if positions else 0.0,
                "positions_vs_packed": positions / packed_positions if packed_positions else math.nan}

    shuffled = random.Random(0).sample(lengths, len(lengths))
    per_batch = {
        str(b): layout(sum(max(chunk) * len(chunk) for chunk in (shuffled[i : i + b] for i in range(0, len(shuffled), b))))
        for b in batches
    }
    return {"tokens": tokens, "one_post_per_block": layout(len(lengths) * block_size), "padded_per_batch": per_batch}


# ---- fresh processes ---------------------------------------------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident memory. VmHWM belongs to the current address space, so it starts afresh
    at exec; ru_maxrss can carry a parent's peak over a fork on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def in_child(function: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run `function(spec)` of this module in a fresh Python process, so its peak memory is its own.

    Returns the function's result with `peak_rss_bytes` and `seconds` added, or `{"error": ...}`.
    """
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        code = "import sys; from huggingtweets.bench import child_main; child_main(*sys.argv[1:])"
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore"}
        start = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, function, str(spec_path), str(out_path)],
                capture_output=True, text=True, timeout=timeout, env=env,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"did not finish in {timeout:.0f} s"}
        if done.returncode != 0 or not out_path.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            return {"error": f"exit status {done.returncode}: " + " | ".join(tail)}
        result: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
        result["seconds"] = round(time.perf_counter() - start, 1)
        return result


def child_main(function: str, spec_path: str, out_path: str) -> None:
    """Entry point of a child process (see `in_child`)."""
    import warnings

    warnings.filterwarnings("ignore")
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    workers = {"train_steps": train_steps, "generation": generation, "compile_speedup": compile_speedup, "step_pairs": step_pairs, "gpu_run": gpu_run}
    result = workers[function](spec)
    result["peak_rss_bytes"] = peak_rss_bytes()
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


# ---- training throughput -----------------------------------------------------------------------------------


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


def flops_per_token(kind: str, total: int, trainable: int) -> tuple[float | None, str]:
    """Training FLOPs per token and the formula used (None where neither formula fits, e.g. frozen layers)."""
    if kind == "full":
        return 6.0 * total, "6N"
    if kind == "lora":
        # Forward 2N and gradients w.r.t. activations 2N run through the whole model; weight gradients only for adapters.
        return 4.0 * total + 2.0 * trainable, "4N + 2N_trainable"
    return None, "n/a (frozen layers: backward stops part-way)"


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
    from .train import layer_stack

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
    from . import models
    from .dataset import build_blocks
    from .evaluate import perplexity
    from .train import TrainConfig, train_model

    warmup, steps = int(spec["warmup"]), int(spec["steps"])
    config = TrainConfig(**spec["config"])
    # One evaluation point per epoch and no time-based checkpoints: nothing but training inside the timed steps.
    config = replace(config, max_steps=warmup + steps, evals_per_epoch=1, save_minutes=1e9)
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
    seconds = clock.steps[warmup + steps] - begin
    positions = config.batch_size * config.block_size * steps
    real = result.train_stats["tokens"] / max(1, result.train_stats["blocks"]) * config.batch_size * steps
    total, trainable = count_parameters(result.model)
    flops, formula = flops_per_token(kind, total, trainable)
    out: dict[str, Any] = {
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
        "threads": __import__("torch").get_num_threads(),
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
    if spec.get("validation"):
        out["eval_loss"] = math.log(perplexity(result.model, tokenizer, spec["validation"], config.block_size))
    return out


def utilisation(run: dict[str, Any], peak: dict[str, Any]) -> float | None:
    """Share of the matmul peak of the run's own arithmetic (bf16 runs against the bf16 peak)."""
    peak_gflops = peak.get("bf16_gflops") if run.get("precision") == "bf16" and peak.get("device") == "cpu" else peak.get("gflops")
    if "error" in run or not run.get("flops_per_token") or not peak_gflops:
        return None
    return float(run["flops_per_token"] * run["tokens_per_s"] / (peak_gflops * 1e9))


# ---- the race ----------------------------------------------------------------------------------------------


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
    from . import models
    from .train import train_model

    model, tokenizer = models.load_base(base_model)
    clock, saves = Clock(), []
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as work, timed_checkpoints(saves):
        result = train_model(model, tokenizer, train, validation, config, Path(work) / "run", listener=clock, show_progress=False)
    assert clock.start is not None
    pauses = [(clock.steps[e["step"]], e["at"]) for e in clock.evals] + saves

    def training_seconds(at: float) -> float:
        return at - clock.start - sum(end - start for start, end in pauses if end <= at)  # type: ignore[operator]

    history = [
        {
            "step": int(e["step"]),
            "epoch": round(e["epoch"], 3),
            "eval_loss": round(e["eval_loss"], 4),
            "perplexity": round(math.exp(e["eval_loss"]), 3),
            "train_seconds": round(training_seconds(clock.steps[e["step"]]), 1),
            "wall_seconds": round(e["at"] - clock.start, 1),
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
        "wall_seconds": round(last - clock.start, 1),
        "eval_seconds": round(sum(e["at"] - clock.steps[e["step"]] for e in clock.evals), 1),
        "checkpoint_seconds": round(sum(end - start for start, end in saves), 1),
        "best_eval_loss": best["eval_loss"] if best else None,
        "best_perplexity": best["perplexity"] if best else None,
        "best_at_train_seconds": best["train_seconds"] if best else None,
        "history": history,
    }
    return summary, result.model


def reference_config(evals_per_epoch: int) -> Any:
    """The original HuggingTweets training: its recipe, and transformers' Trainer with the model's own loss (as the
    original ran it); this project's fused loss is one of the things measured against it. `--levers` also runs
    the recipe with the fused loss."""
    from .train import TrainConfig

    return TrainConfig(
        method="full", epochs=4.0, learning_rate=REFERENCE_LR, batch_size=8, block_size=128, precision="fp32",
        evals_per_epoch=evals_per_epoch, early_stopping_patience=evals_per_epoch, save_minutes=1e9, fused_loss=False,
    )


def default_config(evals_per_epoch: int, method: str = "auto") -> Any:
    """The project's CPU defaults for `method` (auto: LoRA), with early stopping scaled to `evals_per_epoch`."""
    from .train import TrainConfig

    import torch

    # On a GPU machine these CPU settings train on the GPU, in float32 as they always did (the host CPU's bf16 is moot).
    defaults = TrainConfig(method=method, precision="fp32" if torch.cuda.is_available() else "auto")  # type: ignore[arg-type]
    # Early stopping after the same share of an epoch as the defaults (2 evaluations at 2 per epoch: one epoch).
    patience = max(1, round(defaults.early_stopping_patience * evals_per_epoch / defaults.evals_per_epoch))
    return replace(defaults, evals_per_epoch=evals_per_epoch, early_stopping_patience=patience, save_minutes=1e9).resolved("cpu")


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


# ---- generation --------------------------------------------------------------------------------------------


def generation(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: posts/s at batch 1 and batched, time to first streamed text, memorisation before and after the filter.

    spec: model, max_new_tokens, batch1_posts, batched_posts, batch_size, stream_repeats, memorisation_samples,
    train_texts, [use_cache, int8, fast_sampling, temperature, one_call_posts, fast_weights].
    """
    import torch

    from . import generate as generation_module
    from . import models
    from .generate import GenerateOptions, fast_weights, generate, stream
    from .memorisation import CopyChecker
    from .train import layer_stack

    model, tokenizer = models.load_base(spec["model"])
    model.eval()
    if spec.get("use_cache") is False:
        model.generation_config.use_cache = False
    if spec.get("int8"):
        # Generation on a CPU reads every weight once per token: int8 weights mean a quarter of the memory traffic.
        # Only the transformer layers: quantising the (tied) output head as well multiplied perplexity by ~6.
        torch.ao.quantization.quantize_dynamic(layer_stack(model), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif spec.get("fast_weights", True):
        fast_weights(model)  # as `Bot` generates: bf16 weights on a CPU with bf16 arithmetic
    new = int(spec.get("max_new_tokens", 96))
    fast = bool(spec.get("fast_sampling", True))
    temperature = float(spec.get("temperature", 1.0))
    out: dict[str, Any] = {"max_new_tokens": new, "use_cache": spec.get("use_cache", True), "int8": bool(spec.get("int8")),
                           "fast_sampling": fast, "temperature": temperature, "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    if spec.get("validation"):
        from .evaluate import perplexity

        out["perplexity"] = perplexity(model, tokenizer, spec["validation"])  # what int8 costs in quality
    checker = CopyChecker.from_texts(spec.get("train_texts") or [])
    # Against the bot's posts' length: a bot that sounds like the person also writes posts as long as theirs.
    out["training_median_characters"] = _median([len(t) for t in spec.get("train_texts") or []])
    generate(model, tokenizer, GenerateOptions(n=2, batch_size=2, max_new_tokens=8, seed=0))  # warm-up

    def draw(n: int, batch: int, seed: int, keep_copies: bool = True, attempts: int | None = None) -> tuple[list[Any], float]:
        # generate() draws one batch per attempt: as many attempts as batches, unless the defaults are being measured.
        options = GenerateOptions(n=n, batch_size=batch, max_new_tokens=new, seed=seed, keep_copies=keep_copies,
                                  attempts=attempts or math.ceil(n / batch), fast_sampling=fast, temperature=temperature)
        start = time.perf_counter()
        samples = generate(model, tokenizer, options, checker)
        return samples, time.perf_counter() - start

    def speed(samples: list[Any], seconds: float, batch: int) -> dict[str, Any]:
        return {"posts": len(samples), "batch_size": batch, "seconds": seconds, "posts_per_s": len(samples) / seconds,
                "ended_share": sum(s.ended for s in samples) / max(1, len(samples)),
                "median_characters": _median([len(s.text) for s in samples])}

    batch = int(spec.get("batch_size", 16))
    batched: list[Any] = []
    if spec.get("batch1_posts"):
        out["batch1"] = speed(*draw(int(spec["batch1_posts"]), 1, seed=0), 1)
    if spec.get("batched_posts"):
        batched, seconds = draw(int(spec["batched_posts"]), batch, seed=1)
        out["batched"] = speed(batched, seconds, batch)
    if spec.get("one_call_posts"):
        # The same draw with one `model.generate` call per batch: ended posts stay in the batch until the longest ends.
        rounds = generation_module.ROUND
        generation_module.ROUND = new
        try:
            out["batched_one_call"] = speed(*draw(int(spec["one_call_posts"]), batch, seed=1), batch)
        finally:
            generation_module.ROUND = rounds
    if spec.get("stream_repeats"):
        firsts, texts, totals = [], [], []
        for i in range(int(spec["stream_repeats"])):
            start = time.perf_counter()
            first = first_text = None
            # Only the start matters here: a short post keeps the generating thread from lingering into the next timing.
            for partial in stream(model, tokenizer, GenerateOptions(seed=i, max_new_tokens=min(new, 16), fast_sampling=fast, temperature=temperature)):
                now = time.perf_counter() - start
                first = first if first is not None else now
                if first_text is None and partial.text:
                    first_text = now
            totals.append(time.perf_counter() - start)
            firsts.append(first)
            texts.append(first_text if first_text is not None else totals[-1])
        out["stream"] = {"repeats": len(firsts), "first_token_s": _median(firsts), "first_text_s": _median(texts), "sixteen_tokens_s": _median(totals)}
    if spec.get("memorisation_samples"):
        n = int(spec["memorisation_samples"])
        # The batched speed sample doubles as the unfiltered sample when it is exactly one such draw (quick mode).
        reuse = n == len(batched) <= batch
        seed = 1 if reuse else 2
        before = batched if reuse else draw(n, batch, seed=seed)[0]
        copies = sum(s.copied for s in before)
        if copies:
            # The defaults (copies dropped and redrawn, default attempts) with the same seed: the same first draw, filtered.
            after, _ = draw(n, batch, seed=seed, keep_copies=False, attempts=GenerateOptions.attempts)
        else:
            after = before  # same seed, same draw, and nothing to filter: the filtered run would return exactly these
        out["memorisation"] = {
            "samples_before": len(before),
            "copy_share_before": copies / max(1, len(before)),
            "samples_after": len(after),
            "copy_share_after": sum(checker.copies(s.text) for s in after) / max(1, len(after)),
            "redrawn": bool(copies),
            "examples": [s.text for s in before[:3]],
        }
    return out


def _median(values: list[Any]) -> float | None:
    clean = sorted(v for v in values if v is not None)
    return clean[len(clean) // 2] if clean else None


# ---- levers that need their own loop -----------------------------------------------------------------------


def _loop_model(spec: dict[str, Any], lora_rank: int | None) -> tuple[Any, Any]:
    """The base model ready for a plain training loop (LoRA when `lora_rank`), and `spec["texts"]` in blocks."""
    from . import models
    from .dataset import build_blocks
    from .train import add_lora

    model, tokenizer = models.load_base(spec["base_model"])
    if lora_rank:
        model = add_lora(model, lora_rank)
    model.config.use_cache = False
    model.train()
    return model, build_blocks(list(spec["texts"]), tokenizer, int(spec["block_size"]))


def step_pairs(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: two ways of taking a training step, alternating step by step on one model and the same batches.

    Separate runs of a few steps differ by more than the effects (±15% on this shared machine); alternating steps in
    one process sees the same machine state for both. spec: base_model, texts, method, batch_size, block_size, pairs,
    precision (fp32, or bf16: autocast and transformers' attention, as `train_model` runs on a CPU),
    variant: "loss", the fused loss (new) against transformers' own (old); "compile", compiled layers (new, as
    `train_model` compiles them) against eager ones (old), both with the fused loss. speedup = old / new step time.
    """
    import torch

    from .compiling import compiled
    from .hardware import BF16_CPU_ATTENTION, set_attention
    from .loss import causal_lm_loss
    from .train import layer_stack

    batch, pairs, variant = int(spec["batch_size"]), int(spec["pairs"]), spec.get("variant", "loss")
    model, blocks = _loop_model(spec, 16 if spec["method"] == "lora" else None)
    bf16 = spec.get("precision") == "bf16"
    if bf16:
        set_attention(model, BF16_CPU_ATTENTION)
    data = blocks[:]
    if len(data["input_ids"]) < batch:
        return {"error": f"need at least {batch} blocks"}
    layers = list(layer_stack(model)) if variant == "compile" else []
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6, fused=True)
    seconds: dict[str, list[float]] = {"new": [], "old": []}
    warm = 3 if variant == "compile" else 1  # pairs before timing: compilation and its variants fall in the first steps
    for i in range(2 * (pairs + warm)):
        new = bool(i % 2)
        at = (i // 2 * batch) % max(1, len(data["input_ids"]) - batch + 1)  # both steps of a pair see the same batch
        inputs = {k: v[at : at + batch] for k, v in data.items()}
        with compiled(layers if new else []):
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**inputs).loss if variant == "loss" and not new else causal_lm_loss(model, inputs)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if i >= 2 * warm:
                seconds["new" if new else "old"].append(time.perf_counter() - start)
    new_s, old_s = _median(seconds["new"]), _median(seconds["old"])
    return {"variant": variant, "method": spec["method"], "precision": "bf16" if bf16 else "fp32", "batch_size": batch, "pairs": pairs,
            "new_step_s": new_s, "old_step_s": old_s,
            "speedup": old_s / new_s if new_s and old_s else None}


def compile_speedup(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: LoRA training steps eager vs the whole model under torch.compile, in a plain loop.

    Training compiles the layers only (compiling.py, timed in the `throughput` section); this shows what compiling
    everything would add, and what it would cost in compile time.
    """
    import torch

    batch, block, steps = int(spec["batch_size"]), int(spec["block_size"]), int(spec["steps"])
    model, data = _loop_model(spec, int(spec.get("lora_rank", 16)))
    full = max(1, len(data) // batch)  # whole batches only: one shape, so one compilation
    batches = [{k: v[i * batch : (i + 1) * batch] for k, v in data[:].items()} for i in range(full)] if len(data) >= batch else []
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


def gpu_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Child: the GPU target, a full fine-tune of `posts` posts for 4 epochs with the GPU defaults, no evaluation."""
    from . import models
    from .train import TrainConfig, train_model

    model, tokenizer = models.load_base(spec["base_model"])
    texts = list(spec["texts"])
    texts = (texts * math.ceil(int(spec["posts"]) / len(texts)))[: int(spec["posts"])]
    config = replace(TrainConfig(method="full", epochs=4.0, save_minutes=1e9).resolved("cuda"), evals_per_epoch=1)
    with tempfile.TemporaryDirectory(prefix="huggingtweets-bench-") as work:
        start = time.perf_counter()
        result = train_model(model, tokenizer, texts, [], config, Path(work) / "run", show_progress=False)
        seconds = time.perf_counter() - start
    return {"posts": len(texts), "epochs": 4, "steps": result.steps, "train_seconds": seconds, "precision": config.precision}


# ---- running it all ----------------------------------------------------------------------------------------


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


def run(options: BenchOptions, say: Say | None = None) -> dict[str, Any]:
    """Measure everything in `options.sections`; return the report (see `markdown`)."""
    import torch

    from . import models
    from .train import is_peft

    say = say or (lambda text: print(text, file=sys.stderr, flush=True))
    started = time.perf_counter()
    models.check_available(options.base_model)
    if models.is_default(options.base_model):
        models.default_model_dir()  # convert once here, not inside a timed or measured child
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": options.quick,
        "options": asdict(options),
        "machine": machine(),
        "base_model": models.describe(options.base_model),
    }
    runner = Sections(report, say)
    sections = set(options.sections)
    data = load_data(options)
    report["data"] = {
        "source": data.source, "posts": data.posts, "train_posts": len(data.train), "validation_posts": len(data.validation),
        "race_train_posts": len(data.race_train), "race_validation_posts": len(data.race_validation), "quality_posts": len(data.quality),
    }
    tokenizer = models.load_tokenizer(options.base_model)
    spec = {"base_model": options.base_model}
    timeout = options.child_timeout_s
    cuda = torch.cuda.is_available()

    with runner.section("peak") as peak:
        peak.update(matmul_peak(options.matmul_size, options.matmul_repeats))

    if "throughput" in sections or "memory" in sections:
        with runner.section("throughput") as section:
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
                got = in_child("train_steps", {**spec, "texts": evenly(data.train, 256), "config": asdict(config), "warmup": warmup,
                                               "steps": options.throughput_steps}, timeout)
                got["utilisation"] = utilisation(got, report["peak"])
                section[name] = got

    if "padding" in sections:
        with runner.section("padding") as section:
            section["all_posts"] = padding(data.train, tokenizer)
            section["race_posts"] = padding(data.race_train, tokenizer)

    bot_dir = tempfile.TemporaryDirectory(prefix="huggingtweets-bench-bot-")
    try:
        if "race" in sections or "quality" in sections or "generation" in sections:
            with runner.section("race") as section:
                from .evaluate import perplexity

                base, _ = models.load_base(options.base_model)
                base_ppl = perplexity(base, tokenizer, data.quality)
                del base
                evals = options.evals_per_epoch
                reference: dict[str, Any] = {}
                if "race" in sections:
                    say(f"  reference recipe on {len(data.race_train)} posts")
                    reference, trained = race_arm("reference", reference_config(evals), options.base_model, data.race_train, data.race_validation)
                    del trained
                say(f"  default settings on {len(data.race_train)} posts")
                default, bot = race_arm("default", default_config(evals), options.base_model, data.race_train, data.race_validation)
                bot = bot.merge_and_unload() if is_peft(bot) else bot
                bot.eval()
                bot_ppl = perplexity(bot, tokenizer, data.quality)
                bot.save_pretrained(bot_dir.name)  # for the generation process
                tokenizer.save_pretrained(bot_dir.name)
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

        if "generation" in sections and "error" not in report.get("race", {}):
            with runner.section("generation") as section:
                # The batched draw; the full section adds batch 1, streaming and memorisation to it.
                draw = {"model": bot_dir.name, "max_new_tokens": 96, "batched_posts": options.batched_posts,
                        "batch_size": options.generation_batch, "train_texts": data.race_train}
                section.update(in_child("generation", {
                    **draw, "batch1_posts": options.batch1_posts, "one_call_posts": 0 if options.quick else options.batched_posts,
                    "stream_repeats": options.stream_repeats, "memorisation_samples": options.memorisation_samples,
                }, timeout))
                report.setdefault("quality", {})["memorisation"] = section.pop("memorisation", None)
                if section.get("dtype") == "bfloat16":
                    say("  the same batched draw with float32 weights, the baseline")
                    baseline = in_child("generation", {**draw, "fast_weights": False}, timeout)
                    section["batched_fp32"] = baseline.get("batched", baseline)  # a failed child's error stays in view

        if "levers" in sections:
            with runner.section("levers") as section:
                section.update(levers(options, data, tokenizer, report["peak"], say, report.get("race", {}).get("reference")))
    finally:
        bot_dir.cleanup()

    if "memory" in sections:
        with runner.section("memory") as section:
            throughput = report.get("throughput", {})
            section["full_training_rss_bytes"] = throughput.get("full", {}).get("peak_rss_bytes")
            section["lora_training_rss_bytes"] = throughput.get("lora", {}).get("peak_rss_bytes")
            section["lora_compiled_training_rss_bytes"] = throughput.get("lora_compiled", {}).get("peak_rss_bytes")
            section["generation_rss_bytes"] = report.get("generation", {}).get("peak_rss_bytes")
            section["how"] = "VmHWM of a fresh Python process per measurement (model loading included)"

    if "gpu" in sections:
        with runner.section("gpu") as section:
            if cuda:
                section.update(in_child("gpu_run", {**spec, "texts": data.train, "posts": options.gpu_posts}, timeout))
            else:
                section.update({"train_seconds": None, "note": "n/a: no CUDA device"})

    report["targets"] = targets(report)
    # A section fails on an exception, or when one of its measurements (a child process) reports an error.
    report["failed_sections"] = [
        name for name, value in report.items()
        if isinstance(value, dict) and ("error" in value or any(isinstance(v, dict) and "error" in v for v in value.values()))
    ]
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def levers(
    options: BenchOptions, data: Data, tokenizer: Any, peak: dict[str, Any], say: Say, reference: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Each lever against the default, tokens/s and (where cheap) held-out loss after the same number of steps;
    then a few variants of the default run the whole race (compared with `reference` when the race ran too)."""
    from .train import TrainConfig

    lora = default_config(2)
    full = default_config(2, "full")
    depth = _depth(options.base_model)
    k = max(1, depth // 3)
    runs: dict[str, tuple[Any, dict[str, Any]]] = {
        "lora r=8": (replace(lora, lora_rank=8), {}),
        "lora r=16 (default)": (lora, {}),
        "lora r=32": (replace(lora, lora_rank=32), {}),
        "lora r=16 attention only": (lora, {"lora_target": "attention"}),
        "lora lr 5e-4": (replace(lora, learning_rate=5e-4), {}),
        "lora lr 4e-3": (replace(lora, learning_rate=4e-3), {}),
        "full, all layers": (full, {}),
        "full, transformers' loss (not fused)": (replace(full, fused_loss=False), {"no_eval": True}),
        "lora, transformers' loss (not fused)": (replace(lora, fused_loss=False), {"no_eval": True}),
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
    out: dict[str, Any] = {"steps": options.lever_steps, "training": {}}
    for name, (config, extra) in runs.items():
        say(f"  lever: {name}")
        spec = {"base_model": options.base_model, "texts": data.race_train, "config": asdict(config), "warmup": options.warmup_steps,
                "steps": options.lever_steps, **{k: v for k, v in extra.items() if k != "no_eval"}}
        if not extra.get("no_eval"):
            spec["validation"] = data.race_validation
        got = in_child("train_steps", spec, options.child_timeout_s)
        got["utilisation"] = utilisation(got, peak)
        out["training"][name] = got
    out["padding_by_block"] = {str(b): padding(data.train, tokenizer, b)["padding_share"] for b in (64, 128, 256)}
    for variant, what in (("loss", "fused loss vs transformers' loss"), ("compile", "compiled layers vs eager")):
        out[f"{variant}_pairs"] = {}
        for method, config, pairs in (("full", full, 6), ("lora", lora, 20)):
            say(f"  lever: {what}, {method}, {pairs} alternating pairs of steps")
            out[f"{variant}_pairs"][method] = in_child("step_pairs", {
                "base_model": options.base_model, "texts": data.race_train, "method": method, "batch_size": config.batch_size,
                "block_size": config.block_size, "pairs": max(2, pairs * options.lever_steps // 6), "variant": variant,
                "precision": config.precision}, options.child_timeout_s)
    say("  lever: torch.compile")
    out["compile"] = in_child("compile_speedup", {"base_model": options.base_model, "texts": evenly(data.train, 256), "batch_size": 8,
                                                   "block_size": TrainConfig().block_size, "steps": options.lever_steps}, 900)
    # Generation levers on the base model, 32 new tokens (without the KV cache every token recomputes the whole prefix).
    out["generation"] = {}
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
    for name, size, extra in variants:
        say(f"  lever: generation, {name}")
        out["generation"][name] = in_child("generation", {
            "model": options.base_model, "max_new_tokens": 32, "batched_posts": size, "batch_size": size, **extra,
        }, options.child_timeout_s)
    # Whole runs of default variants on the race's posts: what reaches the reference's best perplexity, and when.
    out["race_arms"] = {}
    evals = options.evals_per_epoch
    variants = options.race_variants or race_arms(depth)
    arms = [(name, f"default with {name}", replace(default_config(evals), **overrides)) for name, overrides in variants]
    if reference:
        # The recipe with this project's fused loss: how much of the race is the loss's and how much the settings'.
        name = "the reference recipe with the fused loss"
        arms.insert(0, (name, name, replace(reference_config(evals), fused_loss=True)))
    for name, label, config in arms:
        say(f"  lever: race arm, {label}")
        arm, model = race_arm(name, config, options.base_model, data.race_train, data.race_validation)
        del model
        out["race_arms"][name] = {**arm, **(compare(reference, arm) if reference else {})}
    return out


def race_arms(depth: int) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The default's variants that run the whole race with --levers, for a model `depth` layers deep."""
    return (
        ("batch 8, lr 4e-3 (the previous default)", {"batch_size": 8, "learning_rate": 4e-3}),
        ("lr 4e-3", {"learning_rate": 4e-3}),
        ("lr 2e-3, 1 epoch", {"learning_rate": 2e-3, "epochs": 1.0}),
        (f"LoRA on the top {depth // 2} of {depth} layers", {"lora_layers": depth // 2}),
    )


def _depth(base_model: str | None) -> int:
    from transformers import AutoConfig

    from . import models
    from .train import layer_count

    return max(1, layer_count(AutoConfig.from_pretrained(models.resolve(base_model))))


# ---- targets and the table ---------------------------------------------------------------------------------


def _get(report: dict[str, Any], *path: str) -> Any:
    value: Any = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _target(id: str, measure: str, value: float | None, target: str, check: Callable[[float], bool] | None, note: str = "") -> dict[str, Any]:
    passed = None if value is None or check is None else bool(check(value))
    return {"id": id, "measure": measure, "value": value, "target": target, "passed": passed, "note": note}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with the measured value and pass/fail (None: not measured or not applicable)."""
    ratio = _get(report, "race", "ratio")
    reached = _get(report, "race", "default_seconds") is not None
    quick = bool(report.get("quick"))
    race_note = "quick: not meaningful" if quick else ""
    if _get(report, "race", "reference") and not reached:
        race_note = (race_note + "; " if race_note else "") + "default never reached the reference's best"
    # A long LoRA run compiles by default, so both must fit in mybinder's 2 GB.
    rss = max((_get(report, "memory", key) or 0 for key in ("lora_training_rss_bytes", "lora_compiled_training_rss_bytes")), default=0)
    before = _get(report, "quality", "memorisation", "copy_share_before")
    after = _get(report, "quality", "memorisation", "copy_share_after")
    gpu = _get(report, "gpu", "train_seconds")
    # Runs long enough to matter (500+ steps) compile their layers: the steady state is theirs; eager is noted.
    compiled, eager = _get(report, "throughput", "full_compiled", "utilisation"), _get(report, "throughput", "full", "utilisation")
    full_use = compiled if compiled is not None else eager
    full_label = " with compiled layers (the default from 500 steps)" if compiled is not None else ""
    full_note = f"eager: {_pct(eager)}" if compiled is not None and eager is not None else ""
    fp32 = _get(report, "throughput", "full_fp32", "utilisation")  # the baseline, where the default runs in bf16
    if fp32 is not None:
        # The issue takes the fp32 peak as the reference; a bf16 run is judged against the stricter bf16 peak.
        judged = _get(report, "throughput", "full_compiled" if compiled is not None else "full") or {}
        against_fp32 = utilisation({**judged, "precision": "fp32"}, _get(report, "peak") or {})
        full_note = "; ".join(n for n in (full_note, f"in bf16, against the bf16 peak ({_pct(against_fp32)} of the fp32 peak); "
                                          f"the float32 baseline: {_pct(fp32)} of the fp32 peak") if n)
    if quick:  # one timed step
        full_note = "; ".join(n for n in ("quick: one timed step", full_note) if n)
    found = [
        _target("race_ratio", "default reaches the reference's best perplexity, time ratio", ratio, "≤ 1/3",
                lambda v: v <= 1 / 3, race_note),
        _target("full_utilisation", f"full fine-tune{full_label}, share of matmul peak (6N)", full_use, "≥ 75% of peak", lambda v: v >= 0.75, full_note),
        _target("padding", "padding share of trained positions", _get(report, "padding", "all_posts", "padding_share"),
                "< 2%", lambda v: v < 0.02),
        _target("generation_posts_per_s", "generation, posts/s batched", _get(report, "generation", "batched", "posts_per_s"),
                "≥ 4 posts/s", lambda v: v >= 4),
        _target("first_token_s", "first streamed text, seconds", _get(report, "generation", "stream", "first_text_s"),
                "< 1 s", lambda v: v < 1),
        _target("lora_rss_gb", "LoRA training peak RSS (eager or compiled), GB", rss / GB if rss else None, "≤ 2 GB", lambda v: v <= 2),
        _target("perplexity_ratio", "bot / base held-out perplexity", _get(report, "quality", "ratio"), "≤ 0.6 × base", lambda v: v <= 0.6,
                "quick: a bot of a few posts, not meaningful" if quick else ""),
        _target("no_copy_before", "posts copying no 8-word run, before the filter", 1 - before if before is not None else None,
                "≥ 95%", lambda v: v >= 0.95),
        _target("no_copy_after", "posts copying no 8-word run, after the filter", 1 - after if after is not None else None,
                "100%", lambda v: v >= 1.0),
        _target("gpu_seconds", f"GPU: {_get(report, 'options', 'gpu_posts')} posts x 4 epochs, seconds", gpu, "≤ 30 on one H100",
                (lambda v: v <= 30) if gpu is not None else None, "" if gpu is not None else _get(report, "gpu", "note") or ""),
    ]
    return found


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a header, the main table (targets with pass/fail), the race, and the levers."""
    m = report.get("machine", {})
    d = report.get("data", {})
    lines = [
        f"### huggingtweets bench, {report.get('date', '')}{' (quick)' if report.get('quick') else ''}",
        "",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('cpu_capability')}, "
        f"{'with' if m.get('cpu_bf16') else 'without'} bf16 arithmetic), torch {m.get('torch')} ({m.get('torch_threads')} threads), "
        f"GPU: {m.get('gpu') or 'none'}. Base model: {report.get('base_model')}.",
        f"Data: {d.get('source')}, {d.get('posts')} posts after cleaning (replies kept): {d.get('train_posts')} training, "
        f"{d.get('validation_posts')} newest held out. Race and bot: {d.get('race_train_posts')} training posts spread evenly over time, "
        f"evaluated on {d.get('race_validation_posts')} held-out posts; quality on {d.get('quality_posts')} held-out posts.",
    ]
    if not any(name in report for name in ("throughput", "race", "generation")):
        return "\n".join(lines + [""] + _lever_lines(report)) + "\n"  # --levers-only
    lines += ["", "| section | measure | value | target | result |", "|---|---|---:|---|---|"]

    def row(section: str, measure: str, value: str, target: str = "", result: str = "") -> None:
        lines.append(f"| {section} | {measure} | {value} | {target} | {result} |")

    by_id = {t["id"]: t for t in report.get("targets", [])}

    def verdict(id: str) -> tuple[str, str]:
        t = by_id.get(id, {})
        result = {True: "pass", False: "**fail**", None: "—" if t.get("value") is None else ""}[t.get("passed")]
        return t.get("target", ""), result + (f" ({t['note']})" if t.get("note") else "")

    peak = report.get("peak", {})
    row("peak", f"fp32 matmul {peak.get('size')}² (best of {peak.get('repeats')})", f"{_fmt(peak.get('gflops'))} GFLOP/s", "reference")
    if peak.get("bf16_gflops"):
        row("peak", f"bf16 matmul {peak.get('size')}² (best of {peak.get('repeats')})", f"{_fmt(peak.get('bf16_gflops'))} GFLOP/s",
            "reference for bf16 runs")
    arms = (("full", "full fine-tune"), ("lora", "LoRA r=16 all-linear"), ("full_compiled", "full fine-tune, compiled layers"),
            ("lora_compiled", "LoRA r=16, compiled layers"), ("full_fp32", "full fine-tune in float32 (baseline)"),
            ("lora_fp32", "LoRA r=16 in float32 (baseline)"))
    counted = "full_compiled" if "full_compiled" in report.get("throughput", {}) else "full"  # the arm the target judges
    for name, label in arms:
        if name not in report.get("throughput", {}):
            continue
        t = _get(report, "throughput", name) or {}
        if "error" in t:
            row("training", label, f"error: {t['error'][:80]}")
            continue
        precision = f", {t['precision']}" if t.get("precision") and t["precision"] != "fp32" else ""
        value = f"{_fmt(t.get('tokens_per_s'))} tokens/s{precision}, {_pct(t.get('utilisation'))} of peak ({t.get('flops_formula')})"
        row("training", label, value, *(verdict("full_utilisation") if name == counted else ("", "")))
    race = report.get("race", {})
    if race.get("reference"):
        ref, default = race["reference"], race["default"]
        row("race", f"reference best perplexity ({ref['steps']} steps)", f"{_fmt(ref['best_perplexity'], 4)} at {_fmt(ref['best_at_train_seconds'])} s")
        reached = f"{_fmt(race.get('default_seconds'))} s" if race.get("default_seconds") is not None else "never"
        row("race", "default reaches it", f"{reached} (best {_fmt(default['best_perplexity'], 4)})")
        row("race", "time ratio default / reference", _fmt(race.get("ratio")), *verdict("race_ratio"))
    elif "error" in race:
        row("race", "error", race["error"][:100])
    pad = _get(report, "padding", "all_posts") or {}
    row("padding", f"padding share of trained positions (block {pad.get('block_size')})", _pct(pad.get("padding_share")), *verdict("padding"))
    loose = pad.get("without_packing") or {}
    if loose:
        block = loose["one_post_per_block"]
        row("padding", "without packing: one post per block", f"{_pct(block['padding_share'])} ({_fmt(block['positions_vs_packed'])}x the positions)")
        for b, got in loose["padded_per_batch"].items():
            row("padding", f"without packing: padded to the longest post of a batch of {b}",
                f"{_pct(got['padding_share'])} ({_fmt(got['positions_vs_packed'])}x the positions)")
    gen = report.get("generation", {})
    row("generation", "posts/s at batch 1", _fmt(_get(gen, "batch1", "posts_per_s")))
    weights = f", {gen['dtype']} weights" if gen.get("dtype") and gen["dtype"] != "float32" else ""
    row("generation", f"posts/s at batch {_get(gen, 'batched', 'batch_size')}{weights}", _fmt(_get(gen, "batched", "posts_per_s")),
        *verdict("generation_posts_per_s"))
    if gen.get("batched_fp32"):
        row("generation", "the same draw with float32 weights (baseline, own process)", _fmt(_get(gen, "batched_fp32", "posts_per_s")))
    if gen.get("batched_one_call"):
        row("generation", "the same, ended posts kept in the batch (one generate call)", _fmt(_get(gen, "batched_one_call", "posts_per_s")))
    row("generation", "first streamed text, s (median)", _fmt(_get(gen, "stream", "first_text_s")), *verdict("first_token_s"))
    mem = report.get("memory", {})
    row("memory", "full fine-tune peak RSS", _gb(mem.get("full_training_rss_bytes")))
    row("memory", "LoRA training peak RSS", _gb(mem.get("lora_training_rss_bytes")), *verdict("lora_rss_gb"))
    if mem.get("lora_compiled_training_rss_bytes"):
        row("memory", "LoRA training peak RSS, compiled layers", _gb(mem.get("lora_compiled_training_rss_bytes")))
    row("memory", "generation peak RSS", _gb(mem.get("generation_rss_bytes")))
    q = report.get("quality", {})
    row("quality", "held-out perplexity base → bot", f"{_fmt(q.get('base_perplexity'), 4)} → {_fmt(q.get('bot_perplexity'), 4)}")
    row("quality", "bot / base perplexity", _fmt(q.get("ratio")), *verdict("perplexity_ratio"))
    mem_q = q.get("memorisation") or {}
    row("quality", f"no 8-word copy, before filter ({mem_q.get('samples_before')} posts)", _pct(by_id.get("no_copy_before", {}).get("value")), *verdict("no_copy_before"))
    row("quality", f"no 8-word copy, after filter ({mem_q.get('samples_after')} posts)", _pct(by_id.get("no_copy_after", {}).get("value")), *verdict("no_copy_after"))
    if _get(gen, "batched", "median_characters") is not None:
        row("quality", "post length, median characters: bot (share ended before the token limit) / training posts",
            f"{_fmt(_get(gen, 'batched', 'median_characters'))} ({_pct(_get(gen, 'batched', 'ended_share'))}) / "
            f"{_fmt(gen.get('training_median_characters'))}")
    gpu_value = _get(report, "gpu", "train_seconds")
    row("gpu", "3,200 posts × 4 epochs", f"{_fmt(gpu_value)} s" if gpu_value is not None else "n/a", *verdict("gpu_seconds"))
    if report.get("failed_sections"):
        lines += ["", f"Failed sections: {', '.join(report['failed_sections'])} (see the JSON)."]

    if race.get("reference"):
        lines += ["", "Race (held-out perplexity at each evaluation; training seconds exclude evaluation and checkpoint writes):", "",
                  "| arm | step | epoch | train s | wall s | perplexity |", "|---|---:|---:|---:|---:|---:|"]
        for arm in ("reference", "default"):
            for r in race[arm]["history"]:
                lines.append(f"| {arm} | {r['step']} | {r['epoch']:g} | {r['train_seconds']:g} | {r['wall_seconds']:g} | {_fmt(r['perplexity'], 4)} |")
    return "\n".join(lines + _lever_lines(report)) + "\n"


def _lever_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lev = report.get("levers")
    if lev and "training" in lev:
        lines += ["", f"Levers ({lev['steps']} timed steps after warm-up, LoRA batch 2 and full fine-tune batch 8 unless named; loss = held-out loss after those steps):", "",
                  "| lever | tokens/s | utilisation | trainable params | held-out loss | peak RSS |", "|---|---:|---:|---:|---:|---:|"]
        for name, t in lev["training"].items():
            if "error" in t:
                lines.append(f"| {name} | error: {t['error'][:60]} | | | | |")
                continue
            lines.append(f"| {name} | {_fmt(t['tokens_per_s'])} | {_pct(t.get('utilisation'))} | {t['trainable_parameters']:,} | "
                         f"{_fmt(t.get('eval_loss'), 4)} | {_gb(t.get('peak_rss_bytes'))} |")
        c = lev.get("compile", {})
        if "eager_tokens_per_s" in c:
            compiled = (f"{_fmt(c['compiled_tokens_per_s'])} tokens/s compiled ({_fmt(c['speedup'])}x) after {_fmt(c['compile_seconds'])} s of compiling"
                        if "compiled_tokens_per_s" in c else f"compile failed: {c.get('compile_error')}")
            lines.append(f"\ntorch.compile (LoRA r=16, plain loop): {_fmt(c['eager_tokens_per_s'])} tokens/s eager, {compiled}.")
        else:
            lines.append(f"\ntorch.compile: {c.get('error')}")
        for key, what in (("loss_pairs", "Fused loss vs transformers' loss"), ("compile_pairs", "Compiled layers vs eager")):
            pairs = lev.get(key, {})
            if pairs:
                lines.append(f"{what}, median step in alternating pairs on one model: " + ", ".join(
                    f"{m} (batch {p['batch_size']}, {p.get('precision', 'fp32')}, {p['pairs']} pairs) {_fmt(p['old_step_s'])} → {_fmt(p['new_step_s'])} s, {_fmt(p['speedup'])}x"
                    if "error" not in p else f"{m} error" for m, p in pairs.items()) + ".")
        gens = lev.get("generation", {})
        lines.append(f"Generation, batch {_get(report, 'options', 'generation_batch')} × 32 new tokens on the base model: " + ", ".join(
            f"{name} {_fmt(_get(g, 'batched', 'posts_per_s'))} posts/s" + (f" (perplexity {_fmt(g['perplexity'], 4)})" if g.get("perplexity") else "")
            if "error" not in g else f"{name} error" for name, g in gens.items()) + ".")
        arms = lev.get("race_arms") or {}
        if arms:
            lines += ["", "Whole race runs: the recipe with the fused loss, and variants of the default (same posts; training seconds):", "",
                      "| variant | steps | best perplexity | at s | reaches the reference's best at s | ratio |", "|---|---:|---:|---:|---:|---:|"]
            for name, a in arms.items():
                lines.append(f"| {name} | {a['steps']} | {_fmt(a['best_perplexity'], 4)} | {_fmt(a['best_at_train_seconds'])} | "
                             f"{_fmt(a.get('default_seconds'))} | {_fmt(a.get('ratio'))} |")
        pads = lev.get("padding_by_block", {})
        lines.append("")
        lines.append("Padding share by block size: " + ", ".join(f"{b}: {_pct(v)}" for b, v in pads.items()) + ".")
    elif lev and "error" in lev:
        lines += ["", f"Levers: error: {lev['error']}"]
    return lines


def _gb(value: int | None) -> str:
    return "—" if not value else f"{value / GB:.2f} GB"


# ---- entry point -------------------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    settings: dict[str, Any] = {"data": getattr(args, "data", None), "base_model": getattr(args, "base_model", None)}
    if getattr(args, "levers_only", False):
        settings["sections"] = ("peak", "levers")
    elif getattr(args, "levers", False):
        settings["sections"] = (*SECTIONS, "levers")
    return BenchOptions.quick_preset(**settings) if getattr(args, "quick", False) else BenchOptions(**settings)


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
    report = run(options_from_args(args))
    print(markdown(report), flush=True)
    out = getattr(args, "json_out", None)
    if out:
        from . import atomic

        atomic.write_json(out, report)
        print(f"wrote {out}", file=sys.stderr)
    return 1 if report["failed_sections"] else 0
