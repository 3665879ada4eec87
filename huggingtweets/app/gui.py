"""The app's widgets: the "view" half of the app (`state.py` holds the state and the actions).

    from huggingtweets.app import App
    App()                       # in a notebook, or served by Voilà (`huggingtweets demo`)

Three panels, one per step, each usable on its own:

1. Data: handles/URLs and uploads → Fetch → the counts table and a small figure.
2. Train: base model, LoRA or full, epochs → Train (in a background thread) → progress bar, live loss
   curve, Stop; or choose an existing bot to continue it or to generate from.
3. Generate: prompt, number of posts, temperature → post cards streaming in, labelled AI-generated,
   marked when they copy a training post → download as CSV or JSON.

Widgets only link to and observe the state; the actions run in the state, in a thread, so a long
fetch or training run never blocks the page. Setting widget values from those threads is safe in
ipywidgets (each change is one comm message); the costly part, redrawing the loss figure, is throttled.
Errors appear as a one-line message under the step that failed; the traceback of an unexpected one
goes to the collapsed log at the bottom, never lost and never in the middle of the page.
"""

from __future__ import annotations

import base64
import html
import os
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from traitlets import link  # (state, trait) first: the state's value wins when linking

from ..quiet import quiet_libraries
from . import plots
from .state import AI_LABEL, MAX_UPLOAD_BYTES, UPLOAD_SUFFIXES, AppState, DataStep, GeneratedPost, GenerateStep, Step, TrainStep

TOKEN_PROMPT = "bearer token, only for @handles on X (never shown or stored)"
TOKEN_SET = "token set for this session (kept in memory only; type another to replace it)"
TOKEN_FROM_ENVIRONMENT = "using the X token from the server's environment (type another to use that instead)"
REDRAW_SECONDS = 2.0  # the loss figure is redrawn at most this often while training (and at each evaluation)
COUNT_COLUMNS = ("account", "read", "retweets", "replies", "short", "duplicates", "kept", "characters")

STYLE = """
<style>
.ht-app { max-width: 1000px; }
.ht-app h2 { margin: 4px 0; }
.ht-app h3 { margin: 14px 0 2px; border-bottom: 1px solid #e1e8ed; }
.ht-hint { color: #536471; font-size: 0.9em; line-height: 1.35; }
.ht-status { color: #536471; font-size: 0.9em; }
.ht-error { color: #b00020; font-weight: 600; }
.ht-counts { border-collapse: collapse; font-size: 0.9em; margin: 4px 0; }
.ht-counts th, .ht-counts td { padding: 2px 10px; border-bottom: 1px solid #e1e8ed; text-align: right; }
.ht-counts th:first-child, .ht-counts td:first-child { text-align: left; }
.ht-counts .ht-kept { font-weight: 700; }
.ht-post { border: 1px solid #cfd9de; border-radius: 12px; padding: 8px 12px; margin: 4px 0; max-width: 600px;
           background: #fff; font-family: system-ui, sans-serif; }
.ht-post-head { font-size: 0.85em; color: #536471; margin-bottom: 2px; }
.ht-ai { background: #fff3cd; color: #664d03; border-radius: 6px; padding: 0 6px; font-weight: 700; margin-left: 4px; }
.ht-post-text { font-size: 1em; white-space: pre-wrap; word-wrap: break-word; color: #0f1419; }
.ht-streaming .ht-post-text::after { content: "▍"; color: #1d9bf0; }
.ht-copied { border-color: #f4900c; }
.ht-copy-note { font-size: 0.85em; color: #9a5b00; margin-top: 2px; }
.ht-downloads a { margin-right: 12px; }
</style>
"""

INTRO = (
    "Fine-tune a small language model on someone's public posts, then generate new posts in their voice. "
    "Everything generated here is machine-made: each post is labelled <b>AI-generated</b>, and posts that copy "
    "a training post are marked. Do not pass generated posts off as written by the person."
)


def guarded(step: Step, callback: Callable[..., object]) -> Callable[..., None]:
    """A widget callback whose failures are shown under `step` instead of vanishing into the kernel log."""

    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception as e:
            step.report(e)

    return run


def status_line(step: Step) -> widgets.HTML:
    line = widgets.HTML()
    line.add_class("ht-status")

    def show(_: object = None) -> None:
        line.value = html.escape(step.status)

    step.observe(show, "status")
    show()
    return line


