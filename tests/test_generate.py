"""Generation and the memorisation check, on a tiny trained bot."""

from __future__ import annotations

from pathlib import Path

import pytest

from huggingtweets.bot import Bot
from huggingtweets.clean import CleanOptions
from huggingtweets.corpus import build_corpus
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.generate import MAX_CHARACTERS, finish, finish_cut
from huggingtweets.memorisation import CopyChecker, fingerprints, words
from huggingtweets.train import TrainConfig

TRAINING = [
    "the quick brown fox jumps over the lazy dog every single morning",
    "short post here",
]


def test_an_eight_word_run_is_a_copy_whatever_the_punctuation_and_case():
    checker = CopyChecker.from_texts(TRAINING)
    assert checker.copies("Yesterday THE quick, brown fox jumps over the lazy dog!")
    assert not checker.copies("the quick brown fox jumps over a lazy dog")  # 7-word runs only
    assert checker.copies("Short post, here.")  # a short post counts when it is the whole training post
    assert not checker.copies("short post here again")
    assert checker.rate(["short post here", "something else entirely new"]) == 0.5


def test_the_check_is_stored_as_hashes_not_text(tmp_path: Path):
    checker = CopyChecker.from_texts(TRAINING)
    checker.save(tmp_path / "ngrams.bin")
    data = (tmp_path / "ngrams.bin").read_bytes()
    assert b"fox" not in data and len(data) == 8 * len(checker.hashes)
    loaded = CopyChecker.load(tmp_path / "ngrams.bin")
    assert loaded.copies("the quick brown fox jumps over the lazy dog")
    assert words("It's @me #tag, ok") == ["it's", "@me", "#tag", "ok"]
    assert len(fingerprints(TRAINING[0])) == len(TRAINING[0].split()) - 8 + 1


def test_finish_keeps_posts_within_280_characters_at_a_word_boundary():
    long = "word " * 100
    cut = finish(long)
    assert len(cut) <= MAX_CHARACTERS and cut.endswith("word")
    assert finish("  hello  ") == "hello"
    # What a model's bytes can decode to: control characters and U+FFFD go, newlines and tabs stay.
    assert finish("a\x07b\x1cc\ufffd\r\nd\te\x7f") == "abc\nd\te" and finish("a \x1c\x07 b") == "a b"
    # One space stays where there was one, on either side; Unicode's line breaks become newlines; bidi overrides go,
    # and the joiner inside an emoji stays.
    assert finish("so \ufffdfire") == "so fire" and finish("so\x1c fire") == "so fire"
    assert finish("x\u2028y\u2029z") == "x\ny\nz" and finish("\u202eevil\u202c ok") == "evil ok"
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert finish(family) == family
    # Tidying is not cutting: a post that ended is still ended after its control characters go.
    assert finish_cut("hello\x07") == ("hello", False) and finish_cut(" a \x1c b ") == ("a b", False)
    assert finish_cut(long) == (cut, True)


@pytest.fixture(scope="module")
def bot(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Bot:
    from conftest import make_posts

    home = tmp_path_factory.mktemp("gen-home")
    source = home / "posts.txt"
    source.write_text("\n".join(make_posts(400)))
    corpus = build_corpus([str(source)], CleanOptions(), min_characters=1000)
    config = TrainConfig(method="full", epochs=3, learning_rate=3e-3, block_size=64)
    return Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=config, show_progress=False)


def test_posts_end_at_the_end_token_and_are_reproducible(bot: Bot):
    samples = bot.generate(n=12, seed=3, max_new_tokens=64)
    assert len(samples) == 12
    # The trained model ends most posts itself (its posts are 4-20 words long, well within 64 tokens).
    assert sum(s.ended for s in samples) >= 8
    for s in samples:
        assert s.text and len(s.text) <= MAX_CHARACTERS
        assert "<|im_end|>" not in s.text and "<|im_start|>" not in s.text
    assert [s.text for s in bot.generate(n=12, seed=3, max_new_tokens=64)] == [s.text for s in samples]
    assert [s.text for s in bot.generate(n=12, seed=4, max_new_tokens=64)] != [s.text for s in samples]


def test_prompt_starts_every_post(bot: Bot):
    for s in bot.generate(n=4, prompt="water sound", seed=0):
        assert s.text.startswith("water sound") and s.prompt == "water sound"


def test_more_posts_than_a_batch(bot: Bot):
    assert len(bot.generate(n=5, seed=0, batch_size=2)) == 5


