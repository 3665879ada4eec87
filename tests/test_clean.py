"""Cleaning rules, the counts they leave, and the table of counts."""

from __future__ import annotations

import pytest

from huggingtweets.clean import CleanOptions, Counts, clean, clean_text, table, word_count
from huggingtweets.posts import Post
from huggingtweets.sources.files import load_file

from conftest import ARCHIVE


def P(text: str, **kw: object) -> Post:
    return Post(text=text, author=str(kw.pop("author", "alice")), **kw)  # type: ignore[arg-type]


def texts(posts: list[Post]) -> list[str]:
    return [p.text for p in posts]


def check_sum(c: Counts) -> None:
    assert c.read == c.retweets + c.replies + c.short + c.duplicates + c.low_engagement + c.kept


def test_retweets_dropped_and_counted() -> None:
    posts = [P("RT @bob: something he said first", is_retweet=True), P("my own words here"), P("RT @x: more words here", is_retweet=True)]
    result = clean(posts)
    assert texts(result.posts) == ["my own words here"]
    assert result.counts.retweets == 2 and result.counts.kept == 1
    kept = clean(posts, CleanOptions(keep_retweets=True))
    assert kept.counts.retweets == 0 and kept.counts.kept == 3


def test_replies_dropped_and_counted_unless_kept() -> None:
    posts = [P("@bob yes I think so too", is_reply=True), P("my own words here"), P("agreed with all of that", is_reply=True)]
    result = clean(posts)
    assert texts(result.posts) == ["my own words here"]
    assert result.counts.replies == 2
    kept = clean(posts, CleanOptions(keep_replies=True))
    assert texts(kept.posts) == ["@bob yes I think so too", "my own words here", "agreed with all of that"]
    assert kept.counts.replies == 0 and kept.counts.kept == 3


def test_urls_removed() -> None:
    result = clean([P("look at this https://t.co/AbC123 and www.example.com/page now")])
    assert texts(result.posts) == ["look at this and now"]
    kept = clean([P("look at this https://t.co/AbC123")], CleanOptions(remove_urls=False))
    assert texts(kept.posts) == ["look at this https://t.co/AbC123"]


def test_html_entities_unescaped() -> None:
    result = clean([P("fish &amp; chips &lt;3 &gt; salad")])
    assert texts(result.posts) == ["fish & chips <3 > salad"]
    raw = clean([P("fish &amp; chips &lt;3")], CleanOptions(unescape_html=False))
    assert texts(raw.posts) == ["fish &amp; chips &lt;3"]



def test_plain_text_sources_are_not_unescaped_twice() -> None:
    from huggingtweets.sources.html import html_to_text

    # On Mastodon, typing "&lt;3" gives HTML "&amp;lt;3": the fetched text holds what was typed, and keeps it.
    typed = html_to_text("<p>writing &amp;lt;3 in HTML</p>")
    assert typed == "writing &lt;3 in HTML"
    for source in ("mastodon", "bluesky"):
        assert texts(clean([P(typed, source=source)]).posts) == [typed]
    assert texts(clean([P(typed, source="x-archive")]).posts) == ["writing <3 in HTML"]  # X's own escaping goes


def test_whitespace_collapsed() -> None:
    result = clean([P("  first line\n\nsecond   line\tand\r\nthird  ")])
    assert texts(result.posts) == ["first line second line and third"]


def test_short_posts_dropped_not_counting_urls_mentions_hashtags() -> None:
    assert word_count("@bob #tag https://x.co/a two words") == 2
    posts = [
        P("@bob @carol #tag #more https://t.co/x two words"),  # 2 real words
        P("only #one"),
        P("https://t.co/abc"),
        P("exactly three words"),
    ]
    result = clean(posts, CleanOptions(keep_replies=True))
    assert texts(result.posts) == ["exactly three words"]
    assert result.counts.short == 3
    # min_words is the threshold.
    assert clean(posts, CleanOptions(min_words=4)).counts.short == 4
    assert clean(posts, CleanOptions(min_words=2)).counts.short == 2


def test_duplicates_dropped() -> None:
    posts = [P("the same words again"), P("The  same words again "), P("different words entirely"), P("the same words again")]
    result = clean(posts)
    assert texts(result.posts) == ["the same words again", "different words entirely"]
    assert result.counts.duplicates == 2
    everything = clean(posts, CleanOptions(drop_duplicates=False))
    assert everything.counts.duplicates == 0 and everything.counts.kept == 4


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("keep", "@bob and @carol@mastodon.social said hi to me@example.com"),
        ("strip", "and said hi to me@example.com"),
        ("mask", "@user and @user said hi to me@example.com"),
    ],
)
def test_mentions(mode: str, expected: str) -> None:
    text = "@bob and @carol@mastodon.social said hi to me@example.com"
    assert clean_text(text, CleanOptions(mentions=mode)) == expected  # type: ignore[arg-type]
    result = clean([P(text, is_reply=True)], CleanOptions(keep_replies=True, mentions=mode))  # type: ignore[arg-type]
    assert texts(result.posts) == [expected]


