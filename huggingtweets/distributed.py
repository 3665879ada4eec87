"""Several training processes (`accelerate launch`, `torchrun`): who prepares data and who writes files.

    torchrun --nproc_per_node 2 -m huggingtweets train posts.jsonl --out bots/me
    accelerate launch --num_processes 2 -m huggingtweets train posts.jsonl --out bots/me

The Hugging Face `Trainer` does the data-parallel training itself (DDP: each process takes its share of every
batch, gradients are averaged). What it does not know about is the rest of a `huggingtweets train` run, which each
process runs from the top: fetching posts (the X API charges per post read), converting the embedded model, the work
folder, the bot folder. Those happen once, in the main process (rank 0); the others wait for it and receive its
result, so every process trains on exactly the same posts.

Nothing here starts a process group in a single process: a plain run takes none of these paths.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from .hardware import accelerator

T = TypeVar("T")


def world_size() -> int:
    """How many processes train together (1 without a launcher). torchrun and accelerate both set WORLD_SIZE."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_main() -> bool:
    """Whether this process writes files and prints progress: the only one, or rank 0 of several."""
    return world_size() == 1 or os.environ.get("RANK", "0") == "0"


def _state() -> Any:
    from accelerate import PartialState

    # The same settings the Trainer's arguments give it later (use_cpu without a GPU), so the shared state agrees.
    return PartialState(cpu=accelerator() == "cpu")


def barrier() -> None:
    """Wait until every process gets here."""
    if world_size() > 1:
        _state().wait_for_everyone()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """The main process runs the block first (say, converting a model into a shared folder); the others then run
    it too, finding its result there."""
    if world_size() == 1:
        yield
        return
    with _state().main_process_first():
        yield


def once(make: Callable[[], T]) -> T:
    """`make()` in the main process only; every other process receives its result (pickled).

    An error in the main process reaches the others as that same error, so each stops with one clear line instead
    of waiting for a result that never comes.
    """
    if world_size() == 1:
        return make()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", make())
        except Exception as error:  # handed over to the other processes, then raised here too
            box[0] = ("error", error)
    _state()  # the process group must exist before the broadcast
    broadcast_object_list(box, from_process=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value  # type: ignore[no-any-return]


def agree(flag: bool) -> bool:
    """The main process's `flag`, in every process: for decisions all of them must take alike (one collective)."""
    if world_size() == 1:
        return flag
    from accelerate.utils import broadcast

    state = _state()
    return bool(broadcast(torch.tensor([int(flag)], device=state.device), from_process=0).item())
