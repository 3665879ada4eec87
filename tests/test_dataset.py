"""Posts → training blocks: the chronological split, the text checks, balancing and packing."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from huggingtweets.clean import CleanOptions, clean
from huggingtweets.dataset import IGNORE, balance, build_blocks, check_enough_text, frame, markers, pack, split_posts
from huggingtweets.errors import HuggingTweetsError, TooLittleText
from huggingtweets.posts import Post
from huggingtweets.sources.files import load_file

from conftest import ARCHIVE, make_posts

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def dated(n: int) -> list[Post]:
    return [Post(text=f"post number {i}", id=str(i), created_at=START + timedelta(hours=i)) for i in range(n)]


def tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


# ---------------------------------------------------------------- split


def test_split_holds_out_newest_tenth_even_when_shuffled() -> None:
    posts = dated(50)
    shuffled = posts[:]
    random.Random(3).shuffle(shuffled)
    split = split_posts(shuffled)
    assert len(split.validation) == 5 and len(split.train) == 45
    assert {p.id for p in split.validation} == {str(i) for i in range(45, 50)}
    assert max(p.created_at for p in split.train) < min(p.created_at for p in split.validation)  # type: ignore[type-var]
    assert sorted(p.id for p in split.train + split.validation) == sorted(p.id for p in posts)
    assert split.validation_texts == [f"post number {i}" for i in range(45, 50)]


def test_split_mixed_offsets_sorts_by_instant() -> None:
    # "w" reads later on the wall clock (20:00) but is 08:00 UTC; "n" reads 14:00 but is 09:00 UTC, the newest.
    posts = dated(8) + [
        Post(text="wall-clock latest", id="w", created_at=datetime(2024, 1, 1, 20, 0, tzinfo=timezone(timedelta(hours=12)))),
        Post(text="newest", id="n", created_at=datetime(2024, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=5)))),
    ]
    split = split_posts(list(reversed(posts)))
    assert [p.id for p in split.validation] == ["n"]


def test_split_without_dates_keeps_order_and_holds_out_last() -> None:
    posts = [Post(text=t) for t in make_posts(30)]
    split = split_posts(posts)
    assert split.train + split.validation == posts
    assert len(split.validation) == 3


def test_split_holds_out_the_newest_dated_posts_when_some_have_no_date() -> None:
    # Newest first, as exports list them, with two posts whose date could not be read.
    posts = list(reversed(dated(30)))
    posts.insert(3, Post(text="undated one", id="u1"))
    posts.append(Post(text="undated two", id="u2"))
    split = split_posts(posts)
    assert [p.id for p in split.validation] == ["27", "28", "29"]  # not the oldest, which come last in the file
    assert [p.id for p in split.train[:2]] == ["u1", "u2"]


def test_times_in_common_export_formats() -> None:
    from huggingtweets.posts import parse_time

    expected = datetime(2022, 11, 3, 8, 50, 26, tzinfo=timezone.utc)
    for value in ("2022-11-03T08:50:26Z", "2022-11-03 08:50:26 UTC", "2022-11-03 08:50:26", "1667465426", 1667465426, 1667465426.0):
        assert parse_time(value) == expected, value
    for value in ("yesterday", "", None, True, 1e300, float("nan"), "12:00", "²"):
        assert parse_time(value) is None, value
    assert parse_time("20221103") == datetime(2022, 11, 3, tzinfo=timezone.utc)  # compact ISO, not seconds since 1970
    assert Post.from_dict({"text": "a JSONL line", "created_at": 1667465426}).created_at == expected


def test_split_small_and_invalid() -> None:
    assert len(split_posts(dated(10)).validation) == 1
    assert split_posts(dated(12), validation_share=0).validation == []
    with pytest.raises(HuggingTweetsError):
        split_posts(dated(12), validation_share=1.0)


# ---------------------------------------------------------------- enough text


def test_check_enough_text_refuses_under_minimum_with_numbers() -> None:
    posts = [Post(text="x" * 100) for _ in range(59)]  # 5,900 characters
    with pytest.raises(TooLittleText) as info:
        check_enough_text(posts)
    message = str(info.value)
    assert "59 posts" in message and "5,900" in message and "6,000" in message
    assert "\n" not in message
    assert isinstance(info.value, HuggingTweetsError)


def test_check_enough_text_warns_under_40000() -> None:
    warning = check_enough_text([Post(text="x" * 100) for _ in range(60)])  # exactly 6,000
    assert warning is not None and "6,000" in warning and "40,000" in warning
    assert check_enough_text([Post(text="x" * 1000) for _ in range(39)]) is not None
    assert check_enough_text([Post(text="x" * 1000) for _ in range(40)]) is None
    # The minimum can be lowered.
    assert check_enough_text([Post(text="x" * 100)], minimum=50) is not None


def test_real_archive_too_little_without_replies() -> None:
    posts = load_file(ARCHIVE)
    with pytest.raises(TooLittleText):
        check_enough_text(clean(posts).posts)
    assert check_enough_text(clean(posts, CleanOptions(keep_replies=True)).posts) is None


# ---------------------------------------------------------------- balance


def test_balance_repeats_smaller_accounts() -> None:
    big = [Post(text="b" * 100, author="big") for _ in range(30)]  # 3,000 characters
    small = [Post(text="s" * 100, author="small") for _ in range(10)]  # 1,000
    middle = [Post(text="m" * 100, author="middle") for _ in range(20)]  # 2,000
    mixed = balance([big, small, middle])
    by_author = {a: sum(1 for p in mixed if p.author == a) for a in ("big", "small", "middle")}
    assert by_author == {"big": 30, "small": 30, "middle": 40}  # 3,000 / 2,000 rounds to 2 repeats
    assert balance([big]) == big
    assert balance([big, []]) == big
    assert balance([]) == []


# ---------------------------------------------------------------- blocks


def check_blocks(blocks, sequences: list[list[int]], block_size: int) -> None:  # type: ignore[no-untyped-def]
    """Every sequence appears whole in one block, labelled on all but its start; the rest is padding."""
    ids, att, lab = blocks.input_ids.tolist(), blocks.attention_mask.tolist(), blocks.labels.tolist()
    assert blocks.input_ids.shape[1] == block_size
    remaining = sorted(tuple(s[:block_size]) for s in sequences)
    found = []
    for row_ids, row_att, row_lab in zip(ids, att, lab):
        used = sum(row_att)
        # Real tokens first, then only padding: attention 0 and label -100.
        assert row_att == [1] * used + [0] * (block_size - used)
        assert all(l == IGNORE for l in row_lab[used:])
        # Labels are the inputs except at the start of each post.
        starts = [i for i in range(used) if row_lab[i] == IGNORE]
        assert starts and starts[0] == 0
        for i in range(used):
            if i not in starts:
                assert row_lab[i] == row_ids[i]
        bounds = starts + [used]
        for a, b in zip(bounds, bounds[1:]):
            found.append(tuple(row_ids[a:b]))
    assert sorted(found) == remaining


def test_build_blocks_llama_end_tokens_keep_labels(tiny_llama: Path) -> None:
    tok = tokenizer(tiny_llama)
    start, end = markers(tok)
    assert tok.pad_token_id == end and start != end  # the case that bites: pad == eos
    texts = make_posts(120, seed=5)
    block_size = 64
    blocks = build_blocks(texts, tok, block_size=block_size)
    sequences = [frame(tok, t) for t in texts]
    assert all(s[0] == start and s[-1] == end and len(s) <= block_size for s in sequences)
    assert len(blocks) < len(texts)  # posts really are packed several to a block
    check_blocks(blocks, sequences, block_size)
    ids, att, lab = blocks.input_ids, blocks.attention_mask, blocks.labels
    # Every post's end token is labelled, although it is also the padding id.
    assert int(((ids == end) & (att == 1) & (lab == end)).sum()) == len(texts)
    # No start token is labelled.
    assert int(((ids == start) & (lab != IGNORE)).sum()) == 0
    assert int((ids == start).sum()) == len(texts)
    # Padding holds the pad id, no attention and no label.
    assert bool((ids[att == 0] == tok.pad_token_id).all()) and bool((lab[att == 0] == IGNORE).all())
    assert blocks.trained_tokens == sum(len(s) - 1 for s in sequences)
    assert blocks.stats["posts"] == len(texts) and blocks.stats["tokens"] == sum(len(s) for s in sequences)
    assert blocks.truncated_posts == 0
    item = blocks[0]
    # Positions instead of an attention mask: transformers then keeps each post to itself (see the test below).
    assert set(item) == {"input_ids", "position_ids", "labels"} and item["input_ids"].shape == (block_size,)
    assert item["position_ids"].shape == (block_size,) and int(item["position_ids"][0]) == 0
    rows = blocks[:]  # a slice gives a batch of rows, as the bench's own loops take them
    assert set(rows) == set(item) and rows["input_ids"].shape == ids.shape and bool((rows["labels"] == lab).all())


def test_build_blocks_gpt2_without_pad_token(tiny_gpt2: Path) -> None:
    tok = tokenizer(tiny_gpt2)
    assert tok.pad_token_id is None and tok.bos_token_id == tok.eos_token_id
    start, end = markers(tok)
    assert start == end
    texts = make_posts(80, seed=6)
    blocks = build_blocks(texts, tok, block_size=96)
    sequences = [frame(tok, t) for t in texts]
    assert blocks.truncated_posts == 0 and len(blocks) < len(texts)
    check_blocks(blocks, sequences, 96)
    ids, att, lab = blocks.input_ids, blocks.attention_mask, blocks.labels
    # Each post gives one unlabelled start and one labelled end, both the same id.
    real = att == 1
    assert int(((ids == end) & real & (lab == end)).sum()) == len(texts)
    assert int(((ids == end) & real & (lab == IGNORE)).sum()) == len(texts)
    assert bool((lab[att == 0] == IGNORE).all())


def test_build_blocks_truncates_long_posts(tiny_llama: Path) -> None:
    tok = tokenizer(tiny_llama)
    long_text = " ".join(make_posts(20, seed=9))
    blocks = build_blocks([long_text, "a short post"], tok, block_size=16)
    assert blocks.truncated_posts == 1
    assert len(frame(tok, long_text)) > 16
    check_blocks(blocks, [frame(tok, long_text), frame(tok, "a short post")], 16)
    with pytest.raises(HuggingTweetsError):
        build_blocks(["x y z"], tok, block_size=4)


def test_real_archive_padding_share_small(tiny_llama: Path) -> None:
    tok = tokenizer(tiny_llama)
    texts = [p.text for p in clean(load_file(ARCHIVE), CleanOptions(keep_replies=True)).posts]
    # The tiny tokenizer (300 byte-level tokens) makes posts about 2.5 times as long as SmolLM2's does,
    # so a block of 256 here is like the default 128 there.
    blocks = build_blocks(texts, tok, block_size=256)
    assert blocks.padding_share < 0.02
    sequences = [frame(tok, t) for t in texts]
    check_blocks(blocks, sequences, 256)


# ---------------------------------------------------------------- pack


@pytest.mark.parametrize("seed", range(5))
def test_pack_never_overflows_and_keeps_each_sequence_once(seed: int) -> None:
    rng = random.Random(seed)
    block_size = 32
    sequences = [[0] * rng.randint(1, 40) for _ in range(rng.randint(1, 200))]
    bins = pack(sequences, block_size)
    flat = [i for b in bins for i in b]
    assert sorted(flat) == list(range(len(sequences)))
    for b in bins:
        assert b
        assert sum(min(len(sequences[i]), block_size) for i in b) <= block_size
        if any(len(sequences[i]) >= block_size for i in b):
            assert len(b) == 1


def test_pack_empty_and_exact() -> None:
    assert pack([], 8) == []
    bins = pack([[1] * 4, [1] * 4, [1] * 8], 8)
    assert len(bins) == 2 and sorted(map(sorted, bins)) == [[0, 1], [2]]
    # Sizes that fill three blocks exactly: first-fit decreasing finds that packing, not one post a block.
    sizes = [5, 3, 4, 4, 2, 6]
    bins = pack([[1] * n for n in sizes], 8)
    assert len(bins) == 3 and all(sum(sizes[i] for i in b) == 8 for b in bins)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_each_packed_post_is_seen_as_if_it_were_alone(request: pytest.FixtureRequest, family: str, attention: str) -> None:
    """A post's scores in a packed block are the scores it gets alone, framed as generation frames it: the posts
    packed before it are invisible and its positions start at 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = request.getfixturevalue(f"tiny_{family}")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention).eval()
    texts = make_posts(12, seed=5)
    data = build_blocks(texts, tokenizer, block_size=64)
    assert len(data) < len(texts)  # several posts share blocks
    with torch.no_grad():
        # No KV cache, as in training and evaluation: with one, transformers does not look for packed posts.
        packed = model(**{k: v for k, v in data.inputs(slice(0, len(data))).items() if k != "labels"}, use_cache=False).logits
        compared = 0
        for text in texts:
            alone = model(input_ids=torch.tensor([frame(tokenizer, text)])).logits[0]
            ids = torch.tensor(frame(tokenizer, text))
            for b in range(len(data)):  # find the post in its block
                row = data.input_ids[b]
                for at in range(len(row) - len(ids) + 1):
                    if data.position_ids[b, at] == 0 and torch.equal(row[at : at + len(ids)], ids):
                        torch.testing.assert_close(packed[b, at : at + len(ids)], alone, atol=1e-4, rtol=1e-4)
                        compared += 1
                        break
                else:
                    continue
                break
    assert compared == len(texts)
    # A post beyond the first of its block: positions restart at its start marker (the unlabelled one, where the end
    # marker is the same token, as in GPT-2).
    start, _ = markers(tokenizer)
    later = [
        (b, t) for b in range(len(data)) for t in range(1, 64)
        if data.input_ids[b, t] == start and data.attention_mask[b, t] == 1 and data.labels[b, t] == IGNORE
    ]
    assert later and all(data.position_ids[b, t] == 0 for b, t in later)


