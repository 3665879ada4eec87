"""The app's state and actions, with no widgets: the "model" half of the app (`gui.py` is the "view").

As in the ipywidgets tutorial's password generator, the state is a set of `traitlets` objects: the
widgets link to their traits and observe them, and everything here can be driven and tested without a
browser or a kernel.

    state = AppState(base_model="", max_steps=-1)
    state.data.sources = "@alice, bsky:bob.bsky.social"   # or state.data.add_upload("archive.zip", data)
    state.data.keep_replies = True
    state.data.fetch()                  # state.data.corpus, or a one-line state.data.error
    state.train.run()                   # blocks; state.train.start() trains in a thread, .stop() stops it
    state.generate.run()                # state.generate.posts fills in as the posts stream

Every action reports instead of raising: a `HuggingTweetsError` becomes `step.error` (its one line),
anything else a short `step.error` plus the traceback in `step.details` (for the app's log). Secrets
(the X bearer token) and the server's upload folder are removed from both.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Enum, Float, HasTraits, Int, List, Unicode, default, dlink, observe

from .. import atomic
from ..environment import SECRET_VARIABLES, X_TOKEN_VARIABLES, max_upload_bytes
from ..errors import HuggingTweetsError
from .workspace import Workspace

MAX_UPLOAD_BYTES = max_upload_bytes()
"""Largest file the app accepts. A whole X archive with its media is often larger: upload `data/tweets.js`."""

BUSY = "still busy with the previous request: wait for it to finish"

UPLOAD_SUFFIXES = (".zip", ".js", ".csv", ".jsonl", ".txt")
AI_LABEL = "AI-generated"

# The core's messages name command-line options; in the app the same choices are boxes and fields.
APP_WORDS = {
    "pass --restart": "tick 'start over'",
    "leave --base-model out": "leave the base model field empty",
    "pass --base-model": "fill in the base model field",
    "--keep-replies": "'keep replies'",
    "--keep-retweets": "'keep reposts'",
    "--min-characters": "the minimum",
    "--restart": "'start over'",
    "--base-model": "the base model field",
    "--method lora": "LoRA",
}


def split_sources(text: str) -> list[str]:
    """Sources typed in one field, separated by commas or new lines (a file path may hold spaces)."""
    return [s.strip() for s in re.split(r"[,\n]", text) if s.strip()]


def safe_filename(name: str) -> str:
    """A name that stays inside the folder it is written to (no path parts, no hidden files)."""
    from ..corpus import safe_name

    base = Path(name.replace("\\", "/")).name
    stem, suffix = os.path.splitext(base)
    return safe_name(stem) + suffix.lower()


def _free_name(target: Path, content: bytes, mine: list[str]) -> Path:
    """`target`, or `name-2.ext`, `name-3.ext`, ...: the first of `mine` (this session's uploads) that already holds
    `content`, or else the first free name, claimed at once (created empty, exclusively) so no one else takes it.

    Different files can share a name: every archive has a data/tweets.js, names in other scripts all become
    "account", and visitors of one Voilà server share the uploads folder. None may overwrite another, and a
    visitor's "Clear uploads" deletes only that visitor's files.
    """
    n = 1
    while True:
        candidate = target if n == 1 else target.with_name(f"{target.stem}-{n}{target.suffix}")
        if str(candidate) in mine and candidate.is_file() and candidate.read_bytes() == content:
            return candidate
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            return candidate
        except FileExistsError:
            n += 1


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0][:200] if text else "") or type(error).__name__


class Step(HasTraits):
    """What the three steps share: a status line, an error line, a busy flag, and the reporting of failures."""

    status = Unicode("", help="what is happening or what happened, in one line")
    error = Unicode("", help="one-line message of the last failure; empty after a success")
    details = Unicode("", help="traceback of the last unexpected failure, for the log")
    busy = Bool(False)

    def __init__(self, workspace: Workspace | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # This session's folder (workspace.py): the only place the app writes files of its own.
        self.workspace = workspace or Workspace()
        self._lock = threading.Lock()  # held while an action runs
        # A refused click's note and the start and end of an action take turns, so a click as an action ends cannot
        # leave a stale "still busy". Reentrant: trait observers run inside and may click again (but must not wait
        # for an action on another thread: that thread waits for its turn).
        self._turns = threading.RLock()
        self._covered = ""  # the error line that the "still busy" note replaced
        self._thread: threading.Thread | None = None

    def hide(self, text: str) -> str:
        """`text` without secrets or server paths; steps that hold secrets extend this."""
        for name in SECRET_VARIABLES:
            secret = os.environ.get(name, "").strip()
            if len(secret) >= 8:  # a stray short value would blank out ordinary words
                text = text.replace(secret, "•••")
        for folder in (self.workspace.uploads, self.workspace.bots):  # files by name, not by where the server keeps them
            text = text.replace(str(folder) + os.sep, "")
        return text

    def explain(self, message: str) -> str:
        """A core message in the app's words (its options are widgets, not command-line flags)."""
        for flag, words in APP_WORDS.items():
            message = message.replace(flag, words)
        return self.hide(message)

    def report(self, error: BaseException) -> None:
        """Show a failure: the message of ours, or a short note for a bug (traceback to `details`)."""
        if isinstance(error, HuggingTweetsError):
            self.error = self.explain(str(error))
            return
        self.details = self.hide("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        self.error = self.hide(f"unexpected error: {type(error).__name__}: {first_line(error)} (details in the log below)")

    def run_action(self, status: str, work: Callable[[], object]) -> bool:
        """Run one action: refuse a second at the same time, set `busy`, report what goes wrong; True if it went well."""
        with self._turns:
            if not self._lock.acquire(blocking=False):
                if self.error != BUSY:
                    self._covered = self.error
                self.error = BUSY
                return False
            self.busy, self.error, self.status = True, "", status
        try:
            work()
            return True
        except Exception as e:  # every failure ends up in the page, none in a lost traceback
            self.status = ""
            self.report(e)
            return False
        finally:
            with self._turns:
                if self.error == BUSY:  # a click refused while this ran: stale once it is done
                    self.error = self._covered
                self._lock.release()  # first: an observer of `busy` may start the next action at once
                self.busy = False

    def in_background(self, action: Callable[[], object]) -> threading.Thread:
        """Run `action` (one of this step's methods) in a thread, so the page stays responsive."""
        thread = threading.Thread(target=action, name=f"huggingtweets-{type(self).__name__}", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the background action, if any (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)


# ---------------------------------------------------------------------------------------------------- 1. data


class DataStep(Step):
    """Step 1: sources typed in or uploaded, read and cleaned into a `Corpus` with its counts."""

    sources = Unicode("", help="@handles, profile URLs, mastodon:/bsky: sources or file paths, separated by commas")
    uploads = List(Unicode(), help="uploaded files (paths inside workspace.uploads)")
    keep_replies = Bool(False)
    keep_retweets = Bool(False)
    x_bearer_token = Unicode("", help="secret: for @handles on X; never shown or logged")
    min_characters = Int(help="refuse to train on less text (default: the library's minimum)")
    corpus = AnyTrait(None, allow_none=True, help="the cleaned Corpus after fetch()")

    @default("min_characters")
    def _min_characters(self) -> int:
        from ..dataset import MIN_CHARACTERS  # imports torch: only when first needed

        return MIN_CHARACTERS

    def token_origin(self) -> str | None:
        """Where the X token for fetching comes from: "typed", "environment", or None when there is none."""
        if self.x_bearer_token.strip():
            return "typed"
        return "environment" if any(os.environ.get(name, "").strip() for name in X_TOKEN_VARIABLES) else None

    def hide(self, text: str) -> str:
        text = super().hide(text)
        token = self.x_bearer_token.strip()  # as the fetcher sends it
        return text.replace(token, "•••") if token else text

    def source_list(self) -> list[str]:
        return [*split_sources(self.sources), *self.uploads]

    def add_upload(self, name: str, content: bytes) -> bool:
        """Write an uploaded file into this session's uploads folder (nowhere else) and add it to the sources.

        Not an action that waits its turn: the widget lets go of the file either way, so one refused while a fetch
        runs would be lost. Saving it is quick, and a fetch under way has already taken its list of sources.
        """
        try:
            self._add_upload(name, content)
            if not self.busy:
                self.error = ""  # an earlier refused upload's message is answered
            return True
        except Exception as e:  # shown in the page, as for actions
            self.report(e)
            return False

    def _add_upload(self, name: str, content: bytes) -> None:
        shown = Path(name.replace("\\", "/")).name
        suffix = os.path.splitext(shown)[1].lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HuggingTweetsError(
                f"{shown}: cannot read '{suffix or 'no extension'}' files: upload an X archive (.zip), "
                "its data/tweets.js, or a .csv, .jsonl or .txt file"
            )
        if len(content) > MAX_UPLOAD_BYTES:
            raise HuggingTweetsError(
                f"{shown} is {len(content) / 2**20:.0f} MB, over the {MAX_UPLOAD_BYTES / 2**20:.0f} MB limit: "
                "upload data/tweets.js from the archive instead of the whole zip"
            )
        folder = self.workspace.uploads
        folder.mkdir(parents=True, exist_ok=True)
        wanted = folder / safe_filename(shown)
        if wanted.resolve().parent != folder.resolve():  # safe_filename makes this impossible; be sure anyway
            raise HuggingTweetsError(f"{shown}: not a usable file name")
        target = _free_name(wanted, content, self.uploads)
        atomic.write_bytes(target, content)
        if str(target) not in self.uploads:
            self.uploads = [*self.uploads, str(target)]
        self.status = f"uploaded {target.name} ({len(content) / 1024:,.0f} kB): press Fetch to read it"

    def clear_uploads(self) -> None:
        """Forget the uploaded files and delete them."""
        for path in self.uploads:
            with suppress(OSError):
                Path(path).unlink()
        self.uploads = []
        self.status = self.error = ""

    def fetch(self) -> bool:
        """Read every source and clean the posts into `corpus` (counts, plots and training text)."""
        return self.run_action("reading the posts…", self._fetch)

    def _fetch(self) -> None:
        from ..clean import CleanOptions
        from ..corpus import build_corpus
        from ..sources import FetchOptions

        self.corpus = None
        sources = self.source_list()
        if not sources:
            raise HuggingTweetsError("no source yet: type a handle or URL, or upload an archive or a file")
        clean = CleanOptions(keep_replies=self.keep_replies, keep_retweets=self.keep_retweets)
        fetch = FetchOptions(
            include_replies=self.keep_replies, include_reposts=self.keep_retweets, x_bearer_token=self.x_bearer_token or None
        )
        corpus = build_corpus(sources, clean, fetch, self._progress, self.min_characters)
        read = sum(a.counts.read for a in corpus.accounts)
        characters = sum(len(p.text) for p in corpus.posts)
        self.corpus = corpus
        self.status = f"{len(corpus.posts):,} posts kept of {read:,} read ({characters:,} characters)" + (
            f" · {corpus.warning}" if corpus.warning else ""
        )

    def _progress(self, message: str) -> None:
        self.status = self.hide(message)


# ---------------------------------------------------------------------------------------------------- 2. train


class TrainStep(Step):
    """Step 2: fine-tune a base model (or continue a bot) on the corpus, with live progress and a stop."""

    corpus = AnyTrait(None, allow_none=True, help="linked from the data step")
    base_model = Unicode("", help="'' for the embedded default, a hub id, or a local model folder")
    method = Enum(("lora", "full"), "lora", help="LoRA is lighter (the default for small machines); full trains every weight")
    epochs = Float(2.0)
    max_steps = Int(-1, help="stop after this many steps (tests and quick tries); -1: train for `epochs`")
    batch_size = Int(0, help="blocks per step; 0: the device's default (2 for LoRA on a CPU: under 2 GB, which Binder gives)")
    start_over = Bool(False, help="discard the checkpoints of an earlier, different run instead of refusing")
    bots = List(help="existing bots, as list_bots() gives them")
    existing = Unicode("", help="folder of the existing bot chosen to continue or to generate from; '' for a new bot")

    step = Int(0)
    total_steps = Int(0)
    train_losses = List(help="[(step, loss)] as logged")
    end_weight = Float(1.0, help="the logged training loss's weight on the end marker (TrainConfig.end_loss_weight)")
    validation_losses = List(help="[(step, loss)] at each evaluation")
    training = Bool(False, help="a training run is under way (busy also covers loading a bot)")
    stopped = Bool(False, help="the last run was stopped early (its checkpoint is kept)")
    bot = AnyTrait(None, allow_none=True, help="the bot last trained or loaded: what step 3 generates with")
    _model_error = ""  # the missing-model message, while it applies

    def __init__(self, workspace: Workspace | None = None, **kwargs: Any) -> None:
        super().__init__(workspace, **kwargs)
        self._stop = threading.Event()
        self._check_default_model()

    @observe("base_model", "existing")
    def _check_default_model(self, _: object = None) -> None:
        """Say now, not after fetching and training, that the embedded model is missing; only while it is the one
        that would be used."""
        from .. import models

        shown = self.error == self._model_error and self._model_error
        self._model_error = ""
        if not (self.base_model.strip() or self.existing):
            try:
                models.check_available(None)
            except HuggingTweetsError as e:
                self._model_error = self.explain(str(e))
        if shown or (self._model_error and not self.busy):
            self.error = self._model_error

    def refresh_bots(self) -> None:
        """This session's bots, then the ones trained with the command line; never another session's."""
        from ..bot import list_bots

        own = [{**b, "session": True} for b in list_bots(self.workspace.bots)]
        self.bots = own + [{**b, "session": False} for b in list_bots()]

    def start(self) -> threading.Thread:
        """Train in a background thread (see `run`)."""
        return self.in_background(self.run)

    def stop(self) -> None:
        """Ask training to stop: it saves a checkpoint at the end of the current step and writes the bot."""
        if self.training:
            self._stop.set()
            self.status = "stopping after this step…"

    def run(self) -> bool:
        """Train a bot on `corpus` (blocking); progress goes to step/total_steps and the loss lists."""
        return self.run_action("preparing…", self._train)

    def _train(self) -> None:
        from ..bot import Bot
        from ..train import TrainConfig

        corpus = self.corpus
        if corpus is None:
            raise HuggingTweetsError("no data yet: read some posts in step 1 first")
        config = TrainConfig(method=self.method, epochs=self.epochs, max_steps=self.max_steps, batch_size=self.batch_size or None)
        config.validate()
        self.end_weight = config.end_loss_weight
        self._stop.clear()
        self.step, self.total_steps, self.train_losses, self.validation_losses, self.stopped = 0, 0, [], [], False
        self.training = True
        try:
            bot = Bot.train_corpus(
                corpus, self.workspace.bots / corpus.name, base_model=self.existing or self.base_model.strip() or None, config=config, restart=self.start_over,
                listener=self._on_event, stop=self._stop, progress=self._progress, show_progress=False,
            )
            self.stopped = bool(bot.info.get("stopped_early"))
            if not self.stopped:
                self.step = self.total_steps  # early stopping also ends the run: the bar shows it is done
        finally:
            self.training = False  # after step and stopped, so that views see how the run ended
        metrics = bot.metrics
        if self.stopped:
            self.status = f"stopped at step {self.step}: saved {bot.path.name} (train again with the same settings to resume)"
        else:
            self.status = (
                f"saved {bot.path.name} · validation perplexity {metrics.get('base_perplexity')} (base) → "
                f"{metrics.get('bot_perplexity')} (bot) · {metrics.get('seconds')} s"
            )
        self.bot = bot
        self.refresh_bots()

    def load(self, path: str | None = None) -> bool:
        """Load an existing bot (default: the chosen one) to generate from."""
        return self.run_action("loading the bot…", lambda: self._load(path or self.existing))

    def _load(self, folder: str) -> None:
        from ..bot import Bot

        if not folder:
            raise HuggingTweetsError("choose an existing bot first")
        bot = Bot.load(folder)
        self.bot = bot
        self.status = f"generating with {bot.path.name} (trained on {', '.join(bot.info.get('accounts', [])) or 'unknown'})"

    def _on_event(self, event: Any) -> None:
        if event.total_steps and event.total_steps != self.total_steps:
            self.total_steps = event.total_steps  # before the step, so a progress bar's max is set first
        self.step = event.step
        if event.kind == "log" and event.loss is not None:
            self.train_losses = [*self.train_losses, (event.step, event.loss)]
        elif event.kind == "eval" and event.eval_loss is not None:
            self.validation_losses = [*self.validation_losses, (event.step, event.eval_loss)]
        if not self._stop.is_set():
            last = f" · loss {self.train_losses[-1][1]:.2f}" if self.train_losses else ""
            self.status = f"training: step {event.step}/{event.total_steps}{last} · {event.seconds:.0f} s"

    def _progress(self, message: str) -> None:
        self.status = self.hide(message)


# ---------------------------------------------------------------------------------------------------- 3. generate


@dataclass(frozen=True)
class GeneratedPost:
    """A post on its way in (`done` False) or finished; `copied` says it repeats a training post."""

    text: str
    done: bool = False
    copied: bool = False
    prompt: str = ""


class GenerateStep(Step):
    """Step 3: new posts from the bot, streamed one by one, each checked against the training posts."""

    bot = AnyTrait(None, allow_none=True, help="linked from the train step")
    prompt = Unicode("", help="how each post starts (may be empty)")
    n = Int(5)
    temperature = Float(1.0)
    posts = List(help="GeneratedPost list, replaced (not mutated) on every update so observers see each token")

    def __init__(self, workspace: Workspace | None = None, **kwargs: Any) -> None:
        super().__init__(workspace, **kwargs)
        self._stop = threading.Event()

    def start(self) -> threading.Thread:
        return self.in_background(self.run)

    def run(self) -> bool:
        """Generate `n` posts (blocking); `posts` is updated as every token arrives."""
        return self.run_action("generating…", self._generate)

    def stop(self) -> None:
        """Stop generating: the post being written is dropped, the finished ones are kept."""
        if self.busy:
            self._stop.set()

    def _generate(self) -> None:
        bot, n, prompt, temperature = self.bot, self.n, self.prompt, self.temperature  # as they were when asked
        if bot is None:
            raise HuggingTweetsError("no bot yet: train one in step 2, or choose an existing bot there")
        if not 1 <= n <= 50:
            raise HuggingTweetsError(f"number of posts must be between 1 and 50, got {n}")
        done: list[GeneratedPost] = []
        self.posts = []
        self._stop.clear()
        started = time.perf_counter()
        # An empty post (the model ended at once) is drawn again, a bounded number of times.
        for _ in range(3 * n):
            if len(done) == n or self._stop.is_set():
                break
            self.status = f"generating post {len(done) + 1} of {n}…"
            post = GeneratedPost("", prompt=prompt)
            for partial in bot.stream(prompt, temperature=temperature):  # leaving the loop stops the stream's model
                if self._stop.is_set():
                    break
                post = GeneratedPost(partial.text, partial.done, bool(partial.copied), prompt)
                self.posts = [*done, post]
            if post.done and post.text:
                done.append(post)
            self.posts = list(done)
        copies = sum(p.copied for p in done)
        self.status = ("stopped: " if self._stop.is_set() else "") + f"{len(done)} posts in {time.perf_counter() - started:.0f} s · " + (
            f"{copies} copy a training post" if copies else "none copies a training post"
        )

    def records(self) -> list[dict[str, Any]]:
        """The finished posts as rows for download, each labelled as AI-generated."""
        bot = self.bot
        name = bot.info.get("name", "") if bot is not None else ""
        return [
            {"text": p.text, "label": AI_LABEL, "bot": name, "prompt": p.prompt, "copies_training_post": p.copied}
            for p in self.posts
            if p.done
        ]

    def as_json(self) -> str:
        return json.dumps(self.records(), ensure_ascii=False, indent=1)

    def as_csv(self) -> str:
        """The posts for a spreadsheet: a byte-order mark, so Excel reads UTF-8 (emoji, accents), and a ' before a
        text that a spreadsheet would take for a formula (a reply starting with @handle, a post starting with = or
        -). The JSON download keeps every text exactly."""
        rows = [{k: _not_a_formula(v) if k in ("text", "prompt") else v for k, v in row.items()} for row in self.records()]
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.DictWriter(out, fieldnames=["text", "label", "bot", "prompt", "copies_training_post"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()


def _not_a_formula(value: object) -> object:
    return f"'{value}" if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


# ---------------------------------------------------------------------------------------------------- the app


class AppState:
    """The three steps, wired: the data step's corpus feeds training, the trained bot feeds generation."""

    def __init__(self, *, sources: str = "", base_model: str = "", max_steps: int = -1, method: str = "lora", epochs: float = 2.0) -> None:
        self.workspace = Workspace()
        self.data = DataStep(self.workspace, sources=sources)
        self.train = TrainStep(self.workspace, base_model=base_model, max_steps=max_steps, method=method, epochs=epochs)
        self.generate = GenerateStep(self.workspace)
        dlink((self.data, "corpus"), (self.train, "corpus"))
        dlink((self.train, "bot"), (self.generate, "bot"))
        self.train.run_action("", self.train.refresh_bots)

    @property
    def steps(self) -> tuple[Step, Step, Step]:
        return self.data, self.train, self.generate

    def close(self) -> None:
        """End the session: its uploads are deleted (the bots trained in it are kept). Also done at kernel exit."""
        self.data.uploads = []
        self.workspace.close()


__all__ = ["AppState", "DataStep", "TrainStep", "GenerateStep", "GeneratedPost", "Step", "MAX_UPLOAD_BYTES", "AI_LABEL"]
