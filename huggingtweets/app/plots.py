"""Small matplotlib figures for the app and the walkthrough notebook.

    fig = data_figure(corpus.posts)             # posts per month and post length, side by side
    fig = loss_figure([(10, 4.1), (20, 3.7)], [(27, 3.9)])
    fig = length_figure(train_texts, [s.text for s in bot.generate(n=64)])   # person vs bot
    png(fig)                                    # PNG bytes, for an ipywidgets Image or IPython's Image

Figures are made with `matplotlib.figure.Figure`, not `pyplot`: no global figure registry and no GUI
backend, so they can be drawn from the training thread and are garbage-collected like any object.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..posts import Post

Point = tuple[float, float]  # (step, loss)

COLOR = "#1d9bf0"
VALIDATION_COLOR = "#f4900c"


def png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def image(fig: Figure) -> object:
    """The figure as an IPython `Image`, for `display()` in a notebook (works without `%matplotlib`)."""
    from IPython.display import Image

    return Image(png(fig))


def months(posts: Sequence[Post]) -> list[tuple[str, int]]:
    """(YYYY-MM, posts) for every month from the first dated post to the last, empty months included."""
    counts = Counter(p.created_at.strftime("%Y-%m") for p in posts if p.created_at)
    if not counts:
        return []
    first, last = min(counts), max(counts)
    year, month = int(first[:4]), int(first[5:])
    out = []
    while f"{year:04d}-{month:02d}" <= last:
        key = f"{year:04d}-{month:02d}"
        out.append((key, counts.get(key, 0)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def data_figure(posts: Sequence[Post], width: float = 8.0) -> Figure:
    """Two small panels: posts per month (when posts are dated) and the distribution of post length."""
    fig = Figure(figsize=(width, 2.4))
    per_month, lengths = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    rows = months(posts)
    if rows:
        labels, values = zip(*rows)
        per_month.bar(range(len(values)), values, color=COLOR)
        # At most ~8 labels, or a few years of months become unreadable.
        every = max(1, len(labels) // 8)
        per_month.set_xticks(range(0, len(labels), every), labels[::every], rotation=45, ha="right", fontsize=8)
    else:
        per_month.text(0.5, 0.5, "posts have no dates", ha="center", va="center", transform=per_month.transAxes)
        per_month.set_xticks([])
    per_month.set_title("posts per month", fontsize=10)
    per_month.tick_params(axis="y", labelsize=8)

    chars = [len(p.text) for p in posts]
    lengths.hist(chars, bins=min(30, max(1, len(set(chars)))), color=COLOR)
    lengths.set_title("post length (characters)", fontsize=10)
    lengths.tick_params(labelsize=8)
    for ax in (per_month, lengths):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def loss_figure(
    train: Sequence[Point], validation: Sequence[Point] = (), total_steps: int | None = None, width: float = 6.0,
    end_weight: float = 1.0,
) -> Figure:
    """Training loss (logged every few steps) and validation loss (at each evaluation) against the step.

    `end_weight`: the training loss's weight on the end marker (TrainConfig.end_loss_weight). Above 1 the training
    curve sits a little above a plain loss, and the legend says so: the validation loss is always the plain one."""
    fig = Figure(figsize=(width, 2.6))
    ax = fig.subplots()
    if train:
        label = "train" if end_weight == 1 else f"train (end marker {end_weight:g}x)"
        ax.plot(*zip(*train), color=COLOR, marker=".", label=label)
    if validation:
        ax.plot(*zip(*validation), color=VALIDATION_COLOR, marker="o", label="validation")
    if not train and not validation:
        ax.text(0.5, 0.5, "waiting for the first loss", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0, total_steps * 1.03 if total_steps else None)  # room for the last point's marker
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel("loss (nats/token)", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if train or validation:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def length_figure(person: Sequence[str], bot: Sequence[str], width: float = 6.0) -> Figure:
    """Post length of the person's posts and the bot's, on the same bins, each medians marked.

    Shares, not counts, on the y axis: a few dozen generated posts against hundreds of real ones.
    """
    fig = Figure(figsize=(width, 2.6))
    ax = fig.subplots()
    groups = [(name, [len(t) for t in texts], color) for name, texts, color in (("person", person, COLOR), ("bot", bot, VALIDATION_COLOR)) if texts]
    longest = max((max(chars) for _, chars, _ in groups), default=1)
    bins = [longest * i / 30 for i in range(31)]
    for name, chars, color in groups:
        median = statistics.median_high(chars)
        ax.hist(chars, bins=bins, weights=[1 / len(chars)] * len(chars), color=color, alpha=0.55, label=f"{name} (median {median})")
        ax.axvline(median, color=color, linestyle="--", linewidth=1)
    if not groups:
        ax.text(0.5, 0.5, "no posts", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("post length (characters)", fontsize=9)
    ax.set_ylabel("share of posts", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    if groups:
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