def test_copies_are_marked_or_replaced(bot: Bot):
    first = bot.generate(n=6, seed=7)
    # Pretend those very posts were the training data: drawing again with the same seed copies them all.
    bot.checker, original = CopyChecker.from_texts(s.text for s in first), bot.checker
    try:
        marked = bot.generate(n=6, seed=7, keep_copies=True)
        assert [s.text for s in marked] == [s.text for s in first] and all(s.copied for s in marked)
        fresh = bot.generate(n=6, seed=7)
        assert all(not s.copied for s in fresh)
        assert not {s.text for s in fresh} & {s.text for s in first}
    finally:
        bot.checker = original


def test_the_voice_checks_copy_rate_is_the_bots_own_before_copies_are_redrawn(bot: Bot):
    from huggingtweets.bench.voice_check import _draws

    bias = bot.info["generation"]["end_bias"]
    first = bot.generate(n=6, seed=7, end_bias=bias)
    # Half of those posts made training posts: the same draw copies them, and the check must count them, not the
    # fresh posts generation would redraw in their place (a copy rate of 0 by construction).
    bot.checker, original = CopyChecker.from_texts(s.text for s in first[:3]), bot.checker
    try:
        expected = sum(bot.checker.copies(s.text) for s in first) / 6
        (draw,) = _draws(bot, bias, 6, (7,), [s.text for s in first], say=lambda _: None)
    finally:
        bot.checker = original
    assert expected >= 0.5 and draw["copy_rate"] == round(expected, 4)


def test_stream_yields_growing_text_and_a_final_verdict(bot: Bot):
    parts = list(bot.stream(prompt="the", seed=1, max_new_tokens=40))
    assert len(parts) >= 2 and parts[-1].done and parts[-1].copied is not None
    assert all(not p.done for p in parts[:-1])
    texts = [p.text for p in parts[:-1]]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert parts[-1].text.startswith("the")


@pytest.mark.parametrize("bad", [dict(n=0), dict(temperature=0.0), dict(top_p=1.5), dict(max_new_tokens=0), dict(seed=-1), dict(seed=2**64)])
def test_bad_generation_settings_are_refused(bot: Bot, bad):
    with pytest.raises(HuggingTweetsError):
        bot.generate(**{"n": 1, **bad})


def test_many_more_posts_than_batch_times_attempts(bot: Bot):
    assert len(bot.generate(n=11, seed=0, batch_size=2, attempts=1, max_new_tokens=24)) == 11


class _RowRule:
    """A deterministic logits processor whose choice depends only on a row's own tokens and the model's scores.

    The first new token is forced per row (rows are otherwise identical copies of one prompt); each row then
    ends after a length set by that first token, and until then takes the model's likeliest word other than the
    markers. So a row's tokens depend on its own prefix, never on which other rows share the batch. It records
    the batch size of every step and the scores the model gave each prefix (which a wrong KV cache would change).
    """

    def __init__(self, start: int, stop: int, firsts: list[int]) -> None:
        self.start, self.stop, self.firsts = start, stop, firsts
        self.sizes: list[int] = []
        self.seen: dict[tuple[int, ...], object] = {}

    def __call__(self, input_ids, scores):
        import torch

        self.sizes.append(input_ids.shape[0])
        new = input_ids.shape[1] - self.start
        out = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(input_ids.tolist()):
            self.seen[tuple(row)] = scores[i].clone()
            if new == 0:
                choice = self.firsts[i]
            elif new >= 3 + row[self.start] % 17:
                choice = self.stop
            else:
                masked = scores[i].clone()
                masked[[self.stop, self.firsts[0]]] = float("-inf")
                choice = int(masked.argmax())
            out[i, choice] = 0.0
        return out


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_ended_rows_leave_the_batch_without_changing_any_row(bot: Bot, monkeypatch: pytest.MonkeyPatch, cache: str):
    import torch
    from transformers import LogitsProcessorList

    from huggingtweets import generate as gen
    from huggingtweets.dataset import markers

    model, tokenizer = bot.model, bot.tokenizer
    start, stop = markers(tokenizer)
    prompt = torch.tensor([[start, *tokenizer("water", add_special_tokens=False)["input_ids"]]])
    firsts = [10 + 7 * i for i in range(12)]  # 12 rows ending after 3 to 19 new tokens
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop

    def settings(rule: _RowRule) -> dict[str, object]:
        return dict(do_sample=False, logits_processor=LogitsProcessorList([rule]), max_new_tokens=30, eos_token_id=[stop], pad_token_id=pad,
                    temperature=None, top_p=None, top_k=None)

    whole_rule = _RowRule(prompt.shape[1], stop, firsts)
    with torch.inference_mode():
        whole = model.generate(prompt.repeat(12, 1), attention_mask=torch.ones(12, prompt.shape[1], dtype=torch.long), **settings(whole_rule))
        monkeypatch.setattr(gen, "ROUND", 4)
        if cache == "static":  # as some models' generation_config asks: it cannot drop rows, so it is rebuilt each round
            monkeypatch.setattr(model.generation_config, "cache_implementation", "static")
        rule = _RowRule(prompt.shape[1], stop, firsts)
        rows = gen.draw_batch(model, prompt, 12, settings(rule), {stop})

    def upto_stop(ids: list[int]) -> list[int]:
        return ids[: ids.index(stop) + 1] if stop in ids else ids

    expected = [upto_stop(row) for row in whole[:, prompt.shape[1] :].tolist()]
    assert [upto_stop(row) for row in rows] == expected
    assert len({len(row) for row in expected}) > 3  # the rows really end at different lengths
    # Rows left between rounds: the batch shrank, and fewer row-steps were computed than in one call.
    assert rule.sizes[0] == 12 and rule.sizes[-1] < 12 and sorted(rule.sizes, reverse=True) == rule.sizes
    assert sum(rule.sizes) < sum(whole_rule.sizes)
    # Each prefix got the same scores in both runs, so every kept row continued from its own cache.
    later = [row for row in rule.seen if len(row) > prompt.shape[1] + 4]  # past the first round
    assert later and all(torch.allclose(rule.seen[row], whole_rule.seen[row], atol=1e-4) for row in later)


