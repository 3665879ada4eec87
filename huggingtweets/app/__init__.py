"""The huggingtweets app: data → train → generate, as one ipywidgets component.

In a notebook (or served by Voilà with `huggingtweets demo`):

    from huggingtweets.app import App
    App()                                   # display it: the last expression of a cell

    app = App(base_model="openai-community/gpt2", max_steps=50)
    app.state.data.sources = "@alice"       # the state can be driven from code too

`state` holds the app's state and actions without widgets (testable on its own), `gui` the widgets
that show it, `plots` the matplotlib figures. Only `gui` imports ipywidgets.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["App", "AppState", "quiet_libraries"]


def quiet_libraries() -> None:
    """Keep library chatter (deprecation notes, loading bars) out of the page: it would land under the app."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notes meant for library authors
    for module in ("transformers", "torch", "peft", "accelerate", "huggingface_hub"):
        warnings.filterwarnings("ignore", module=module)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


def __getattr__(name: str) -> Any:
    # Lazy, so that `huggingtweets.app.state` and `plots` can be used without ipywidgets installed.
    if name == "App":
        from .gui import App

        return App
    if name == "AppState":
        from .state import AppState

        return AppState
    raise AttributeError(name)