def test_the_old_framing_lever_lets_each_post_see_the_posts_before_it(tiny_llama: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    texts = make_posts(40, seed=5)
    isolated, old = build_blocks(texts, tokenizer, 64), build_blocks(texts, tokenizer, 64, isolate=False)
    # The same tokens and labels; only where each post's positions start differs.
    assert torch.equal(isolated.input_ids, old.input_ids) and torch.equal(isolated.labels, old.labels)
    assert torch.equal(old.position_ids, torch.arange(64).repeat(len(old), 1))
    assert not torch.equal(isolated.position_ids, old.position_ids)
    # A block of several posts: under the old framing the later posts are predicted from the earlier ones too.
    row = next(i for i in range(len(isolated)) if int((isolated.position_ids[i] == 0).sum()) >= 3)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        logits = [model(**blocks.inputs(slice(row, row + 1))).logits[0] for blocks in (isolated, old)]
    second = int((isolated.position_ids[row] == 0).nonzero()[1])  # where the block's second post starts
    first_apart = float((logits[0][:second] - logits[1][:second]).abs().max())
    later_apart = float((logits[0][second:] - logits[1][second:]).abs().max())
    assert first_apart < 1e-5 < later_apart, (first_apart, later_apart)  # the first post sees only itself in both


def test_the_framing_lever_reaches_training_and_its_fingerprint() -> None:
    from dataclasses import replace

    from huggingtweets.train import TrainConfig, run_fingerprint

    default = TrainConfig()
    assert not default.isolate_posts  # posts packed together: measured to end the bot's posts more reliably
    assert run_fingerprint(default, "b", ["a"], ["v"]) != run_fingerprint(replace(default, isolate_posts=True), "b", ["a"], ["v"])
