"""Keep library chatter (deprecation notes, "Loading weights" bars) away from users of the CLI and the app."""

from __future__ import annotations

import os
import warnings


def quiet_libraries(*, all_warnings: bool = False) -> None:
    """Silence the libraries' logs and loading bars; training keeps its own tqdm bar.

    `all_warnings` also drops every Python warning (the CLI: its users cannot act on them); otherwise only
    deprecation notes and the ML libraries' warnings go (a notebook may still want its own warnings).
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if all_warnings:
        warnings.filterwarnings("ignore")
    else:
        warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notes meant for library authors
        for module in ("transformers", "torch", "peft", "accelerate", "huggingface_hub"):
            warnings.filterwarnings("ignore", module=module)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