def error_line(step: Step) -> widgets.HTML:
    line = widgets.HTML()
    line.add_class("ht-error")

    def show(_: object = None) -> None:
        line.value = f"⚠ {html.escape(step.error)}" if step.error else ""
        line.layout.display = "" if step.error else "none"

    step.observe(show, "error")
    show()
    return line


def send_details_to(log: widgets.Output, step: Step) -> None:
    def write(change: dict[str, Any]) -> None:
        if change["new"]:
            log.append_stderr(change["new"] + "\n")

    step.observe(write, "details")


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """(name, content) of a FileUpload's value, in ipywidgets 8's form (a tuple) or 7's (a dict, as on Colab)."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def empty_upload(upload: Any) -> None:
    """Drop the bytes from a FileUpload (they are saved) so the same file can be chosen again.

    ipywidgets 7, Colab's, has a read-only `value` (built from `data` and `metadata`, which hold the bytes too):
    assigning to it raised TraitError after every upload there.
    """
    upload.set_trait("value", {} if isinstance(upload.value, dict) else ())
    if upload.has_trait("data"):  # ipywidgets 7
        upload.set_trait("data", [])
        upload.set_trait("metadata", [])


def counts_table(counts: list[Any]) -> str:
    """The counts as an HTML table: one row per account, and a total row when there are several."""
    rows = list(counts)
    if len(rows) > 1:
        total = rows[0]
        for row in rows[1:]:
            total = total + row
        rows.append(total)
    head = "".join(f"<th>{c}</th>" for c in COUNT_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=ht-kept' if c == 'kept' else ''}>"
            + (html.escape(str(getattr(r, c))) if c == "account" else f"{getattr(r, c):,}")
            + "</td>"
            for c in COUNT_COLUMNS
        )
        + "</tr>"
        for r in rows
    )
    return f"<table class='ht-counts'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def post_card(post: GeneratedPost, author: str) -> str:
    """One generated post as a card, always labelled as AI-generated."""
    classes = "ht-post" + ("" if post.done else " ht-streaming") + (" ht-copied" if post.copied else "")
    note = "<div class='ht-copy-note'>⚠ copies a training post</div>" if post.copied else ""
    who = f"in the style of {html.escape(author)}" if author else "generated"
    return (
        f"<div class='{classes}'><div class='ht-post-head'>{who} <span class='ht-ai'>{AI_LABEL}</span></div>"
        f"<div class='ht-post-text'>{html.escape(post.text)}</div>{note}</div>"
    )


def download_link(text: str, filename: str, mime: str, label: str) -> str:
    # A data: link downloads in the browser without the server writing any file.
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"<a download='{html.escape(filename)}' href='data:{mime};base64,{data}'>⬇ {html.escape(label)}</a>"


def auto() -> widgets.Layout:
    return widgets.Layout(width="auto")  # as wide as the label: the default width cuts long labels


def full_width(**kwargs: Any) -> widgets.Layout:
    return widgets.Layout(width="100%", **kwargs)


# ---------------------------------------------------------------------------------------------------- panels


class DataPanel(widgets.VBox):
    """Step 1: sources, uploads, cleaning choices, Fetch, then the counts and a figure."""

    def __init__(self, step: DataStep) -> None:
        self.step = step
        self.sources = widgets.Textarea(
            placeholder="@handle (X), https://mastodon.social/@user, bsky:name.bsky.social … one or several, separated by commas",
            layout=full_width(height="3.4em"),
        )
        link((step, "sources"), (self.sources, "value"))
        self.token = widgets.Password(
            description="X token", placeholder=TOKEN_PROMPT, continuous_update=False, layout=widgets.Layout(width="60%"),
        )
        self.token.observe(guarded(step, self._take_token), "value")
        self.forget = widgets.Button(description="Forget token", icon="times", layout=auto())
        self.forget.on_click(guarded(step, lambda _: setattr(step, "x_bearer_token", "")))
        step.observe(guarded(step, self._show_token), "x_bearer_token")
        self._show_token()
        self.upload = widgets.FileUpload(accept=",".join(UPLOAD_SUFFIXES), multiple=True, description="Upload files")
        self.upload.observe(guarded(step, self._on_upload), "value")
        self.uploaded = widgets.HTML()
        self.clear = widgets.Button(description="Clear uploads", icon="times", layout=auto())
        self.clear.on_click(guarded(step, lambda _: step.clear_uploads()))
        self.keep_replies = widgets.Checkbox(description="keep replies", indent=False, layout=auto())
        link((step, "keep_replies"), (self.keep_replies, "value"))
        self.keep_retweets = widgets.Checkbox(description="keep reposts", indent=False, layout=auto())
        link((step, "keep_retweets"), (self.keep_retweets, "value"))
        self.fetch = widgets.Button(description="Fetch", button_style="primary", icon="download")
        self.fetch.on_click(guarded(step, lambda _: step.in_background(step.fetch)))
        self.table = widgets.HTML()
        self.figure = widgets.Image(format="png", layout=widgets.Layout(max_width="800px", display="none"))
        self.figure.add_class("ht-data-figure")
        step.observe(guarded(step, self._show_uploads), "uploads")
        step.observe(guarded(step, self._show_corpus), "corpus")
        step.observe(lambda change: setattr(self.fetch, "disabled", change["new"]), "busy")
        hint = widgets.HTML(
            "<div class='ht-hint'>Type handles or profile URLs, or upload your X archive (the .zip from "
            "<i>Settings → Download an archive</i>, or its <code>data/tweets.js</code>), a CSV, JSONL or TXT file "
            "(one post per line), up to {limit} MB each (10 MB in a Jupyter server of your own: see the README). Retweets and replies are dropped unless kept; links are removed; "
            "posts under 3 words and duplicates are dropped.</div>".format(limit=MAX_UPLOAD_BYTES // 2**20)
        )
        super().__init__(
            [
                widgets.HTML("<h3>1. Data</h3>"), hint, self.sources, widgets.HBox([self.token, self.forget]),
                widgets.HBox([self.upload, self.clear, self.uploaded]),
                widgets.HBox([self.keep_replies, self.keep_retweets, self.fetch]),
                status_line(step), error_line(step), self.table, self.figure,
            ]
        )
        self.add_class("ht-data")
        self._show_uploads()

    def _take_token(self, change: dict[str, Any]) -> None:
        """Move a typed token into the app's state and empty the field: a widget's value is part of the widget
        state that Jupyter can save into the notebook file, the app's state is not."""
        token = change["new"].strip()
        if change["new"]:
            self.token.value = ""  # also for whitespace: the field never keeps what was typed
        if token:
            self.step.x_bearer_token = token

    def _show_token(self, _: object = None) -> None:
        """Say whether a token is set (never which), and offer to forget a typed one."""
        origin = self.step.token_origin()
        self.token.placeholder = {"typed": TOKEN_SET, "environment": TOKEN_FROM_ENVIRONMENT}.get(origin or "", TOKEN_PROMPT)
        self.forget.layout.display = None if origin == "typed" else "none"

    def _on_upload(self, change: dict[str, Any]) -> None:
        files = uploaded_files(change["new"])
        if not files:
            return
        for name, content in files:
            if not self.step.add_upload(name, content):
                break
        empty_upload(self.upload)

    def _show_uploads(self, _: object = None) -> None:
        names = [os.path.basename(p) for p in self.step.uploads]
        self.uploaded.value = (
            f"<span class='ht-hint'>uploaded: {html.escape(', '.join(names))}</span>" if names else "<span class='ht-hint'>no file uploaded</span>"
        )
        self.clear.disabled = not names

    def _show_corpus(self, _: object = None) -> None:
        corpus = self.step.corpus
        if corpus is None:
            self.table.value = ""
            self.figure.layout.display = "none"
            return
        self.table.value = counts_table(corpus.counts)
        self.figure.value = plots.png(plots.data_figure(corpus.posts))
        self.figure.layout.display = ""


