"""Environment variables that hold secrets: read where they are needed, never printed, logged or saved."""

from __future__ import annotations

X_TOKEN_VARIABLES = ("X_BEARER_TOKEN", "TWITTER_BEARER_TOKEN")  # the X bearer token, read in this order (sources/x.py)
# Every secret the package or its libraries read from the environment (the X token, W&B, the hub): the app blanks
# their values out of everything the page shows.
SECRET_VARIABLES = (*X_TOKEN_VARIABLES, "WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
