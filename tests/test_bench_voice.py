"""The voice figures of issue 22 on posts small enough to count by hand, and how the report judges and shows them."""

from __future__ import annotations

import pytest

from huggingtweets.bench import markdown, targets
from huggingtweets.bench.quality import distinct, duplicate_share, ngrams, repeated_ngram_share, repeats_ngram, voice


def test_ngrams_are_runs_of_whitespace_separated_words_within_one_post():
    assert ngrams("a  b\tc\nd", 2) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert ngrams("a b", 3) == [] and ngrams("", 1) == []


def test_distinct_counts_unique_ngrams_over_the_whole_batch():
    posts = ["a b a", "b c"]
    # unigrams a b a b c: 3 unique of 5; bigrams (a b) (b a) (b c): none repeated (none spans two posts).
    assert distinct(posts, 1) == pytest.approx(3 / 5)
    assert distinct(posts, 2) == 1.0
    # (a b) (b a) (a b): 2 unique of 3; the same post twice in a batch halves distinct-2.
    assert distinct(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct(["x y", "x y"], 2) == 0.5
    assert distinct(["one", "two"], 2) is None  # no post has two words: nothing to count


def test_a_post_repeats_a_4gram_only_when_four_words_in_a_row_come_back():
    assert repeats_ngram("x y z w x y z w")  # xyzw, yzwx, zwxy, wxyz, xyzw
    assert not repeats_ngram("a b c a b c")  # a 3-word run twice is not a 4-gram twice: abca, bcab, cabc
    assert not repeats_ngram("a a a")  # too short for any 4-gram
    assert repeats_ngram("a a a a a")  # aaaa twice
    posts = ["x y z w x y z w", "a b c a b c", "a a a a a", "hello"]
    assert repeated_ngram_share(posts) == 0.5
    assert repeated_ngram_share([]) is None


def test_exact_duplicates_count_every_copy_and_nothing_else():
    assert duplicate_share(["hi", "hi", "yo", "Hi"]) == 0.5  # both "hi" count; "Hi" differs in case
    assert duplicate_share(["a", "a", "a", "b", "c"]) == pytest.approx(3 / 5)
    assert duplicate_share(["a", "b"]) == 0.0 and duplicate_share([]) is None


def test_voice_puts_the_bot_batch_beside_as_many_of_the_persons_posts():
    bot = ["aa bb", "aa bb", "cc dd ee ff cc dd ee ff"]  # 5, 5 and 23 characters
    person = ["p q r", "one two three four", "s", "t u", "v w p y z a", "hello there"]  # 5, 18, 1, 3, 11, 11 characters
    got = voice(bot, [True, True, False], person)
    assert got["posts"] == 3 and got["person_posts"] == 6
    assert got["median_characters"] == 5  # sorted 5 5 23
    # Of an even count the upper middle, as the report's other medians: sorted 1 3 5 11 11 18, the fourth.
    assert got["person_median_characters"] == 11
    assert got["length_ratio"] == pytest.approx(5 / 11)
    assert got["ended_share"] == pytest.approx(2 / 3)
    # words aa bb aa bb cc dd ee ff cc dd ee ff: 6 unique of 12; bigrams 1 + 1 + 7 = 9 of which (aa bb) (cc dd) (dd ee) (ee ff) repeat: 5 unique.
    assert got["distinct_1"] == 0.5 and got["distinct_2"] == pytest.approx(5 / 9)
    assert got["repeated_4gram_share"] == pytest.approx(1 / 3) and got["duplicate_share"] == pytest.approx(2 / 3)
    # The person's side: 3 of the 6 posts spread evenly (the 1st, 3rd and 5th), p q r / s / v w p y z a.
    sample = got["person_sample"]
    assert sample["posts"] == 3
    assert sample["distinct_1"] == pytest.approx(9 / 10)  # p twice among 10 words
    assert sample["distinct_2"] == 1.0 and sample["repeated_4gram_share"] == 0.0 and sample["duplicate_share"] == 0.0


def test_voice_of_an_empty_batch_is_unmeasured_not_an_error():
    got = voice([], [], ["a b"])
    assert got["median_characters"] is None and got["length_ratio"] is None and got["ended_share"] is None
    assert got["distinct_1"] is None and got["person_sample"]["posts"] == 0


@pytest.mark.parametrize("ended, ratio, passed", [
    (0.9, 0.75, (True, True)), (0.95, 1.25, (True, True)), (0.89, 0.74, (False, False)), (1.0, 1.26, (True, False)),
])
def test_the_voice_targets(ended, ratio, passed):
    report = {"voice": {"ended_share": ended, "length_ratio": ratio}}
    by_id = {t["id"]: t for t in targets(report)}
    assert (by_id["voice_ended"]["passed"], by_id["voice_length"]["passed"]) == passed
    assert by_id["voice_ended"]["note"] == by_id["voice_length"]["note"] == ""
    quick = {t["id"]: t for t in targets({**report, "quick": True})}
    assert quick["voice_length"]["note"].startswith("quick:")  # a bot of a few posts says nothing of its voice


def test_no_voice_measured_no_verdict_and_no_rows():
    by_id = {t["id"]: t for t in targets({})}
    assert by_id["voice_ended"]["passed"] is None and by_id["voice_length"]["passed"] is None
    assert "| voice |" not in markdown({"targets": targets({}), "throughput": {}})


def test_the_voice_rows_of_the_table():
    report = {"throughput": {}, "voice": voice(["aa bb", "aa bb", "cc dd ee ff cc dd ee ff"], [True, True, False],
                                               ["p q r", "one two three four", "s", "t u", "v w p y z a", "hello there"])}
    printed = markdown({**report, "targets": targets(report)})
    assert "| voice | median characters, bot / training posts (ratio) | 5 / 11 (0.455) | 0.75–1.25 × the person's | **fail** |" in printed
    assert "| voice | bot posts ended before the token limit (3 posts) | 66.7% | ≥ 90% | **fail** |" in printed
    assert "| voice | distinct-1 / distinct-2 over the batch (the person's, 3 of their posts) | 0.5 / 0.556 (0.9 / 1) |" in printed
    assert "| voice | posts repeating a word 4-gram / exact duplicates in the batch (the person's) | 33.3% / 66.7% (0.0% / 0.0%) |" in printed
