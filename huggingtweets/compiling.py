"""torch.compile for the transformer layers while training on a CPU.

    if compile_wanted(config.compile, steps_to_go, gpu=False, model_type=model.config.model_type):
        with compiled(layer_stack(model)):
            trainer.train()

Why only the layers: every layer of a model runs the same code, so one compilation (plus a few variants: the
first layer's input needs no gradient under LoRA, blocks with and without padding take different attention paths,
a short last batch) serves all of them; the whole model took 146-199 s to compile. Evaluation (no gradients) stays
eager. The modules, their names and the state dict are untouched, so Trainer's checkpoints, resuming and
`save_pretrained` work as without it, and leaving the block puts the plain forward back: the generation that follows
training would otherwise be traced again at every new length.

What it gives (benchmarks/README.md, 2 cores, the embedded model), mostly by fusing the small element-wise
operations (norms, rotary embeddings, SiLU, residual adds) that eager mode runs one by one: LoRA steps 1.08-1.11x
faster in a whole `train_model` run and in alternating pairs on one model (1.3x in some separate short runs); a
full fine-tune, whose steps are mostly large matrix multiplies, 1.01-1.17x. The cost, in a real LoRA run with
evaluations: ~55 s on first use (37 s in the first step, 21 s for a variant), ~10 s once inductor's on-disk cache
has the kernels. At ~0.15-0.2 s saved per ~2 s step that is repaid after ~300-400 steps on first use, so "auto"
compiles runs of `MIN_STEPS` or more.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal, get_args

import torch

from .errors import HuggingTweetsError

log = logging.getLogger(__name__)

Compile = Literal["auto", "on", "off"]
MIN_STEPS = 500  # "auto" compiles CPU runs at least this long (see the module docstring)
# Architectures whose layers "auto" compiles: the ones tested compiled (SmolLM2 is a Llama). Others: --compile on.
AUTO_MODELS = frozenset({"llama"})


def check_setting(setting: str) -> None:
    """A one-line error unless `setting` is one of the `Compile` values."""
    if setting not in get_args(Compile):
        raise HuggingTweetsError(f"compile must be auto, on or off, got {setting}")


@functools.cache
def compiler_problem() -> str | None:
    """Why torch.compile cannot work here (no C++ compiler, an old torch), in one line; None when it works.

    Compiles and runs a two-operation function once, so a missing compiler shows before training starts. The
    answer is kept for the life of the process (install a compiler, then restart the kernel or the command).
    """
    try:
        probe = torch.compile(lambda x: (x * 2).sin(), backend="inductor", fullgraph=True)
        probe(torch.ones(4))
    except Exception as e:  # any failure means: train without it
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[0][:160] if lines else ''}"
    return None


def compile_wanted(setting: Compile, steps: int, gpu: bool, model_type: str | None) -> bool:
    """Whether to compile a run with `steps` optimizer steps to go. "on" without a working compiler is an error."""
    check_setting(setting)
    if setting == "off" or (setting == "auto" and (gpu or steps < MIN_STEPS or model_type not in AUTO_MODELS)):
        return False
    problem = compiler_problem()
    if problem is None:
        return True
    if setting == "on":
        raise HuggingTweetsError(f"torch.compile does not work here ({problem}): train with compile off")
    log.info("training without torch.compile: %s", problem)
    return False


@contextmanager
def compiled(layers: Iterable[torch.nn.Module]) -> Iterator[None]:
    """Each layer's forward compiled inside the block while gradients are on; as it was, after it."""
    layers = list(layers)
    before = [layer.__dict__.get("forward") for layer in layers]  # e.g. accelerate's hooks: put back as they were
    failed: list[str] = []
    try:
        for layer in layers:
            layer.forward = _training_only(layer.forward, torch.compile(layer.forward), failed)  # shadows the class's forward
        with _backward_compiled_with_forward() if layers else nullcontext():  # a process-wide setting: only when compiling
            yield
    finally:
        for layer, forward in zip(layers, before):
            if forward is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = forward


def _backward_compiled_with_forward() -> AbstractContextManager[object]:
    """Compile each graph's backward along with its forward, inside the forward call.

    By default the backward graph is compiled at the first backward pass. A failure there could not fall back:
    the compiled forward has already run and the error comes out of `loss.backward()`. Compiled with the forward,
    it fails inside the call `_training_only` guards, which runs that call eager instead. (Torch versions without
    the setting keep the lazy backward.)
    """
    import torch._functorch.config as functorch_config

    if not hasattr(functorch_config, "force_non_lazy_backward_lowering"):
        return nullcontext()
    return functorch_config.patch(force_non_lazy_backward_lowering=True)


def _training_only(plain: Callable[..., Any], fast: Callable[..., Any], failed: list[str]) -> Callable[..., Any]:
    """`fast` while training, `plain` otherwise, and `plain` for good once a compilation has failed (`failed`, shared
    by the layers of one run, is where that is noted)."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        # Evaluation runs without gradients: compiling it would add graphs for a few calls per evaluation.
        if failed or not torch.is_grad_enabled():
            return plain(*args, **kwargs)
        try:
            return fast(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as e:
            # A variant that fails to compile mid-run (the up-front probe passed): nothing has run yet for this
            # call, so running it eager gives the same result. An hour of training is not lost to a compiler.
            if not failed:
                inner = getattr(e, "inner_exception", None) or e
                lines = str(inner).strip().splitlines()
                failed.append(f"{type(inner).__name__}: {lines[0][:160] if lines else ''}")
                log.warning("torch.compile failed mid-run (%s): training goes on without it", failed[0])
            return plain(*args, **kwargs)

    return forward
