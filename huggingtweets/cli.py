"""The `huggingtweets` command. Subcommands mirror the Python API.

    huggingtweets fetch twitter-archive.zip --out posts.jsonl
    huggingtweets train twitter-archive.zip --keep-replies --out bots/me
    huggingtweets generate bots/me -n 5 --prompt "I think"
    huggingtweets eval bots/me newer-posts.jsonl
    huggingtweets bots
    huggingtweets demo

Problems with the input print one line on stderr and exit with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, NoReturn, get_args

from .errors import HuggingTweetsError, check_seed
from .quiet import quiet_libraries

EXIT_USAGE = 2
EXIT_OS = 1
EXIT_PIPE = 141  # as a shell reports a process ended by SIGPIPE


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of ours, instead of argparse's usage block.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: type, most: int | None = None) -> Any:
    def check(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None
        if not value > 0 or (isinstance(value, float) and math.isinf(value)):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:,}, got {text}")
        return value

    check.__name__ = kind.__name__
    return check


def _help(cls: type, name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)


def _add_source_options(p: argparse.ArgumentParser) -> None:
    from .clean import CleanOptions

    p.add_argument("sources", nargs="+", metavar="SOURCE", help="X archive (zip/folder/tweets.js), .csv/.jsonl/.txt, @handle, mastodon:user@host, bsky:handle, twint .db")
    p.epilog = (
        "Files are UTF-8 (CSV and TXT may also be UTF-16 with a BOM); a .jsonl line that is not a JSON object stops "
        "the run, naming the line, rather than being skipped."
    )
    g = p.add_argument_group("cleaning")
    g.add_argument("--keep-replies", action="store_true", help="keep replies (dropped by default)")
    g.add_argument("--keep-retweets", action="store_true", help="keep retweets/reposts (dropped by default)")
    g.add_argument("--keep-urls", action="store_true", help="keep links in the text")
    g.add_argument("--mentions", choices=["keep", "strip", "mask"], default=CleanOptions.mentions, help="what to do with @mentions")
    g.add_argument("--lowercase", action="store_true")
    g.add_argument("--min-words", type=int, default=CleanOptions.min_words, help="drop posts with fewer words (URLs/@/# do not count)")
    g.add_argument("--min-engagement-percentile", type=float, default=None, help="keep only posts at or above this percentile of likes+reposts")
    f = p.add_argument_group("fetching")
    f.add_argument("--limit", type=_positive(int), default=3200, help="most recent posts to fetch per account")
    f.add_argument("--refresh", action="store_true", help="refetch instead of only asking for newer posts")
    f.add_argument("--offline", action="store_true", help="use only posts cached by earlier fetches")
    f.add_argument("--no-wait", action="store_true", help="stop instead of waiting when rate limited")


def _clean_options(a: argparse.Namespace) -> Any:
    from .clean import CleanOptions

    return CleanOptions(
        keep_replies=a.keep_replies, keep_retweets=a.keep_retweets, remove_urls=not a.keep_urls, mentions=a.mentions,
        lowercase=a.lowercase, min_words=a.min_words, min_engagement_percentile=a.min_engagement_percentile,
    )


def _fetch_options(a: argparse.Namespace) -> Any:
    from .sources import FetchOptions

    return FetchOptions(
        include_replies=a.keep_replies, include_reposts=a.keep_retweets, limit=a.limit, refresh=a.refresh,
        offline=a.offline, wait_on_rate_limit=not a.no_wait,
    )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _check_out_file(path: Path) -> None:
    """Refuse an --out that cannot be a file, without creating anything: a folder, or a path under a file."""
    if path.is_dir():
        raise HuggingTweetsError(f"--out {path} is a folder: give a file name, like {path / 'posts.jsonl'}")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(above))  # as writing would, at once


def cmd_fetch(a: argparse.Namespace) -> int:
    from .posts import write_jsonl
    from .sources import load

    if a.out:
        _check_out_file(Path(a.out).expanduser())  # before fetching (X bills every post read), not after
    posts = []
    for source in a.sources:
        got = load(source, _fetch_options(a), _say)
        _say(f"{source}: {len(got)} posts")
        posts += got
    if a.out:
        write_jsonl(a.out, posts)
        _say(f"wrote {len(posts)} posts to {a.out}")
    else:
        for p in posts:
            print(json.dumps(p.to_dict(), ensure_ascii=False))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from . import distributed, models
    from .bot import Bot, check_replaceable, is_bot_folder
    from .corpus import build_corpus
    from .train import TrainConfig

    config = TrainConfig(
        method=a.method, epochs=a.epochs, learning_rate=a.learning_rate, batch_size=a.batch_size, block_size=a.block_size,
        seed=a.seed, max_steps=a.max_steps or -1, lora_rank=a.lora_rank, wandb=a.wandb, compile=a.compile, precision=a.precision,
        length_posts=a.length_posts, end_loss_weight=a.end_loss_weight, isolate_posts=a.isolate_posts,
    )
    config.validate()
    # Under torchrun or accelerate launch every process runs this; the main one reports (distributed.py).
    say = _say if distributed.is_main() else (lambda text: None)
    if not (a.base_model and is_bot_folder(a.base_model)):
        models.check_available(a.base_model)  # before fetching anything: an unreachable model is found in seconds
    if a.out:
        check_replaceable(Path(a.out).expanduser())  # and a folder it must not replace
    corpus = build_corpus(a.sources, _clean_options(a), _fetch_options(a), say, a.min_characters)
    say(corpus.table())
    if corpus.warning:
        say(f"warning: {corpus.warning}")
    try:
        bot = Bot.train_corpus(corpus, a.out, base_model=a.base_model, config=config, restart=a.restart, progress=say, show_progress=not a.quiet)
    except KeyboardInterrupt:
        say("interrupted: run the same command again to resume from the last checkpoint")
        return 130
    if not distributed.is_main():
        return 0
    metrics = bot.metrics
    if a.json:
        print(json.dumps({"bot": str(bot.path), **{k: metrics.get(k) for k in ("base_perplexity", "bot_perplexity", "steps", "seconds")}}))
    else:
        _say(f"validation perplexity: base {metrics.get('base_perplexity')} -> bot {metrics.get('bot_perplexity')}")
        print(bot.path)
    return 0


def _generate_options(a: argparse.Namespace) -> dict[str, Any]:
    return dict(
        temperature=a.temperature, top_p=a.top_p, top_k=a.top_k, max_new_tokens=a.max_new_tokens, seed=a.seed,
        keep_copies=a.keep_copies,
    )


def cmd_generate(a: argparse.Namespace) -> int:
    from .bot import Bot
    from .generate import GenerateOptions

    GenerateOptions(n=a.n, prompt=a.prompt, **_generate_options(a)).validate()  # a bad setting, before the bot loads
    bot = Bot.load(a.bot)
    samples = bot.generate(n=a.n, prompt=a.prompt, **_generate_options(a))
    if a.json:
        print(json.dumps([s.to_dict() for s in samples], ensure_ascii=False, indent=1))
        return 0
    print(f"# AI-generated posts in the style of {', '.join(bot.info.get('accounts', []))} (machine-made, not written by them)")
    for s in samples:
        text = s.text.replace("\n", "\n  ")  # a post's later lines indented under its own "- "
        print(f"- {text}" + ("   [copies a training post]" if s.copied else ""))
    if len(samples) < a.n:
        _say(f"only {len(samples)} of {a.n} posts were not copies of training posts (pass --keep-copies to see all)")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from . import models
    from .bot import Bot
    from .clean import CleanOptions
    from .corpus import build_corpus
    from .evaluate import perplexity

    check_seed(a.seed)  # before the bot loads
    bot = Bot.load(a.bot)
    options = CleanOptions.from_dict(bot.info.get("clean"))
    corpus = build_corpus(a.sources, options, None, _say, min_characters=1, validation_share=0.0)
    texts = [p.text for p in corpus.posts]
    block = int(bot.info.get("config", {}).get("block_size", 128))
    result: dict[str, Any] = {"posts": len(texts), "bot_perplexity": round(bot.perplexity(texts), 3)}
    try:
        base = models.load_model(bot.info.get("base_model"))
    except HuggingTweetsError as e:  # e.g. the bot this one continued has been deleted: the bot's own figures stand
        _say(f"warning: no base perplexity: {e}")
        result["base_perplexity"] = None
    else:
        result["base_perplexity"] = round(perplexity(base, bot.tokenizer, texts, block), 3)
        del base
    from .generate import copy_share

    samples = bot.generate(n=a.n, seed=a.seed, keep_copies=True)
    result["samples"] = len(samples)
    result["memorisation_rate"] = copy_share(samples)
    if a.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key.replace('_', ' ')}: {value}")
    return 0


def cmd_bots(a: argparse.Namespace) -> int:
    from .bot import list_bots

    bots = list_bots(a.folder)
    if a.json:
        print(json.dumps(bots))
    elif not bots:
        _say("no bots yet: train one with `huggingtweets train SOURCE`")
    else:
        for b in bots:
            print(f"{b['name']}\t{', '.join(b['accounts'])}\t{b['method']}\tperplexity {b['perplexity']}\t{b['path']}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import main as demo

    return demo(a)


def _add_fetch(sub: Any) -> None:
    """fetch SOURCE...: posts as JSONL."""
    p = sub.add_parser("fetch", help="read or download posts and write them as JSONL")
    _add_source_options(p)
    p.add_argument("--out", help="JSONL file to write (default: stdout)")
    p.set_defaults(run=cmd_fetch)


def _add_train(sub: Any) -> None:
    """train SOURCE...: the options mirror TrainConfig's fields."""
    from .compiling import Compile
    from .train import Precision, TrainConfig

    p = sub.add_parser("train", help="fine-tune a bot on the posts of one or more sources")
    _add_source_options(p)
    p.add_argument("--out", help="bot folder (default: ~/.huggingtweets/bots/<accounts>)")
    p.add_argument("--base-model", default=None, help="hub id, local model folder or bot folder to continue (default: embedded SmolLM2-135M)")
    p.add_argument("--method", choices=["auto", "lora", "full"], default="auto", help=_help(TrainConfig, "method"))
    p.add_argument("--epochs", type=_positive(float), default=None, help=_help(TrainConfig, "epochs"))
    p.add_argument("--learning-rate", type=_positive(float), default=None, help=_help(TrainConfig, "learning_rate"))
    p.add_argument("--batch-size", type=_positive(int), default=TrainConfig.batch_size, help=_help(TrainConfig, "batch_size"))
    p.add_argument("--block-size", type=_positive(int), default=TrainConfig.block_size, help=_help(TrainConfig, "block_size"))
    p.add_argument("--seed", type=int, default=TrainConfig.seed, help=_help(TrainConfig, "seed"))
    p.add_argument("--max-steps", type=_positive(int), default=None, help=_help(TrainConfig, "max_steps"))
    p.add_argument("--lora-rank", type=_positive(int), default=TrainConfig.lora_rank, help=_help(TrainConfig, "lora_rank"))
    p.add_argument("--compile", choices=get_args(Compile), default=TrainConfig.compile, help=_help(TrainConfig, "compile"))
    p.add_argument("--precision", choices=get_args(Precision), default=TrainConfig.precision, help=_help(TrainConfig, "precision"))
    p.add_argument("--length-posts", type=int, default=TrainConfig.length_posts, help=_help(TrainConfig, "length_posts"))
    p.add_argument("--end-loss-weight", type=_positive(float), default=TrainConfig.end_loss_weight, help=_help(TrainConfig, "end_loss_weight"))
    p.add_argument("--isolate-posts", action=argparse.BooleanOptionalAction, default=TrainConfig.isolate_posts, help=_help(TrainConfig, "isolate_posts"))
    p.add_argument("--min-characters", type=int, default=6000, help="refuse to train on less text than this")
    p.add_argument("--restart", action="store_true", help="discard checkpoints of an interrupted run instead of resuming")
    p.add_argument("--wandb", action="store_true", help=_help(TrainConfig, "wandb"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=cmd_train)


def _add_generate(sub: Any) -> None:
    """generate BOT: the options mirror GenerateOptions' fields."""
    from .generate import MAX_POSTS, GenerateOptions

    p = sub.add_parser("generate", help="generate posts with a bot")
    p.add_argument("bot", help="bot folder")
    p.add_argument("--prompt", default="", help=_help(GenerateOptions, "prompt"))
    p.add_argument("-n", type=_positive(int, MAX_POSTS), default=5, help=_help(GenerateOptions, "n"))
    p.add_argument("--seed", type=int, default=None, help=_help(GenerateOptions, "seed"))
    p.add_argument("--temperature", type=_positive(float), default=1.0, help=_help(GenerateOptions, "temperature"))
    p.add_argument("--top-p", type=_positive(float), default=0.95, help=_help(GenerateOptions, "top_p"))
    p.add_argument("--top-k", type=int, default=0, help=_help(GenerateOptions, "top_k"))
    p.add_argument("--max-new-tokens", type=_positive(int), default=96, help=_help(GenerateOptions, "max_new_tokens"))
    p.add_argument("--keep-copies", action="store_true", help=_help(GenerateOptions, "keep_copies"))
    p.add_argument("--json", action="store_true", help="print a JSON array of {text, copied, ...}")
    p.set_defaults(run=cmd_generate)


def _add_eval(sub: Any) -> None:
    """eval BOT SOURCE...."""
    from .generate import MAX_POSTS

    p = sub.add_parser("eval", help="perplexity of a bot and its base on posts, and its memorisation rate")
    p.add_argument("bot", help="bot folder")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="held-out posts (any source)")
    p.add_argument("-n", type=_positive(int, MAX_POSTS), default=50, help="posts to generate for the memorisation rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_eval)


def _add_bots(sub: Any) -> None:
    """bots: the trained bots."""
    p = sub.add_parser("bots", help="list trained bots")
    p.add_argument("--folder", default=None, help="where to look (default: ~/.huggingtweets/bots)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_bots)


def _add_demo(sub: Any) -> None:
    """demo: the Voilà app."""
    p = sub.add_parser("demo", help="open the web demo (Voilà)")
    p.add_argument("--port", type=_positive(int, most=65535), default=8866, help="the port to serve on (1-65535)")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--max-upload-mb", type=_positive(float), default=None, help="largest upload a visitor may send, in MB (default 100)")
    p.set_defaults(run=cmd_demo)


def _add_bench(sub: Any) -> None:
    """bench: the benchmark (huggingtweets.bench)."""
    p = sub.add_parser("bench", help="measure speed, memory and quality (see benchmarks/)")
    p.add_argument("--data", default=None, help="source to benchmark on (default: the real archive in ../shared)")
    p.add_argument("--base-model", default=None)
    p.add_argument("--quick", action="store_true", help="a short run (minutes)")
    p.add_argument("--json", dest="json_out", default=None, help="write results to this JSON file")
    p.add_argument("--levers", action="store_true", help="also measure the levers (LoRA rank, layers, block size, threads, compile)")
    p.add_argument("--levers-only", action="store_true", help="measure only the levers")
    p.add_argument("--gpu", action="store_true", help="only the GPU check (issue 21; one line and exit 0 without a CUDA GPU)")
    p.add_argument("--voice", action="store_true", help="only the voice check (issue 22): the default bot on all of --data, judged")
    p.set_defaults(run=lambda a: __import__("huggingtweets.bench", fromlist=["main"]).main(a))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="huggingtweets", description="Fine-tune a language model on public posts and generate new, AI-labelled ones.")
    parser.add_argument("--version", action="version", version=f"huggingtweets {__import__('huggingtweets').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for add in (_add_fetch, _add_train, _add_generate, _add_eval, _add_bots, _add_demo, _add_bench):
        add(sub)
    return parser


def describe_os_error(error: OSError) -> str:
    """One line for an OSError: what failed and where, without the errno noise."""
    reason = " ".join((error.strerror or str(error) or type(error).__name__).split())
    if isinstance(error, (FileExistsError, NotADirectoryError)):
        reason = "a file is in the way of a folder there"  # making folders under a file: `--out notes.txt/bot`
    where = error.filename if error.filename is not None else ""
    return f"{where}: {reason}" if where else reason


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries(all_warnings=True)
    args = build_parser().parse_args(argv)
    try:
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe is handled, not at exit
        return code
    except HuggingTweetsError as e:
        print(f"huggingtweets: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("huggingtweets: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `huggingtweets fetch X | head`: the reader has what it wanted. Point stdout at nothing so that the
        # interpreter's final flush does not fail again on the closed pipe.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as e:
        # The machine rather than the input: a full disk, a read-only folder, a file that cannot be read.
        print(f"huggingtweets: error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_OS


if __name__ == "__main__":
    sys.exit(main())
