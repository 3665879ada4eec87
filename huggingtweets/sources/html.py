"""Mastodon status HTML to plain text, with the standard library's `html.parser`.

Mastodon sends each status as a small HTML fragment:

    <p>Hi <span class="h-card"><a href="https://m.s/@bob" class="u-url mention">@<span>bob</span></a></span></p>
    <p>see <a href="https://example.com/a/long/path"><span class="invisible">https://</span>
       <span class="ellipsis">example.com/a/lo</span><span class="invisible">ng/path</span></a><br>bye &amp; thanks</p>

which reads as "Hi @bob\n\nsee https://example.com/a/long/path\nbye & thanks". The text of every element is kept,
including the "invisible" spans, because together they spell the full link that the "ellipsis" span abbreviates.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Elements that start a new block of text: paragraphs (a blank line before and after) and lines (a line break before).
_PARAGRAPHS = {"p", "blockquote", "pre", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6"}
_LINES = {"li", "div"}
_VOID = {"br", "img", "hr", "wbr", "input", "meta", "link", "source"}


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities (&amp; &#39; ...) come back unescaped
        self.parts: list[str] = []
        self.pre = 0  # inside <pre>: keep whitespace as it is
        self.skip = 0  # inside an element whose text is not part of the post

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self.skip or "quote-inline" in classes:
            # Mastodon 4.4+ repeats a quoted post's link in a hidden `<p class="quote-inline">RE: ...</p>`
            # for old clients; the quote is not something the author wrote.
            if tag not in _VOID:
                self.skip += 1
            return
        if tag == "br":
            self.parts.append("\n")
        elif tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        elif tag in _LINES:
            self.parts.append("\n")
        if tag == "pre":
            self.pre += 1

    def handle_endtag(self, tag: str) -> None:
        if self.skip:
            self.skip -= 1
            return
        if tag in _PARAGRAPHS:
            self.parts.append("\n\n")
        if tag == "pre" and self.pre:
            self.pre -= 1

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        # Outside <pre>, line breaks in the HTML source are just spaces, as a browser shows them.
        self.parts.append(data if self.pre else re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(html: str) -> str:
    """The text a reader sees in a status: paragraphs as blank lines, `<br>` as line breaks, links as written."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    # Spaces around the line breaks come from the HTML source's indentation, not from the author.
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
