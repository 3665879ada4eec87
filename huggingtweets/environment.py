"""Environment variables: the secrets (read where they are needed, never printed, logged or saved) and the web
demo's upload limit, which its server and its kernels must read alike."""

from __future__ import annotations

import os

X_TOKEN_VARIABLES = ("X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN")  # the X bearer token, read in this order (sources/x.py)
# Every secret the package or its libraries read from the environment (the X token, W&B, the hub): the app blanks
# their values out of everything the page shows.
SECRET_VARIABLES = (*X_TOKEN_VARIABLES, "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

MAX_UPLOAD_VARIABLE = "HUGGINGTWEETS_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_MB = 100  # a whole X archive with its media is often larger: its data/tweets.js is enough


def max_upload_bytes() -> int:
    """The largest upload the web demo takes ($HUGGINGTWEETS_MAX_UPLOAD_MB, in MiB; `huggingtweets demo --max-upload-mb`).

    The kernel refuses a larger file with a one-line message; the server drops a websocket message much larger
    before it reaches the kernel (demo.py), so no upload can fill the server's memory.
    """
    value = os.environ.get(MAX_UPLOAD_VARIABLE, "").strip()
    try:
        megabytes = float(value) if value else DEFAULT_MAX_UPLOAD_MB
    except ValueError:
        megabytes = DEFAULT_MAX_UPLOAD_MB
    return int(max(megabytes, 0.01) * 2**20)
