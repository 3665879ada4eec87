"""A second real archive for the voice measures (issue 22): @realDonaldTrump's tweets, from Debian.

Debian's package `r-cran-dslabs` (the R package dslabs, Artistic-2.0) ships the data set `trump_tweets`, 20,761
tweets from 2009 to 2018 with their times, counts and reply ids, inside R's lazy-load database
(`data/Rdata.rdx` indexes `data/Rdata.rdb`). This downloads the package with apt, reads the data set with the
`rdata` package (R's serialization format) and writes the newest posts as JSONL, which every command reads:

    python -m huggingtweets.bench.second_archive test-artifacts/trump.jsonl          # about 20 s, once
    huggingtweets bench --data test-artifacts/trump.jsonl --json test-artifacts/bench-trump.json

Needs apt-get and dpkg-deb (Debian, Ubuntu) and `pip install rdata` (in requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import HuggingTweetsError
from ..posts import Post

PACKAGE = "r-cran-dslabs"
DATA_SET = "trump_tweets"
DATA = "usr/lib/R/site-library/dslabs/data"
NEWEST = 1600  # about as many as the bundled archive keeps with replies: a default CPU training of a few minutes


def download(folder: Path) -> Path:
    """The package's .deb in `folder`, downloaded with `apt-get download` unless one is there already."""
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"{PACKAGE}_*.deb"))
    if found:
        return found[-1]
    if shutil.which("apt-get") is None:
        raise HuggingTweetsError(f"building the second archive needs apt-get (Debian or Ubuntu) to download {PACKAGE}")
    attempt = _apt(["apt-get", "download", PACKAGE], folder)
    if attempt.returncode != 0 and os.geteuid() == 0:  # a fresh machine has no package lists yet
        _apt(["apt-get", "update", "-qq"], folder)
        attempt = _apt(["apt-get", "download", PACKAGE], folder)
    found = sorted(folder.glob(f"{PACKAGE}_*.deb"))
    if attempt.returncode != 0 or not found:
        last = (attempt.stderr.strip().splitlines() or ["no message"])[-1]
        raise HuggingTweetsError(f"apt-get download {PACKAGE} failed: {last}")
    return found[-1]


def _apt(command: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600)


def read_data_set(deb: Path, name: str = DATA_SET) -> Any:
    """Data set `name` of the package, as a pandas DataFrame."""
    try:
        from rdata.conversion import convert
        from rdata.parser import parse_data
    except ImportError:
        raise HuggingTweetsError("reading R data needs the rdata package: pip install rdata") from None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True, capture_output=True, timeout=300)
        data = Path(tmp) / DATA
        # The index is a gzipped serialized list: variables -> (offset, length) in the .rdb.
        index = convert(parse_data(gzip.decompress((data / "Rdata.rdx").read_bytes()), extension=".rds"))
        if name not in index["variables"]:
            raise HuggingTweetsError(f"{deb.name} has no data set {name}")
        start, length = (int(v) for v in index["variables"][name])
        with open(data / "Rdata.rdb", "rb") as db:
            db.seek(start)
            blob = db.read(length)
    # Each object: its uncompressed length (4 bytes, big-endian), then zlib (the default for packages' data).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Missing constructor for R class POSIXct": times stay seconds
        return convert(parse_data(zlib.decompress(blob[4:]), extension=".rds"))


def to_posts(frame: Any, author: str = "realDonaldTrump") -> list[Post]:
    """Rows as posts, newest first."""
    posts = []
    for row in frame.itertuples(index=False):
        reply_to = row.in_reply_to_user_id_str
        posts.append(
            Post(
                text=str(row.text),
                id=str(row.id_str),
                created_at=datetime.fromtimestamp(float(row.created_at), timezone.utc),
                author=author,
                is_retweet=bool(row.is_retweet),
                is_reply=isinstance(reply_to, str) and reply_to != "",
                likes=int(row.favorite_count),
                reposts=int(row.retweet_count),
                source="x",
            )
        )
    return sorted(posts, key=lambda p: p.created_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True)


def build(out: Path, newest: int = NEWEST, downloads: Path | None = None) -> Path:
    """Write the newest `newest` posts to `out` (JSONL, oldest first, as an archive lists them); the .deb is kept in
    `downloads` (default: beside `out`) for the next build."""
    deb = download(downloads or out.parent)
    frame = read_data_set(deb)
    posts = to_posts(frame)[:newest][::-1]
    atomic.write_text(out, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in posts))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSONL file to write")
    parser.add_argument("--newest", type=int, default=NEWEST, help="how many of the newest posts to keep")
    args = parser.parse_args(argv)
    try:
        print(build(args.out, args.newest))
    except HuggingTweetsError as e:
        print(f"huggingtweets: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