def test_lowercase() -> None:
    result = clean([P("Shouting In CAPITALS @Bob")], CleanOptions(lowercase=True, mentions="mask"))
    assert texts(result.posts) == ["shouting in capitals @user"]
    assert texts(clean([P("Shouting In CAPITALS")]).posts) == ["Shouting In CAPITALS"]


def test_engagement_percentile_keeps_top_posts() -> None:
    posts = [P(f"post number {i} here", likes=i, reposts=0) for i in range(20)]
    posts.append(P("post with reposts only", likes=None, reposts=40))
    result = clean(posts, CleanOptions(min_engagement_percentile=80))
    kept_scores = sorted((p.likes or 0) + (p.reposts or 0) for p in result.posts)
    dropped_scores = sorted(
        (p.likes or 0) + (p.reposts or 0) for p in posts if p.text not in set(texts(result.posts))
    )
    # Every kept post scores at least as high as every dropped one, and about the top fifth is kept.
    assert min(kept_scores) > max(dropped_scores)
    # Scores 0..19 and 40: the 80th percentile (linear, as numpy computes it) is 16, and a post at it is kept.
    assert kept_scores == [16, 17, 18, 19, 40]
    assert "post with reposts only" in texts(result.posts)
    assert result.counts.low_engagement == len(posts) - len(result.posts)
    check_sum(result.counts)
    # Without the option nothing is dropped for engagement.
    assert clean(posts).counts.low_engagement == 0


def test_counts_add_up_and_characters() -> None:
    posts = [
        P("RT @bob: a retweet of his", is_retweet=True),
        P("@bob a reply to bob here", is_reply=True),
        P("too short"),
        P("a perfectly fine post"),
        P("a perfectly fine post"),
        P("another fine post &amp; more https://t.co/x"),
    ]
    result = clean(posts)
    c = result.counts
    assert (c.read, c.retweets, c.replies, c.short, c.duplicates, c.kept) == (6, 1, 1, 1, 1, 2)
    check_sum(c)
    assert c.characters == sum(len(t) for t in texts(result.posts)) == len("a perfectly fine post") + len("another fine post & more")
    assert c.account == "alice"
    assert clean(posts, account="named").counts.account == "named"


def test_table_markdown_with_total_row() -> None:
    a = clean([P("one fine post here", author="alice"), P("two fine posts here", author="alice"), P("RT @z: x y z", is_retweet=True, author="alice")])
    b = clean([P("bob writes this post", author="bob"), P("short", author="bob")])
    out = table([a.counts, b.counts])
    lines = out.splitlines()
    assert lines[0].startswith("| account |") and "low engagement" in lines[0]
    assert set(lines[1]) <= set("|-:")
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert [r[0] for r in rows] == ["alice", "bob", "total"]
    for row in rows:
        assert len(row) == len(header)
    by_name = {r[0]: dict(zip(header, r)) for r in rows}
    for column in header[1:]:
        assert int(by_name["total"][column]) == int(by_name["alice"][column]) + int(by_name["bob"][column])
    total = by_name["total"]
    parts = ("retweets", "replies", "short", "duplicates", "low engagement", "kept")
    assert int(total["read"]) == sum(int(total[p]) for p in parts) == 5
    assert (int(total["kept"]), int(total["retweets"]), int(total["short"])) == (3, 1, 1)
    # One account: no total row.
    single = a.table().splitlines()
    assert len(single) == 3 and "total" not in a.table()


def test_real_archive_default_leaves_little_and_replies_leave_plenty() -> None:
    posts = load_file(ARCHIVE)
    default = clean(posts)
    check_sum(default.counts)
    originals = sum(1 for p in posts if not p.is_retweet and not p.is_reply)
    assert default.counts.retweets == sum(p.is_retweet for p in posts)
    assert default.counts.replies == sum(p.is_reply for p in posts)
    assert default.counts.kept <= originals < 50
    assert default.counts.characters < 6_000  # too little to train on
    with_replies = clean(posts, CleanOptions(keep_replies=True))
    check_sum(with_replies.counts)
    assert with_replies.counts.replies == 0
    assert with_replies.counts.kept > 1_000
    assert with_replies.counts.characters > 40_000
    for p in with_replies.posts:
        assert "https://" not in p.text and "\n" not in p.text and "&amp;" not in p.text
        assert word_count(p.text) >= 3
    assert len({p.text.lower() for p in with_replies.posts}) == len(with_replies.posts)
