"""What a bench run measures and how much (`BenchOptions`), and the command line's flags turned into options."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECTIONS = ("peak", "throughput", "race", "padding", "generation", "memory", "quality", "gpu")
REFERENCE_LR = 1.372e-4  # the original HuggingTweets learning rate
GB = 1e9
GPU_SECTIONS = ("gpu",)  # `--gpu`: the GPU check of issue 21 alone
NO_GPU = "bench --gpu: no CUDA GPU on this machine; nothing measured, nothing written"

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
    length_posts: int = 64  # posts per try when tuning the race bot's end bias, as TrainConfig.length_posts
    lever_steps: int = 6
    gpu_posts: int = 3200
    gpu_matmul_size: int = 8192  # a GPU needs a bigger matmul than a CPU to reach its peak
    gpu_budget_s: float = 360.0  # the GPU section's parts that would start after this many seconds are skipped, with a note
    # Variants of the default that run the whole race with --levers (name, TrainConfig overrides); None: race_arms().
    race_variants: tuple[tuple[str, dict[str, Any]], ...] | None = None
    child_timeout_s: float = 1200.0

    @classmethod
    def quick_preset(cls, **overrides: Any) -> BenchOptions:
        """Minutes instead of a quarter of an hour: tiny race, one measured step, a few samples."""
        settings: dict[str, Any] = dict(
            quick=True, matmul_repeats=3, throughput_steps=1, race_posts=8, race_validation_posts=8, quality_posts=8,
            evals_per_epoch=1, batch1_posts=1, batched_posts=16, generation_batch=16, stream_repeats=1, memorisation_samples=16,
            length_posts=16,
        )
        return cls(**{**settings, **overrides})

    @classmethod
    def gpu_preset(cls, **overrides: Any) -> BenchOptions:
        """`--gpu`: the GPU section alone (issue 21), its race on more posts than the CPU's, within `gpu_budget_s`
        counted from the start of the run (model conversion included)."""
        settings: dict[str, Any] = dict(sections=GPU_SECTIONS, race_posts=800, race_validation_posts=96, evals_per_epoch=4)
        return cls(**{**settings, **overrides})

    @property
    def gpu_mode(self) -> bool:
        return tuple(self.sections) == GPU_SECTIONS


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    settings: dict[str, Any] = {"data": getattr(args, "data", None), "base_model": getattr(args, "base_model", None)}
    if getattr(args, "gpu", False):  # a parser without the flag (an older cli.py) leaves it out: not the GPU mode
        return BenchOptions.gpu_preset(**settings)
    if getattr(args, "levers_only", False):
        settings["sections"] = ("peak", "levers")
    elif getattr(args, "levers", False):
        settings["sections"] = (*SECTIONS, "levers")
    return BenchOptions.quick_preset(**settings) if getattr(args, "quick", False) else BenchOptions(**settings)
