"""New posts from a fine-tuned model, with `model.generate`.

A post is generated the way posts were framed in training: start marker, the prompt (the opening words
of the post, maybe none), and whatever the model writes until it produces the end marker. So one sample
is one post. Samples are drawn in batches (one forward pass per token for the whole batch), checked
against the training posts, and copies are dropped and drawn again unless asked to keep them. Each word is
drawn by `sampling.NucleusSampler`: the distribution of `do_sample=True`, without sorting the vocabulary.
Posts that have ended leave the batch every `ROUND` tokens (see `draw_batch`).

    samples = generate(model, tokenizer, GenerateOptions(n=5, prompt="I think"), checker)
    for partial in stream(model, tokenizer, GenerateOptions(prompt="Today")):
        print(partial.text)

On a CPU with bf16 arithmetic, `fast_weights(model)` first (as `Bot` does) draws about twice as fast.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from .dataset import markers
from .ending import EndBias
from .errors import HuggingTweetsError, check_seed
from .hardware import BF16_CPU_ATTENTION, cpu_bf16, set_attention
from .memorisation import CopyChecker
from .sampling import NucleusSampler

MAX_CHARACTERS = 280  # a post on X
# The most posts one call or command generates: at the ~10 posts/s measured, a quarter of an hour. More is a typo
# (an extra zero or three) that would otherwise run for days.
MAX_POSTS = 10_000
ROUND = 16  # tokens per `model.generate` call in `draw_batch`; ended posts leave the batch between calls


@dataclass
class GenerateOptions:
    prompt: str = field(default="", metadata={"help": "how each post starts"})
    n: int = field(default=5, metadata={"help": "number of posts"})
    temperature: float = field(default=1.0, metadata={"help": "higher is wilder, lower is safer"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling (HuggingTweets used 0.95)"})
    top_k: int = field(default=0, metadata={"help": "sample among the k likeliest tokens (0: no limit)"})
    max_new_tokens: int = field(default=96, metadata={"help": "upper bound on tokens per post"})
    seed: int | None = field(default=None, metadata={"help": "same seed, same posts"})
    keep_copies: bool = field(default=False, metadata={"help": "keep posts that copy the training posts (marked)"})
    batch_size: int = field(default=64, metadata={"help": "posts drawn per forward pass (64: 1.1x the posts/s of 32 on 2 CPU cores)"})
    attempts: int = field(default=4, metadata={"help": "rounds with copies before giving up on replacing them"})
    fast_sampling: bool = field(default=True, metadata={"help": "draw without sorting the vocabulary (same distribution); False: transformers' do_sample"})
    end_bias: float = field(default=0.0, metadata={"help": "added to the end marker's logit (a bot's own comes from its held-out posts: ending.py)"})

    def validate(self) -> None:
        if self.n <= 0:
            raise HuggingTweetsError(f"number of posts must be positive, got {self.n}")
        if self.n > MAX_POSTS:  # the command line's bound too: a typo, not a wish
            raise HuggingTweetsError(f"number of posts must be at most {MAX_POSTS:,}, got {self.n}")
        if not self.temperature > 0:
            raise HuggingTweetsError(f"temperature must be positive, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise HuggingTweetsError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0 or self.max_new_tokens <= 0 or self.batch_size <= 0:
            raise HuggingTweetsError("top-k must be >= 0; max new tokens and batch size must be positive")
        if not math.isfinite(self.end_bias):
            raise HuggingTweetsError(f"end bias must be a finite number, got {self.end_bias}")
        check_seed(self.seed)


@dataclass
class Sample:
    text: str
    copied: bool  # repeats an 8-word run (or all) of a training post
    prompt: str = ""
    ended: bool = True  # the model wrote the end marker (False: cut at the token or character limit)

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "copied": self.copied, "prompt": self.prompt, "ended": self.ended, "label": "AI-generated"}


def copy_share(samples: Sequence[Sample]) -> float:
    """The share of `samples` that copy a training post (drawn with `keep_copies`, or it is 0 by construction)."""
    return round(sum(s.copied for s in samples) / max(1, len(samples)), 4)


@dataclass
class Partial:
    """A post while it streams in; `done` on the last one, which also says whether it copies."""

    text: str
    done: bool = False
    copied: bool | None = None


def fast_weights(model: object) -> object:
    """`model` with bf16 weights, converted in place, where that draws posts faster: a float32 model in eval mode on
    a CPU with bf16 arithmetic (`hardware.cpu_bf16`). There a batch of 64 posts is drawn about 2x as fast and one
    post at a time 1.6x, and transformers' own attention, which it then switches to, 1.14x faster again than SDPA's
    (benchmarks/README.md); held-out perplexity moves by about 0.2%. Elsewhere, and for a model still in training
    mode, it is left as it is, and so is a model spread over devices or already in another dtype. Only for a model
    that is done training: its float32 weights are gone. Buffers (such as the rotary frequencies) stay float32.
    """
    weights = list(model.parameters())  # type: ignore[attr-defined]
    plain = all(w.device.type == "cpu" and w.dtype == torch.float32 for w in weights) and not getattr(model, "hf_device_map", None)
    if not (weights and plain and not model.training and cpu_bf16()):  # type: ignore[attr-defined]
        return model
    buffers = [(m, name, b) for m in model.modules() for name, b in m._buffers.items() if b is not None and b.is_floating_point()]  # type: ignore[attr-defined]
    model.to(torch.bfloat16)  # type: ignore[attr-defined]
    for module, name, buffer in buffers:
        module._buffers[name] = buffer
    set_attention(model, BF16_CPU_ATTENTION)
    return model


# What a model's bytes can decode to that does not print: control characters (all but tab and newline), U+FFFD
# (where the bytes are not UTF-8) and the bidirectional overrides and isolates, which reorder the text shown after
# them. Printed, they ring the terminal's bell, split a post across lines or hide what it says. Joiners stay: emoji
# are built with them. A run of them goes with the spaces around it, one space kept if there was one, so that
# "a \x1c b" does not become a double space and "so \ufffdfire" does not become "sofire".
_UNPRINTABLE = re.compile("( ?)[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd\u202a-\u202e\u2066-\u2069]+( ?)")
_LINE_SEPARATORS = re.compile("[\u2028\u2029]")  # Unicode's own line and paragraph breaks: `splitlines` splits there


def printable(text: str) -> str:
    text = _LINE_SEPARATORS.sub("\n", text)
    return _UNPRINTABLE.sub(lambda m: m.group(1) or m.group(2), text)


def finish(text: str, limit: int = MAX_CHARACTERS) -> str:
    """Tidy a decoded post (printable characters only) and keep it within `limit` characters, cutting at a word boundary."""
    return finish_cut(text, limit)[0]


def finish_cut(text: str, limit: int = MAX_CHARACTERS) -> tuple[str, bool]:
    """`finish(text)`, and whether it had to shorten the post beyond tidying it (a cut post did not end)."""
    text = printable(text).strip()
    if len(text) <= limit:
        return text, False
    cut = text[:limit]
    return (cut[: cut.rfind(" ")] if " " in cut[limit // 2 :] else cut).strip(), True


def _prompt(options: GenerateOptions) -> str:
    """The prompt as posts continue it: without trailing spaces, which would end it on a lone space token (the
    model then starts its next word with a second space, a token sequence it has rarely seen)."""
    return options.prompt.rstrip()


def _inputs(tokenizer: object, prompt: str, device: torch.device) -> torch.Tensor:
    start, _ = markers(tokenizer)
    # split_special_tokens: a prompt is text, so "<|im_end|>" typed into it is spelled out, not an end marker.
    words = tokenizer(prompt, add_special_tokens=False, split_special_tokens=True)["input_ids"] if prompt else []  # type: ignore[operator]
    return torch.tensor([[start, *words]], device=device)


def _generator(device: torch.device, seed: int | None) -> torch.Generator:
    """The random numbers of one call: seeded, the same posts every time; unseeded, a seed drawn from torch's global
    random state, so calls differ and `torch.manual_seed` before one still repeats it. Drawing from a generator of
    its own, generation neither disturbs nor is disturbed by training running in another thread (the app)."""
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)))
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


@contextmanager
def _global_random_state(device: torch.device, generator: torch.Generator, needed: bool) -> Iterator[None]:
    """For transformers' own sampling (`fast_sampling=False`), which draws from torch's global random state: that
    state seeded from `generator` for the call, and put back after it."""
    if not needed:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(generator.initial_seed())
        yield


class _Halt(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _sampling(model: object, tokenizer: object, options: GenerateOptions, generator: torch.Generator | None = None) -> dict[str, object]:
    start, end = markers(tokenizer)
    stops = [end] if start == end else [end, start]  # a new start marker also ends the post
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end  # type: ignore[attr-defined]
    # min_new_tokens and begin_suppress_tokens from a model's generation_config would start again in every round of
    # `draw_batch` (they count from each call's input); they are not among the user's options, so they are off.
    limits = dict(max_new_tokens=options.max_new_tokens, eos_token_id=stops, pad_token_id=pad, min_new_tokens=None, begin_suppress_tokens=None)
    # The end marker's calibrated odds (ending.py) come first, as a logit would: temperature and nucleus act on them.
    ending = [EndBias(end, options.end_bias)] if options.end_bias else []
    if not options.fast_sampling:
        return dict(
            do_sample=True, temperature=options.temperature, top_p=options.top_p, top_k=options.top_k or None,
            logits_processor=LogitsProcessorList(ending), **limits,
        )
    # The sampler draws each word and greedy decoding takes it: the same distribution as do_sample=True with
    # these settings, without sorting the whole vocabulary at every step (see sampling.py).
    sampler = NucleusSampler(options.temperature, options.top_p, options.top_k, generator=generator)
    # Every other truncation a model's generation_config might set is switched off, so only these options apply.
    off = dict(temperature=None, top_p=None, top_k=None, min_p=None, typical_p=None, epsilon_cutoff=None, eta_cutoff=None)
    return dict(do_sample=False, logits_processor=LogitsProcessorList([*ending, sampler]), **off, **limits)


def _decode(tokenizer: object, ids: list[int], stops: set[int]) -> tuple[str, bool]:
    """The text before the first end marker, and whether there was one."""
    for i, token in enumerate(ids):
        if token in stops:
            return tokenizer.decode(ids[:i], skip_special_tokens=True), True  # type: ignore[attr-defined]
    return tokenizer.decode(ids, skip_special_tokens=True), False  # type: ignore[attr-defined]


def _rows_can_leave(cache: object) -> bool:
    """Whether rows can be dropped from `cache` and generation continued from it: a plain dynamic cache only.

    Static and hybrid caches (set by some models' generation_config) cannot be passed back to `generate`, and
    quantised or recurrent layers hold state that `batch_select_indices` would not select.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    plain = (DynamicLayer, DynamicSlidingWindowLayer)
    return type(cache) is DynamicCache and all(type(layer) in plain for layer in getattr(cache, "layers", []))


def _cache_keyword() -> str:
    """What `generate` calls the KV cache, as an argument and as a field of its output: `cache` since transformers 5.x
    (`past_key_values` is deprecated there, to be removed in 6.0), `past_key_values` before."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    return "cache" if "cache" in GenerateDecoderOnlyOutput.__dataclass_fields__ else "past_key_values"


def draw_batch(model: object, prompt_ids: torch.Tensor, batch: int, settings: dict[str, object], stops: set[int]) -> list[list[int]]:
    """`batch` continuations of `prompt_ids` (one row), as the new token ids of each.

    One `model.generate` call runs until the longest post of the batch ends, and rows that have already ended
    cost as much per step as live ones. So generation goes in rounds of `ROUND` tokens, continuing from the
    KV cache, and rows that ended leave the batch (and its cache) between rounds. Every post is still drawn
    token by token from the same distribution; only the finished rows' wasted work goes (about 1.3x the tokens/s
    with the 96-token limit at batch 64 on 2 cores, benchmarks/README.md).
    """
    ids = prompt_ids.repeat(batch, 1)
    start = ids.shape[1]
    stop_ids = torch.tensor(sorted(stops), device=ids.device)
    rows = list(range(batch))
    done: dict[int, list[int]] = {}
    cache = None
    left = int(settings["max_new_tokens"])  # type: ignore[call-overload]
    keyword = _cache_keyword()
    while rows:
        out = model.generate(  # type: ignore[attr-defined]
            ids, attention_mask=torch.ones_like(ids), return_dict_in_generate=True,
            **{**settings, keyword: cache, "max_new_tokens": min(ROUND, left)},
        )
        sequences, cache = out.sequences, getattr(out, keyword)
        left -= sequences.shape[1] - ids.shape[1]
        ended = torch.isin(sequences[:, start:], stop_ids).any(-1)
        if left <= 0:
            ended[:] = True
        for i in ended.nonzero().flatten().tolist():
            done[rows[i]] = sequences[i, start:].tolist()
        keep = (~ended).nonzero().flatten()
        rows = [rows[i] for i in keep.tolist()]
        ids = sequences[keep]
        if not _rows_can_leave(cache):
            cache = None  # a static, hybrid or quantised cache: the next round recomputes it from the kept rows
        elif rows and len(keep) < len(ended):
            cache.batch_select_indices(keep)  # type: ignore[union-attr]
    return [done[row] for row in range(batch)]


@torch.inference_mode()
def generate(model: object, tokenizer: object, options: GenerateOptions, checker: CopyChecker | None = None) -> list[Sample]:
    """`options.n` posts; copies of training posts are replaced by fresh draws unless `keep_copies`."""
    options.validate()
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    prompt = _prompt(options)
    prompt_ids = _inputs(tokenizer, prompt, device)
    generator = _generator(device, options.seed)
    settings = _sampling(model, tokenizer, options, generator)
    stops = set(settings["eos_token_id"])  # type: ignore[arg-type]
    kept: list[Sample] = []
    copies: list[Sample] = []
    with _global_random_state(device, generator, needed=not options.fast_sampling):
        copy_rounds = 0
        # Draw until n posts are kept; only rounds that produced copies (or nothing) count against
        # `attempts`, so a bot that keeps copying gives up instead of looping forever.
        while len(kept) < options.n and copy_rounds < options.attempts:
            need = options.n - len(kept)
            copies_before, kept_before = len(copies), len(kept)
            batch = min(options.batch_size, max(need, 2 if checker else need))
            for row in draw_batch(model, prompt_ids, batch, settings, stops):
                raw, ended = _decode(tokenizer, row, stops)
                text, cut = finish_cut(prompt + raw)
                if not text:
                    continue
                ended = ended and not cut  # cut at the character limit: not ended
                sample = Sample(text, bool(checker and checker.copies(text)), prompt, ended)
                (copies if sample.copied and not options.keep_copies else kept).append(sample)
            copy_rounds += len(copies) > copies_before or len(kept) == kept_before  # copies, or only empty posts
    return kept[: options.n]


def stream(model: object, tokenizer: object, options: GenerateOptions, checker: CopyChecker | None = None) -> Iterator[Partial]:
    """One post, token by token (for a UI). The last `Partial` is `done` and says whether the post copies."""
    from transformers import TextIteratorStreamer

    options.validate()
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    prompt = _prompt(options)
    prompt_ids = _inputs(tokenizer, prompt, device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)  # type: ignore[arg-type]
    generator = _generator(device, options.seed)  # here: an unseeded stream's seed comes from the caller's random state
    settings = _sampling(model, tokenizer, options, generator)
    errors: list[BaseException] = []
    halt = threading.Event()  # set when the reader is done: at the character limit, or it stopped reading

    def work() -> None:
        try:
            with torch.inference_mode(), _global_random_state(device, generator, needed=not options.fast_sampling):
                model.generate(  # type: ignore[attr-defined]
                    prompt_ids, attention_mask=torch.ones_like(prompt_ids), streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_Halt(halt)]), **settings,
                )
        except BaseException as e:  # surfaced in the caller's thread below
            errors.append(e)
            streamer.end()

    thread = threading.Thread(target=work, name="huggingtweets-stream", daemon=True)
    thread.start()
    text = prompt
    try:
        for piece in streamer:
            text += piece
            if len(text.strip()) > MAX_CHARACTERS:
                break
            yield Partial(printable(text).strip())
    finally:
        # Also when the caller stops reading early: generation ends at its next token instead of running on
        # (into the next stream on the same model), and the thread is gone before this returns.
        halt.set()
        thread.join()
    if errors:
        raise errors[0]
    final = finish(text)
    yield Partial(final, done=True, copied=bool(checker and checker.copies(final)))
