"""The friendly facade: train a bot from sources, load it from its folder, generate posts.

    from huggingtweets import Bot
    bot = Bot.train(["twitter-archive.zip"], keep_replies=True)   # ~/.huggingtweets/bots/<handle>
    bot.generate(n=5, prompt="I think")
    bot = Bot.load("~/.huggingtweets/bots/<handle>")

A bot folder holds everything needed to use it and nothing secret:

    model.safetensors + config.json         full fine-tune
    adapter_model.safetensors + adapter_config.json   LoRA (the base is named in huggingtweets.json)
    tokenizer files, generation_config.json
    huggingtweets.json   what it was trained from and how
    metrics.json         validation loss and perplexity per evaluation, base vs bot
    counts.json          the data table
    ngrams.bin           hashes of the training posts' 8-word runs, for the copy check
    README.md            the model card
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from . import atomic, card, distributed, models, paths
from .clean import CleanOptions
from .corpus import Corpus, build_corpus
from .dataset import MIN_CHARACTERS, markers
from .ending import end_bias
from .errors import HuggingTweetsError
from .evaluate import perplexity
from .generate import GenerateOptions, Partial, Sample, fast_weights, generate, stream
from .hardware import accelerator
from .lengths import tune
from .memorisation import CopyChecker
from .sources import FetchOptions, Progress
from .train import Listener, TrainConfig, TrainResult, interrupted_run_posts, train_model
from .version import __version__
from .wrappers import is_peft

INFO = "huggingtweets.json"
log = logging.getLogger(__name__)


def is_bot_folder(path: str | Path) -> bool:
    return (Path(path).expanduser() / INFO).is_file()


def check_replaceable(out_dir: Path) -> None:
    """A bot is saved by replacing `out_dir` whole: allow that only for a new or empty folder or an older bot.

    Also makes the folder's parent, where the checkpoints go too, so a path that cannot be written fails before training.
    """
    if out_dir.is_symlink():
        raise HuggingTweetsError(f"{out_dir} is a link; give the folder it points to, or a new one")
    if out_dir.exists() and not out_dir.is_dir():
        raise HuggingTweetsError(f"{out_dir} is a file; give a folder for the bot")
    if out_dir.is_dir() and not is_bot_folder(out_dir) and any(out_dir.iterdir()):
        raise HuggingTweetsError(f"{out_dir} is a folder with other files in it, which saving the bot would replace; give a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a folder that cannot be made (under a file, read-only) fails now


def _local_or_hub(base: str) -> str:
    """A base model as it can be found again: a local folder by its absolute path, a hub id as given."""
    path = Path(base).expanduser()
    return str(path.resolve()) if path.exists() else base


def _corrupt(path: str | Path, reason: str) -> HuggingTweetsError:
    return HuggingTweetsError(f"bot folder {path} is corrupt or incomplete ({reason}): train the bot again")


@contextmanager
def _own_files(path: str | Path) -> Iterator[None]:
    """Loading what a bot folder holds itself: a file missing or damaged there is the bot's fault, not a base model's
    (`models` words its errors for a base model given with --base-model)."""
    try:
        yield
    except models.LoadError as e:
        raise _corrupt(path, e.reason) from None


def _device() -> torch.device:
    return torch.device(accelerator())


class Bot:
    def __init__(self, path: Path, model: Any, tokenizer: Any, info: dict[str, Any], checker: CopyChecker | None) -> None:
        self.path = path
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.checker = checker
        self._converting = threading.Lock()  # two threads generating at once must not both convert the weights

    def __repr__(self) -> str:
        return f"Bot({str(self.path)!r}, accounts={self.info.get('accounts')}, base={self.info.get('base_model')!r})"

    # ---- loading -------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, trainable: bool = False) -> Bot:
        """Load a bot folder. `trainable` keeps LoRA adapters separate so training can continue."""
        folder = Path(path).expanduser()
        atomic.recover(folder)  # a save cut off between its two renames
        if folder.exists() and not folder.is_dir():
            raise HuggingTweetsError(f"{path} is a file, not a bot folder: give the folder `huggingtweets train` saved the bot in")
        if not folder.is_dir():
            raise HuggingTweetsError(f"bot folder {path} does not exist: train one with `huggingtweets train`, or list them with `huggingtweets bots`")
        try:
            info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise HuggingTweetsError(f"{path} is not a bot folder (no {INFO}): train one with `huggingtweets train`") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            info = None
        if not isinstance(info, dict):
            raise HuggingTweetsError(f"{path}/{INFO} is corrupt: train the bot again")
        try:
            with _own_files(path):
                tokenizer = models.load_tokenizer(str(folder))
            if info.get("adapter", info.get("method") == "lora"):  # bots saved before "adapter" was written: by method
                from peft import PeftModel

                base = models.load_model(info.get("base_model"))  # its errors are about the base, and say so
                with _own_files(path):
                    model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
                if not trainable:
                    model = model.merge_and_unload()  # one matrix per layer again: faster generation
            else:
                with _own_files(path):
                    model = models.load_model(str(folder))
        except HuggingTweetsError:
            raise
        except Exception as e:  # a truncated safetensors file, a config that does not match the weights, ...
            raise _corrupt(path, models.first_line(e)) from None
        ngrams = folder / "ngrams.bin"
        try:
            checker = CopyChecker.load(ngrams) if ngrams.is_file() else None
        except ValueError:  # not a whole number of 8-byte hashes: cut short
            raise HuggingTweetsError(f"{ngrams} is corrupt, so copies could not be caught: train the bot again") from None
        model.to(_device())
        model.train(trainable)
        return cls(folder, model, tokenizer, info, checker)

    # ---- training ------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        sources: Sequence[str] | str,
        out: str | Path | None = None,
        *,
        clean: CleanOptions | None = None,
        fetch: FetchOptions | None = None,
        keep_replies: bool | None = None,
        min_characters: int = MIN_CHARACTERS,
        progress: Progress | None = None,
        **training: Any,
    ) -> Bot:
        """Fetch/read the sources, clean them, fine-tune and save the bot.

        `training` takes the keywords of `train_corpus`: base_model (default: the embedded SmolLM2), config,
        restart, listener, stop, show_progress.
        """
        if out:
            check_replaceable(Path(out).expanduser())  # before fetching, not after
        if training.get("config") is not None:
            training["config"].validate()  # a bad setting too
        clean = clean or CleanOptions()
        if keep_replies is not None:
            clean.keep_replies = keep_replies
        corpus = build_corpus([sources] if isinstance(sources, str) else list(sources), clean, fetch, progress, min_characters)
        if progress:
            progress(corpus.table())
            if corpus.warning:
                progress(f"warning: {corpus.warning}")
        return cls.train_corpus(corpus, out, progress=progress, **training)

    @classmethod
    def train_corpus(
        cls,
        corpus: Corpus,
        out: str | Path | None = None,
        *,
        base_model: str | None = None,
        config: TrainConfig | None = None,
        restart: bool = False,
        listener: Listener | None = None,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        show_progress: bool = True,
    ) -> Bot:
        config = config or TrainConfig()
        config.validate()
        if not distributed.is_main():
            progress = None  # one process of several (torchrun, accelerate): the main one reports
        out_dir = Path(out).expanduser() if out else paths.bots_dir() / corpus.name
        check_replaceable(out_dir)  # before training, not after an hour of it
        start = _starting_point(cls, base_model, config, progress)
        config = start.config.resolved()  # after the starting point, which can decide the method
        # New adapters over another bot's weights are saved merged into them: an adapter-only folder would need that
        # bot's folder forever, and would replace it when saved under the same name.
        merged = config.method == "lora" and not is_peft(start.model) and is_bot_folder(start.base_spec)
        # Their checkpoints hold only the adapters, which fit the weights they were trained over: a run resumes only
        # over the same weights, which the base bot's creation time tells apart (a stop saved in its place changes them).
        run_base = f"{start.base_spec}@{start.continued_created}" if merged else str(start.base_spec)
        in_place = merged and out_dir.resolve() == Path(str(start.base_spec)).resolve()
        model, tokenizer = start.model, start.tokenizer
        markers(tokenizer)  # fails early, clearly, for a tokenizer without an end token

        work_dir = out_dir.parent / f".{out_dir.name}.training"
        chosen = {"clean": asdict(corpus.options), "sources": sorted(a.source for a in corpus.accounts)}
        train_texts, validation_texts, left_out = _run_posts(corpus, work_dir, config, run_base, chosen, restart, progress)
        base_ppl = distributed.once(lambda: _base_perplexity(model, tokenizer, validation_texts, config))
        if stop is not None and stop.is_set():  # pressed while the model loaded and was measured: nothing to keep yet
            raise HuggingTweetsError("stopped before the first training step: nothing was trained or saved")
        if progress:
            progress(f"training ({config.method}, {config.precision}, {config.epochs:g} epochs, lr {config.learning_rate:g}) on {len(train_texts)} posts")
        result = train_model(
            model, tokenizer, train_texts, validation_texts, config, work_dir,
            base=run_base, restart=restart, listener=listener, stop=stop, show_progress=show_progress,
            run_name=corpus.name, progress=progress, data=chosen,
        )
        generation = _generation_settings(result.model, tokenizer, train_texts, validation_texts, config, progress)
        info = _info(out_dir.name, corpus, start, config, merged, chosen["clean"], generation, result.stopped, left_out)
        checker = CopyChecker.from_texts(p.text for p in corpus.posts)
        bot = cls(out_dir, result.model.merge_and_unload() if merged else result.model, tokenizer, info, checker)
        if distributed.is_main():
            bot._save(out_dir, corpus, _metrics(result, base_ppl))
            if not result.stopped or in_place:
                # Finished: checkpoints are no longer needed. Stopped in place: they were for the weights just replaced.
                shutil.rmtree(work_dir, ignore_errors=True)
        distributed.barrier()  # no process returns a bot whose folder is still being written
        if result.stopped and progress:
            progress(
                f"stopped: saved {out_dir.name} as trained so far; train again to go on from it" if in_place
                else f"stopped: checkpoints kept in {work_dir}; train again with the same settings to resume"
            )
        if is_peft(bot.model):
            bot.model = bot.model.merge_and_unload()
        bot.model.eval()
        return bot

    def _save(self, out_dir: Path, corpus: Corpus, metrics: dict[str, Any]) -> None:
        from transformers import GenerationConfig

        start, end = markers(self.tokenizer)
        with atomic.folder(out_dir) as tmp:
            model = self.model
            if is_peft(model):
                # Name the base as others would load it (a hub id), not as a path on this machine.
                for adapter in model.peft_config.values():
                    adapter.base_model_name_or_path = models.hub_id(self.info["base_model"])
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            GenerationConfig(
                do_sample=True, top_p=0.95, temperature=1.0, max_new_tokens=96, bos_token_id=start,
                eos_token_id=[end] if start == end else [end, start], pad_token_id=self.tokenizer.pad_token_id,
            ).save_pretrained(tmp)
            atomic.write_json(tmp / INFO, self.info)
            atomic.write_json(tmp / "metrics.json", metrics)
            atomic.write_json(tmp / "counts.json", [c.to_dict() for c in corpus.counts])
            assert self.checker is not None
            self.checker.save(tmp / "ngrams.bin")
            atomic.write_text(tmp / "README.md", card.render(self.info, metrics, corpus.table()))
        self.path = out_dir

    # ---- using ---------------------------------------------------------------------------------

    def options(self, **kwargs: Any) -> GenerateOptions:
        names = {f.name for f in fields(GenerateOptions)}
        unknown = set(kwargs) - names
        if unknown:
            raise TypeError(f"unknown generation option(s): {', '.join(sorted(unknown))}")
        kwargs.setdefault("end_bias", float(self.info.get("generation", {}).get("end_bias") or 0.0))  # 0: bots before it
        return GenerateOptions(**kwargs)

    def generate(self, n: int = 5, prompt: str = "", **kwargs: Any) -> list[Sample]:
        """`n` new posts starting with `prompt`; each says whether it copies a training post (copies are redrawn)."""
        return generate(self._generation_model(), self.tokenizer, self.options(n=n, prompt=prompt, **kwargs), self.checker)

    def stream(self, prompt: str = "", **kwargs: Any) -> Iterator[Partial]:
        """One post as it is generated, for user interfaces."""
        return stream(self._generation_model(), self.tokenizer, self.options(prompt=prompt, **kwargs), self.checker)

    def _generation_model(self) -> Any:
        """The model, switched to bf16 weights where that generates faster (`generate.fast_weights`), once."""
        with self._converting:
            return fast_weights(self.model)

    def perplexity(self, texts: list[str]) -> float:
        """Held-out perplexity of `texts`, with the weights the bot has now (bf16 once it has generated on a CPU with
        bf16 arithmetic, see `fast_weights`: about 0.2% off the float32 figure)."""
        return perplexity(self.model, self.tokenizer, texts, int(self.info.get("config", {}).get("block_size", 128)))

    @property
    def metrics(self) -> dict[str, Any]:
        metrics = atomic.read_json(self.path / "metrics.json")
        return metrics if isinstance(metrics, dict) else {}  # missing or damaged: the bot generates, with no figures


@dataclass
class _Start:
    """Where a training run starts: the weights, and what the bot folder will say it was trained from."""

    model: Any
    tokenizer: Any
    config: TrainConfig
    base_spec: str
    continued_from: str | None = None
    continued_created: str | None = None


def _starting_point(cls: type[Bot], base_model: str | None, config: TrainConfig, progress: Progress | None) -> _Start:
    """A base model, or an existing bot to continue training (its adapters go on, or its merged weights are the base)."""
    if not (base_model and is_bot_folder(base_model)):
        if progress:
            progress(f"loading base model {models.describe(base_model)}")
        with distributed.main_first():  # the embedded model is converted once, by the main process
            model, tokenizer = models.load_base(base_model)
        base_spec = models.DEFAULT_BASE if models.is_default(base_model) else _local_or_hub(str(base_model))
        return _Start(model, tokenizer, config, base_spec)
    prior = cls.load(base_model, trainable=True)
    model = prior.model
    if is_peft(model) and config.method != "full":
        config = replace(config, method="lora")  # its adapters go on training, over the base they were trained on
        base_spec = prior.info.get("base_model")
    else:
        # All weights from here on (a LoRA bot's adapters merged into them): this bot is the base.
        if is_peft(model):
            model = model.merge_and_unload().requires_grad_(True)  # peft froze the base weights
        base_spec = str(Path(base_model).expanduser().resolve())
    return _Start(model, prior.tokenizer, config, base_spec, prior.info.get("name"), prior.info.get("created"))


def _run_posts(
    corpus: Corpus, work_dir: Path, config: TrainConfig, run_base: str, chosen: dict[str, Any], restart: bool,
    progress: Progress | None,
) -> tuple[list[str], list[str], int]:
    """The posts to train and validate on, and how many of the corpus's are left out.

    An interrupted run resumes on the posts it started with, so posts fetched since are left out until --restart.
    """
    train_texts, validation_texts = corpus.texts()
    # Decided once, by the process that writes the work folder, so that every process trains on the same posts.
    kept = None if restart else distributed.once(
        lambda: interrupted_run_posts(work_dir, config, run_base, train_texts, validation_texts, chosen)
    )
    if not kept:
        return train_texts, validation_texts, 0
    left_out = len(set(train_texts) | set(validation_texts)) - len(set(kept[0]) | set(kept[1]))
    if left_out and progress:
        progress(f"resuming the interrupted run on the posts it started with ({left_out} fetched since left out; --restart trains on all)")
    return kept[0], kept[1], left_out


def _cpu_bf16(config: TrainConfig) -> bool:
    return config.precision == "bf16" and _device().type == "cpu"


def _base_perplexity(model: Any, tokenizer: Any, validation_texts: list[str], config: TrainConfig) -> float:
    # In the arithmetic the run evaluates the bot in (the Trainer's evaluation runs under its autocast): like for like.
    if not validation_texts:
        return math.nan
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=_cpu_bf16(config)):
        return perplexity(model, tokenizer, validation_texts, config.block_size, config.batch_size)


def _generation_settings(
    model: Any, tokenizer: Any, train_texts: list[str], validation_texts: list[str], config: TrainConfig,
    progress: Progress | None,
) -> dict[str, Any]:
    """The bot's sampling defaults, with its end bias.

    The end marker's odds that make the held-out posts end once each on average (ending.py), then tuned on the
    bot's own posts until their median length is the person's (lengths.py).
    """
    held_out = distributed.once(lambda: end_bias(model, tokenizer, validation_texts, config.block_size))
    if progress and config.length_posts:
        progress(f"tuning where posts end: {config.length_posts} posts drawn at each of a few end biases")
    lengths = distributed.once(lambda: tune(model, tokenizer, train_texts, held_out, config.length_posts, _cpu_bf16(config)))
    return {
        "top_p": 0.95, "temperature": 1.0, "max_new_tokens": 96, "end_bias": lengths.bias if lengths else held_out,
        "end_calibration": {"held_out_bias": held_out, **(lengths.to_dict() if lengths else {})},
    }


def _info(
    name: str, corpus: Corpus, start: _Start, config: TrainConfig, merged: bool, clean: dict[str, Any],
    generation: dict[str, Any], stopped: bool, left_out: int,
) -> dict[str, Any]:
    """huggingtweets.json: what the bot was trained from and how, with nothing secret and no local paths."""
    return {
        "name": name,
        "huggingtweets_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "accounts": [a.name for a in corpus.accounts],
        # Sources as given, but files by name only: a bot folder should not reveal local paths.
        "sources": [a.source if not Path(a.source).exists() else Path(a.source).name for a in corpus.accounts],
        "base_model": start.base_spec,
        "base_model_description": models.describe(start.base_spec),
        "continued_from": start.continued_from,
        "method": config.method,
        "adapter": config.method == "lora" and not merged,  # a LoRA adapter over base_model, or whole weights
        "config": asdict(config),
        "clean": clean,
        "generation": generation,
        "stopped_early": stopped,
        "posts_left_out": left_out,
    }


def _metrics(result: TrainResult, base_ppl: float) -> dict[str, Any]:
    """metrics.json: the run's history and the perplexity of the held-out posts, base vs bot."""
    bot_ppl = math.exp(result.best_eval_loss) if result.best_eval_loss is not None else math.nan
    return {
        "history": result.history,
        "base_perplexity": _round(base_ppl),
        "bot_perplexity": _round(bot_ppl),
        "best_validation_loss": result.best_eval_loss,
        "steps": result.steps,
        "seconds": result.seconds,
        "resumed_from_step": int(result.resumed_from.rsplit("-", 1)[1]) if result.resumed_from else None,
        "data": result.train_stats,
    }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


def list_bots(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """The bots in `folder` (default: the bots folder), newest first, with what they were trained on."""
    root = Path(folder).expanduser() if folder else paths.bots_dir()
    found = []
    for path in sorted(root.glob(f"*/{INFO}")):
        if path.parent.name.startswith("."):
            continue  # a save or a training run in progress (or cut off): `.NAME.*.tmp`, `.NAME.training`
        info, metrics = atomic.read_json(path), atomic.read_json(path.parent / "metrics.json")
        if not (isinstance(info, dict) and isinstance(metrics, dict)):
            continue  # a half-deleted, damaged or foreign folder is not listed
        found.append(
            {
                "name": path.parent.name,
                "path": str(path.parent),
                "accounts": info.get("accounts", []),
                "base_model": info.get("base_model"),
                "method": info.get("method"),
                "created": info.get("created"),
                "perplexity": metrics.get("bot_perplexity"),
                "base_perplexity": metrics.get("base_perplexity"),
            }
        )
    return sorted(found, key=lambda b: b.get("created") or "", reverse=True)


__all__ = ["Bot", "list_bots", "is_bot_folder", "CleanOptions", "TrainConfig", "TrainResult", "FetchOptions"]