class TrainPanel(widgets.VBox):
    """Step 2: what to train and how, Train/Stop, progress and the loss curve; or pick an existing bot."""

    NEW = ("a new bot, from the data of step 1", "")

    def __init__(self, step: TrainStep) -> None:
        self.step = step
        self.base_model = widgets.Text(
            description="base model", placeholder="default: the embedded SmolLM2-135M-Instruct; or a hub id or model folder",
            layout=widgets.Layout(width="70%"),
        )
        link((step, "base_model"), (self.base_model, "value"))
        self.method = widgets.ToggleButtons(
            options=[("LoRA", "lora"), ("full fine-tune", "full")], description="method",
            tooltips=["small adapters: less memory, the choice for CPUs and small machines", "every weight: best on a GPU"],
        )
        link((step, "method"), (self.method, "value"))
        self.epochs = widgets.BoundedFloatText(min=0.5, max=20, step=0.5, description="epochs", layout=widgets.Layout(width="180px"))
        link((step, "epochs"), (self.epochs, "value"))
        self.existing = widgets.Dropdown(description="bot", options=[self.NEW], layout=widgets.Layout(width="70%"))
        self.start_over = widgets.Checkbox(
            description="start over (discard checkpoints of an earlier, different run)", indent=False, layout=auto()
        )
        link((step, "start_over"), (self.start_over, "value"))
        self.train = widgets.Button(description="Train", button_style="primary", icon="play")
        self.train.on_click(guarded(step, lambda _: step.start()))
        self.stop = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.stop.on_click(guarded(step, lambda _: step.stop()))
        self.use = widgets.Button(description="Generate with this bot", icon="check", disabled=True, layout=auto())
        self.use.on_click(guarded(step, lambda _: step.in_background(step.load)))
        self.progress = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="60%"))
        self.progress.add_class("ht-progress")
        self.loss = widgets.Image(format="png", layout=widgets.Layout(max_width="600px", display="none"))
        self.loss.add_class("ht-loss")
        self._drawn = 0.0

        self._show_bots()
        link((step, "existing"), (self.existing, "value"))
        step.observe(guarded(step, self._show_bots), "bots")
        step.observe(guarded(step, self._on_choice), "existing")
        step.observe(guarded(step, self._on_busy), "busy")
        step.observe(guarded(step, self._on_training), "training")
        step.observe(guarded(step, self._on_progress), ["step", "total_steps"])
        step.observe(guarded(step, lambda _: self._draw(throttle=True)), "train_losses")
        step.observe(guarded(step, lambda _: self._draw()), "validation_losses")
        hint = widgets.HTML(
            "<div class='ht-hint'>LoRA trains small adapters and is the choice on a CPU or a small machine (the default "
            "model takes a few seconds a step on a CPU); a full fine-tune is best on a GPU. Training runs in the "
            "background: Stop saves a checkpoint and the bot learnt so far; Train again with the same settings resumes. "
            "Choose an existing bot to continue training it on the data of step 1, or to generate with it.</div>"
        )
        super().__init__(
            [
                widgets.HTML("<h3>2. Train</h3>"), hint, self.base_model, self.method, self.epochs, self.existing,
                self.start_over, widgets.HBox([self.train, self.stop, self.use]), self.progress,
                status_line(step), error_line(step), self.loss,
            ]
        )
        self.add_class("ht-train")
        self._on_choice()

    def _show_bots(self, _: object = None) -> None:
        chosen = self.step.existing
        options = [self.NEW] + [
            (
                f"{b['name']} · {', '.join(b['accounts'])} · {b['method']} · perplexity {b['perplexity']}"
                + (" · this session" if b.get("session") else ""),
                b["path"],
            )
            for b in self.step.bots
        ]
        self.existing.options = options
        self.existing.value = chosen if chosen in {value for _, value in options} else ""

    def _on_choice(self, _: object = None) -> None:
        chosen = bool(self.step.existing)
        self.use.disabled = not chosen or self.step.busy
        self.train.description = "Continue training" if chosen else "Train"
        self.base_model.disabled = chosen  # a bot continues from its own base

    def _on_busy(self, change: dict[str, Any]) -> None:
        self.train.disabled = change["new"]
        self.use.disabled = change["new"] or not self.step.existing

    def _on_training(self, change: dict[str, Any]) -> None:
        training = change["new"]
        self.stop.disabled = not training
        if training:
            self.progress.bar_style = ""
            return
        finished = self.step.total_steps > 0 and self.step.step >= self.step.total_steps
        self.progress.bar_style = "warning" if self.step.stopped else "success" if finished else "danger"
        if self.step.train_losses or self.step.validation_losses:
            self._draw()  # the final curve, with any points the throttle skipped

    def _on_progress(self, _: object = None) -> None:
        self.progress.max = max(1, self.step.total_steps)
        self.progress.value = min(self.step.step, self.progress.max)

    def _draw(self, throttle: bool = False) -> None:
        if not (self.step.train_losses or self.step.validation_losses):
            self.loss.layout.display = "none"
            return
        now = time.monotonic()
        if throttle and now - self._drawn < REDRAW_SECONDS:
            return
        self._drawn = now
        figure = plots.loss_figure(self.step.train_losses, self.step.validation_losses, self.step.total_steps, end_weight=self.step.end_weight)
        self.loss.value = plots.png(figure)
        self.loss.layout.display = ""


