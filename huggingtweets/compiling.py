"""torch.compile for the transformer layers while training on a CPU.

    if compile_wanted(config.compile, total_steps, gpu=False):
        with compiled(layer_stack(model)):
            trainer.train()

Why only the layers: every layer of a model runs the same code, so one compilation (plus a few variants: the
first layer's input needs no gradient under LoRA, evaluation runs without gradients) serves all of them. On
2 cores that takes ~30-40 s the first time and seconds afterwards (inductor keeps its kernels on disk), where
compiling the whole model took 146-199 s. The modules, their names and the state dict are untouched, so
Trainer's checkpoints, resuming and `save_pretrained` work as without it, and leaving the block puts the
plain forward back: the generation that follows training would otherwise be traced again at every new length.

What it gives (benchmarks/README.md, 2 cores), mostly by fusing the small element-wise operations (norms,
rotary embeddings, SiLU, residual adds) that eager mode runs one by one: LoRA steps 1.11x faster in alternating
pairs on one model (twice) and 1.3x in separate runs; a full fine-tune, whose steps are mostly large matrix
multiplies, 1.01-1.17x in pairs. A LoRA step takes ~2 s, so 30-40 s of compiling is repaid within ~200 steps;
shorter runs stay eager.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch

from .errors import HuggingTweetsError

log = logging.getLogger(__name__)

Compile = Literal["auto", "on", "off"]
MIN_STEPS = 200  # "auto" compiles CPU runs at least this long: ~2x the steps that repay the compile time


@functools.cache
def compiler_problem() -> str | None:
    """Why torch.compile cannot work here (no C++ compiler, an old torch), in one line; None when it works.

    Compiles and runs a two-operation function once, so a missing compiler shows before training starts.
    """
    try:
        probe = torch.compile(lambda x: (x * 2).sin(), backend="inductor", fullgraph=True)
        probe(torch.ones(4))
    except Exception as e:  # any failure means: train without it
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"
    return None


def compile_wanted(setting: Compile, steps: int, gpu: bool) -> bool:
    """Whether to compile a run of `steps` optimizer steps. "on" without a working compiler is an error."""
    if setting not in ("auto", "on", "off"):
        raise HuggingTweetsError(f"compile must be auto, on or off, got {setting}")
    if setting == "off" or (setting == "auto" and (gpu or steps < MIN_STEPS)):
        return False
    problem = compiler_problem()
    if problem is None:
        return True
    if setting == "on":
        raise HuggingTweetsError(f"torch.compile does not work here ({problem}): train with --compile off")
    log.info("training without torch.compile: %s", problem)
    return False


@contextmanager
def compiled(layers: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Each layer's forward compiled inside the block, the plain one after it."""
    layers = list(layers)
    for layer in layers:
        layer.forward = torch.compile(layer.forward)  # an instance attribute that shadows the class's forward
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
