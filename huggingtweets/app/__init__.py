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

from typing import Any

from ..quiet import quiet_libraries

__all__ = ["App", "AppState", "quiet_libraries"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `huggingtweets.app.state` and `plots` can be used without ipywidgets installed.
    if name == "App":
        from .gui import App

        return App
    if name == "AppState":
        from .state import AppState

        return AppState
    raise AttributeError(name)