class GeneratePanel(widgets.VBox):
    """Step 3: prompt, number and temperature, Generate, then post cards and downloads."""

    def __init__(self, step: GenerateStep) -> None:
        self.step = step
        self.which = widgets.HTML()
        self.prompt = widgets.Text(description="prompt", placeholder="how each post starts (optional)", layout=widgets.Layout(width="70%"))
        link((step, "prompt"), (self.prompt, "value"))
        self.n = widgets.BoundedIntText(min=1, max=20, description="posts", layout=widgets.Layout(width="180px"))
        link((step, "n"), (self.n, "value"))
        self.temperature = widgets.FloatSlider(
            min=0.1, max=2.0, step=0.05, description="temperature", readout_format=".2f", style={"description_width": "initial"}
        )
        link((step, "temperature"), (self.temperature, "value"))
        self.generate = widgets.Button(description="Generate", button_style="primary", icon="magic")
        self.generate.on_click(guarded(step, lambda _: step.start()))
        self.stop = widgets.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self.stop.on_click(guarded(step, lambda _: step.stop()))
        self.cards = widgets.VBox()
        self.cards.add_class("ht-cards")
        self.downloads = widgets.HTML()
        self.downloads.add_class("ht-downloads")
        step.observe(guarded(step, self._show_bot), "bot")
        step.observe(guarded(step, self._show_posts), "posts")
        step.observe(guarded(step, self._on_busy), "busy")
        hint = widgets.HTML(
            "<div class='ht-hint'>Posts appear as they are generated. Lower temperatures give safer, more repetitive "
            "posts; higher ones wilder posts. A post that repeats 8 words in a row of a training post (or a whole short "
            "one) is marked as a copy.</div>"
        )
        super().__init__(
            [
                widgets.HTML("<h3>3. Generate</h3>"), hint, self.which, self.prompt, self.n, self.temperature,
                widgets.HBox([self.generate, self.stop]), status_line(step), error_line(step), self.cards, self.downloads,
            ]
        )
        self.add_class("ht-generate")
        self._show_bot()

    def _author(self) -> str:
        bot = self.step.bot
        return ", ".join(bot.info.get("accounts", [])) if bot is not None else ""

    def _show_bot(self, _: object = None) -> None:
        bot = self.step.bot
        self.which.value = (
            f"<div class='ht-hint'>generating with <b>{html.escape(bot.path.name)}</b> (trained on {html.escape(self._author())})</div>"
            if bot is not None
            else "<div class='ht-hint'>no bot yet: train one in step 2, or choose an existing one there</div>"
        )

    def _show_posts(self, _: object = None) -> None:
        posts = self.step.posts
        author = self._author()
        cards = list(self.cards.children)
        if len(cards) > len(posts):
            for card in cards[len(posts) :]:
                card.close()
            cards = cards[: len(posts)]
        while len(cards) < len(posts):
            cards.append(widgets.HTML())
        for card, post in zip(cards, posts):
            card.value = post_card(post, author)  # unchanged values send nothing
        if len(cards) != len(self.cards.children):
            self.cards.children = cards

    def _on_busy(self, change: dict[str, Any]) -> None:
        self.generate.disabled = change["new"]
        self.stop.disabled = not change["new"]
        if change["new"] or not self.step.records():
            self.downloads.value = ""
            return
        name = (self.step.bot.info.get("name") if self.step.bot is not None else None) or "bot"
        self.downloads.value = (
            download_link(self.step.as_csv(), f"{name}-ai-generated.csv", "text/csv", "download CSV")
            + download_link(self.step.as_json(), f"{name}-ai-generated.json", "application/json", "download JSON")
        )


# ---------------------------------------------------------------------------------------------------- the app


class App(widgets.VBox):
    """The whole app. Keyword arguments set the starting values (see `AppState`); `app.state` drives it from code."""

    def __init__(
        self, *, sources: str = "", base_model: str = "", max_steps: int = -1, method: str = "lora", epochs: float = 2.0,
        state: AppState | None = None,
    ) -> None:
        quiet_libraries()
        self.state = state or AppState(sources=sources, base_model=base_model, max_steps=max_steps, method=method, epochs=epochs)
        self.log_output = widgets.Output()
        log_box = widgets.Accordion(children=[self.log_output], selected_index=None)
        log_box.set_title(0, "Log: details of unexpected errors")
        for step in self.state.steps:
            send_details_to(self.log_output, step)
        self.data = DataPanel(self.state.data)
        self.train = TrainPanel(self.state.train)
        self.generate = GeneratePanel(self.state.generate)
        header = widgets.HTML(f"{STYLE}<h2>HuggingTweets</h2><div class='ht-hint'>{INTRO}</div>")
        super().__init__([header, self.data, self.train, self.generate, log_box])
        self.add_class("ht-app")