def test_unseeded_draws_differ_and_leave_the_callers_random_state_alone(bot: Bot):
    import torch

    assert [s.text for s in bot.generate(n=4, max_new_tokens=24)] != [s.text for s in bot.generate(n=4, max_new_tokens=24)]
    assert [p.text for p in bot.stream(max_new_tokens=24)][-1] != [p.text for p in bot.stream(max_new_tokens=24)][-1]
    # Seeded, with either sampler: the same posts, and the caller's random state as it was.
    for draw in (
        lambda: [s.text for s in bot.generate(n=2, seed=1, max_new_tokens=8)],
        lambda: [s.text for s in bot.generate(n=2, seed=1, max_new_tokens=8, fast_sampling=False)],
        lambda: [p.text for p in bot.stream(seed=1, max_new_tokens=8)],
    ):
        torch.manual_seed(5)
        expected = torch.rand(3)
        torch.manual_seed(5)
        first = draw()
        assert torch.equal(torch.rand(3), expected) and draw() == first
    # Unseeded, the caller's seed decides: torch.manual_seed before a call repeats it.
    for draw in (lambda: [s.text for s in bot.generate(n=3, max_new_tokens=24)], lambda: [p.text for p in bot.stream(max_new_tokens=24)]):
        torch.manual_seed(6)
        first = draw()
        torch.manual_seed(6)
        assert draw() == first


def test_a_stream_read_only_in_part_stops_generating(bot: Bot):
    import threading

    calls = []
    hook = bot.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        whole = list(bot.stream(seed=2, max_new_tokens=96))
        steps_for_the_whole_post = len(calls)
        assert steps_for_the_whole_post >= 10 and len(whole) >= 10  # long enough to stop in the middle
        calls.clear()
        before = set(threading.enumerate())
        parts = bot.stream(seed=2, max_new_tokens=96)
        next(parts)
        parts.close()  # the reader is gone (a UI closed, a loop broke out)
        assert set(threading.enumerate()) == before  # the generating thread is done...
        assert len(calls) < steps_for_the_whole_post // 2  # ...because it stopped, not because it wrote the post
    finally:
        hook.remove()


def test_prompts_are_text(bot: Bot):
    import torch

    from huggingtweets.dataset import markers
    from huggingtweets.generate import _inputs

    start, end = markers(bot.tokenizer)
    ids = _inputs(bot.tokenizer, "water <|im_end|> sound", torch.device("cpu"))[0].tolist()
    assert ids[0] == start and start not in ids[1:] and end not in ids  # the marker's name is spelled out
    # A trailing space is not a token the post goes on from: same posts as without it, and no double space.
    spaced = bot.generate(n=3, prompt="water sound ", seed=0, max_new_tokens=24)
    assert [s.text for s in spaced] == [s.text for s in bot.generate(n=3, prompt="water sound", seed=0, max_new_tokens=24)]
    assert not any(s.text.startswith("water sound  ") for s in spaced)  # where the prompt's space was


def test_rounds_pass_the_cache_by_the_installed_transformers_own_name(bot: Bot, monkeypatch: pytest.MonkeyPatch):
    """transformers 5.x renamed generate's `past_key_values` to `cache` (the old name goes in 6.0): each round hands
    the cache back under the name this transformers uses, so nothing here is deprecated, and 6.0 will not break it."""
    import warnings

    from huggingtweets import generate as gen

    monkeypatch.setattr(gen, "ROUND", 2)  # many rounds, each continuing from the cache of the one before
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        samples = bot.generate(n=4, seed=0, max_new_tokens=12)
    assert len(samples) == 4
