"""Posts → training blocks.

Every post is framed the same way in training, evaluation and generation:

    <start> text of the post <end>

`<start>` is the tokenizer's bos token (eos where there is none) and `<end>` its eos token, which the
model learns to produce: generation stops there, so one sample is one post. Framed posts are packed
whole into fixed blocks (first-fit by length), so a block never starts mid-post and almost no position
is padding. Padding is found by position, not by token id: SmolLM2 pads with its end token, and the
end tokens must keep their labels.

What a post in a block sees is a choice (`isolate`):
- training (the default, `TrainConfig.isolate_posts=False`): positions run on through the block, so each post
  sees the posts packed before it and learns where one ends and the next begins;
- evaluation, the end-bias calibration and generation (`isolate=True`): each post sees only itself, at positions
  0, 1, 2, ... as when it is generated; the blocks carry `position_ids` that start again at every post and no
  attention mask, from which transformers builds a causal mask per post (its packed-sequence support).
Both were measured on two whole archives (benchmarks/README.md, "The new default"): with the end marker weighted
3x in the loss, posts packed together ended 97.7-99.2% of the time, and each post alone left the bundled archive
at 89-94%; the held-out perplexity, scored with each post alone, stayed within about 3%.

    split = split_posts(posts)                    # newest 10% held out
    data = build_blocks(split.train_texts, tokenizer, block_size=128, isolate=False)   # as training packs them
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import HuggingTweetsError, TooLittleText
from .posts import Post

MIN_CHARACTERS = 6_000  # HuggingTweets refused below this
WARN_CHARACTERS = 40_000  # and warned below this
IGNORE = -100  # label value the loss skips


@dataclass
class Split:
    train: list[Post]
    validation: list[Post]

    @property
    def train_texts(self) -> list[str]:
        return [p.text for p in self.train]

    @property
    def validation_texts(self) -> list[str]:
        return [p.text for p in self.validation]


def split_posts(posts: list[Post], validation_share: float = 0.1) -> Split:
    """Hold out the newest posts (not a random sample): the bot is judged on what the person wrote next.

    Posts without dates go before the dated ones, in their order, so only dated posts are held out while there
    are enough of them; with no dates at all, the last posts are held out.
    """
    if not 0 <= validation_share < 1:
        raise HuggingTweetsError(f"validation share must be in [0, 1), got {validation_share}")
    # (False,) sorts before every (True, date), and dates are only compared with dates. The sort is stable.
    ordered = sorted(posts, key=lambda p: (True, p.created_at) if p.created_at else (False,))
    n_val = int(len(ordered) * validation_share)
    if validation_share > 0 and len(ordered) >= 10:
        n_val = max(1, n_val)
    cut = len(ordered) - n_val
    return Split(ordered[:cut], ordered[cut:])


def check_enough_text(posts: list[Post], minimum: int = MIN_CHARACTERS) -> str | None:
    """Raise TooLittleText under `minimum` characters; return a warning under WARN_CHARACTERS."""
    characters = sum(len(p.text) for p in posts)
    if characters < minimum:
        raise TooLittleText(
            f"only {len(posts)} posts with {characters:,} characters left after cleaning; at least {minimum:,} are needed "
            "(keep replies with --keep-replies, add another source, or lower --min-characters)"
        )
    if characters < WARN_CHARACTERS:
        return f"only {characters:,} characters of text: the bot will be rough (above {WARN_CHARACTERS:,} works better)"
    return None


def balance(groups: list[list[Post]]) -> list[Post]:
    """Mix several accounts, repeating the smaller ones so each weighs about as much as the largest.

    HuggingTweets did the same: otherwise a bot of a prolific and a quiet account sounds like only one.
    """
    sizes = [sum(len(p.text) for p in g) for g in groups]
    largest = max(sizes, default=0)
    mixed: list[Post] = []
    for group, size in zip(groups, sizes):
        repeats = max(1, round(largest / size)) if size else 0
        mixed += group * repeats
    return mixed


def markers(tokenizer: Any) -> tuple[int, int]:
    """The (start, end) token ids that frame each post."""
    end = tokenizer.eos_token_id
    if end is None:
        raise HuggingTweetsError("the base model's tokenizer has no end-of-text token: choose another base model")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else end
    return start, end


def frame(tokenizer: Any, text: str) -> list[int]:
    start, end = markers(tokenizer)
    return [start, *tokenizer(text, add_special_tokens=False)["input_ids"], end]


@dataclass
class Blocks(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Packed, fixed-size blocks ready for `Trainer` (default_data_collator stacks them)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor  # 1 on post tokens, 0 on padding: for counting, not given to the model
    labels: torch.Tensor
    position_ids: torch.Tensor  # isolated: from 0 at every post's start marker (and at the padding), one causal mask per post
    truncated_posts: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int | slice) -> dict[str, torch.Tensor]:
        return self.inputs(i) if isinstance(i, slice) else self.inputs(slice(i, i + 1), squeeze=True)

    def inputs(self, rows: slice, squeeze: bool = False) -> dict[str, torch.Tensor]:
        """What the model is given for these rows. No attention mask: with one, transformers would let each post see
        the posts before it in the block."""
        picked = {"input_ids": self.input_ids[rows], "position_ids": self.position_ids[rows], "labels": self.labels[rows]}
        return {k: v[0] for k, v in picked.items()} if squeeze else picked

    @property
    def trained_tokens(self) -> int:
        return int((self.labels != IGNORE).sum())

    @property
    def padding_share(self) -> float:
        """Share of positions in the blocks that are padding (trained on nothing)."""
        total = self.attention_mask.numel()
        return float((self.attention_mask == 0).sum()) / total if total else 0.0


def pack(sequences: list[list[int]], block_size: int) -> list[list[int]]:
    """First-fit decreasing: whole sequences into as few blocks of `block_size` as it finds.

    Returns, per block, the indices of its sequences. Sequences longer than a block get a block each.
    """
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    bins: list[list[int]] = []
    free: list[int] = []
    for i in order:
        need = min(len(sequences[i]), block_size)
        # Most posts are short, so most bins fill quickly; scanning only bins with room keeps this fast.
        for b, room in enumerate(free):
            if room >= need:
                bins[b].append(i)
                free[b] -= need
                break
        else:
            bins.append([i])
            free.append(block_size - need)
    return bins


def build_blocks(texts: list[str], tokenizer: Any, block_size: int = 128, isolate: bool = True) -> Blocks:
    """Tokenise framed posts and pack them into blocks with labels on every post token and end token.

    `isolate=True` (evaluation's framing): each post sees only itself, at positions from 0, as it is generated.
    `isolate=False` (training's default, TrainConfig.isolate_posts): positions run on through the block, so each post
    sees the posts packed before it; measured, the bot's own posts then end more reliably (benchmarks/README.md)."""
    if block_size < 8:
        raise HuggingTweetsError(f"block size must be at least 8 tokens, got {block_size}")
    start, end = markers(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    sequences = [frame(tokenizer, t) for t in texts]
    truncated = sum(1 for s in sequences if len(s) > block_size)
    sequences = [s[:block_size] for s in sequences]
    bins = pack(sequences, block_size)
    n = len(bins)
    input_ids = torch.full((n, block_size), pad, dtype=torch.long)
    attention = torch.zeros((n, block_size), dtype=torch.long)
    labels = torch.full((n, block_size), IGNORE, dtype=torch.long)
    positions = torch.arange(block_size).repeat(n, 1)  # the padding at a block's end counts from 0 on its own
    for b, members in enumerate(bins):
        at = 0
        for i in members:
            seq = sequences[i]
            input_ids[b, at : at + len(seq)] = torch.tensor(seq)
            attention[b, at : at + len(seq)] = 1
            if isolate:
                positions[b, at : at + len(seq)] = torch.arange(len(seq))
            # The start marker is given, not predicted: label everything after it, end token included.
            labels[b, at + 1 : at + len(seq)] = torch.tensor(seq[1:])
            at += len(seq)
        if isolate:
            positions[b, at:] = torch.arange(block_size - at)
    stats = {"posts": len(texts), "blocks": n, "tokens": int(attention.sum())}
    return Blocks(input_ids, attention, labels, positions, truncated, stats)


def steps_per_epoch(n_blocks: int, batch_size: int, grad_accum: int = 1) -> int:
    return max(1, math.ceil(n_blocks / batch_size / grad_accum))
