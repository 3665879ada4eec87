"""The posts every section measures on, and what packing them into blocks saves against one post per row."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import HuggingTweetsError
from .options import BenchOptions

# The repository's sibling folder `shared`, where the real archive is kept (this file is huggingtweets/bench/data.py).
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "x-archive-milahu104"

T = TypeVar("T")


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
    from ..clean import CleanOptions
    from ..corpus import build_corpus

    source = options.data
    if source is None:
        if not DEFAULT_DATA.is_dir():
            raise HuggingTweetsError(f"the benchmark archive {DEFAULT_DATA} is missing: pass --data SOURCE (any source huggingtweets reads)")
        source = str(DEFAULT_DATA)
    corpus = build_corpus([source], CleanOptions(keep_replies=True), min_characters=0)
    train, validation = corpus.texts()
    if not train or not validation:
        raise HuggingTweetsError(f"{source}: too few posts to benchmark ({len(corpus.posts)} after cleaning; at least 10 are needed)")
    return Data(
        source=source if options.data is not None else f"../shared/data/{DEFAULT_DATA.name}",
        posts=len(corpus.posts),
        train=train,
        validation=validation,
        race_train=evenly(train, options.race_posts),
        race_validation=evenly(validation, options.race_validation_posts),
        quality=evenly(validation, options.quality_posts),
    )


def padding(texts: list[str], tokenizer: Any, block_size: int = 128, batches: tuple[int, ...] = (2, 8)) -> dict[str, Any]:
    """Share of the positions in the training blocks that are padding, two ways (they must agree), and what the
    same posts would cost without packing (`without_packing`)."""
    from ..dataset import IGNORE, build_blocks, frame

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
