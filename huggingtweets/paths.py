"""Where huggingtweets keeps things on disk.

Everything lives under one home folder, `$HUGGINGTWEETS_HOME` (default `~/.huggingtweets`):

    models/   base models converted once (the embedded default's safetensors copy)
    data/     fetched posts, one JSONL file per source and account
    bots/     trained bots, one folder each
    sessions/ the web demo's visitors, one folder each: their uploads and the bots they train (app/workspace.py)
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("HUGGINGTWEETS_HOME", Path.home() / ".huggingtweets")).expanduser()


def models_dir() -> Path:
    return home() / "models"


def data_dir() -> Path:
    return home() / "data"


def bots_dir() -> Path:
    return home() / "bots"


def sessions_dir() -> Path:
    return home() / "sessions"


def sample_posts() -> Path:
    """The small sample that ships with the package: original posts by a fictional account, for demos."""
    return Path(__file__).parent / "data" / "sample-posts.jsonl"
