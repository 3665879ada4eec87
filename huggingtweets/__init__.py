"""huggingtweets: fine-tune a language model on someone's public posts and generate new ones, labelled as AI-generated.

    from huggingtweets import Bot
    bot = Bot.train("twitter-archive.zip", keep_replies=True)
    for post in bot.generate(n=5):
        print(post.text)
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["Bot", "list_bots", "CleanOptions", "TrainConfig", "FetchOptions", "GenerateOptions", "HuggingTweetsError"]


def __getattr__(name: str) -> Any:
    # Lazy: `import huggingtweets` stays fast (torch and transformers load only when a bot is used).
    if name in ("Bot", "list_bots"):
        from . import bot

        return getattr(bot, name)
    if name == "CleanOptions":
        from .clean import CleanOptions

        return CleanOptions
    if name == "TrainConfig":
        from .train import TrainConfig

        return TrainConfig
    if name == "FetchOptions":
        from .sources import FetchOptions

        return FetchOptions
    if name == "GenerateOptions":
        from .generate import GenerateOptions

        return GenerateOptions
    if name == "HuggingTweetsError":
        from .errors import HuggingTweetsError

        return HuggingTweetsError
    raise AttributeError(name)
