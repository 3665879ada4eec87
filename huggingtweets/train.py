"""Fine-tuning with the Hugging Face `Trainer`: full or LoRA, checkpoints, resume, early stopping.

    result = train_model(model, tokenizer, train_texts, validation_texts, TrainConfig(), work_dir)

This layer knows nothing about bots, folders of posts or user interfaces: it takes texts and a model,
trains, and reports progress as `TrainingEvent`s to whoever listens (the CLI's tqdm bar, the app's
progress bar and loss plot). `bot.py` turns the result into a bot folder.

Checkpoints go to `work_dir` (Trainer's `checkpoint-N` folders, written every half epoch). A run
killed at any point and started again with the same data and settings resumes from the last one;
`Trainer` restores optimizer, scheduler and RNG state and skips the batches already seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from . import atomic, distributed
from .compiling import MIN_STEPS, Compile, check_setting, compile_wanted, compiled
from .dataset import Blocks, build_blocks, markers, steps_per_epoch
from .errors import HuggingTweetsError, check_seed
from .hardware import BF16_CPU_ATTENTION, accelerator, default_precision, set_attention
from .loss import EndWeight, weighted_lm_loss
from .wrappers import is_peft

log = logging.getLogger(__name__)

Method = Literal["auto", "lora", "full"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

# The CPU default, LoRA at batch 2 (see benchmarks/README.md): 2e-3 reached the HuggingTweets recipe's best held-out
# perplexity soonest and stayed stable; 4e-3 was as fast but its validation loss jumped between evaluations.
LORA_LR = 2e-3
POSTS = "posts.json"  # in a run's checkpoint folder: the texts it trains on, so an interrupted run can resume on them


@dataclass
class TrainConfig:
    """Training settings. `None`/"auto" values are filled in per device by `resolved()`."""

    method: Method = field(default="auto", metadata={"help": "lora or full; auto: LoRA on CPU (about 2x faster per token), full on GPU"})
    epochs: float | None = field(default=None, metadata={"help": "passes over the posts; auto: 2 on CPU, 4 on GPU"})
    learning_rate: float | None = field(default=None, metadata={"help": "auto: 2e-3 for LoRA (measured on CPU, see benchmarks/), 1e-4 for a full fine-tune"})
    batch_size: int | None = field(
        default=None,
        metadata={"help": "blocks per step; auto: 2 for LoRA on CPU (peak memory under 2 GB, see benchmarks/), 8 otherwise"},
    )
    block_size: int = field(default=128, metadata={"help": "tokens per block; posts are packed whole into blocks"})
    seed: int = field(default=42, metadata={"help": "seed for initialisation and data order"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (overrides epochs when > 0)"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank (adapters on every linear layer)"})
    lora_layers: int | None = field(
        default=None,
        metadata={"help": "LoRA on the top N transformer layers only (the backward pass then stops there); None: all layers"},
    )
    early_stopping_patience: int = field(default=2, metadata={"help": "evaluations without improvement before stopping"})
    evals_per_epoch: int = field(default=2, metadata={"help": "validation (and checkpoint) points per epoch"})
    save_minutes: float = field(default=5.0, metadata={"help": "also checkpoint at least this often, so a killed run loses little"})
    precision: Precision = field(
        default="auto",
        metadata={"help": "auto: bf16/fp16 on GPU; on a CPU bf16 autocast where it has bf16 arithmetic (~2.2x faster steps, see hardware.py), else fp32"},
    )
    wandb: bool = field(default=False, metadata={"help": "log to Weights & Biases (offline unless WANDB_API_KEY is set)"})
    fused_loss: bool = field(
        default=True,
        metadata={"help": "on a CPU: output layer and loss in one pass (same loss, faster steps, see loss.py); False: transformers' own"},
    )
    compile: Compile = field(
        default="auto",
        metadata={"help": f"torch.compile the transformer layers (needs a C++ compiler; ~1.1x faster LoRA steps after about a minute, see compiling.py); auto: CPU runs of {MIN_STEPS}+ steps of Llama-family models"},
    )

    isolate_posts: bool = field(
        default=False,
        metadata={"help": "True: each packed post sees only itself, as in generation (the default 2026-12-06 to 07); False: it also sees the posts packed before it, measured to end the bot's posts more reliably (bench --voice --levers)"},
    )
    end_loss_weight: float = field(
        default=3.0,
        metadata={"help": "the end-of-post token's weight in the training loss, against 1 for every other token: 3 makes the bot learn where posts end (1 was the default before 2026-12-07; measured in bench --voice --levers)"},
    )
    length_posts: int = field(
        default=64,
        metadata={"help": "after training, posts drawn per try to tune where posts end to the person's median length (lengths.py); 0: held-out posts only"},
    )

    def validate(self) -> None:
        if self.length_posts < 0:
            raise HuggingTweetsError(f"length posts must be 0 or more, got {self.length_posts}")
        if not (math.isfinite(self.end_loss_weight) and self.end_loss_weight > 0):
            raise HuggingTweetsError(f"end loss weight must be a positive number, got {self.end_loss_weight}")
        for name in ("batch_size", "block_size", "lora_rank", "evals_per_epoch"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise HuggingTweetsError(f"{name.replace('_', ' ')} must be positive, got {getattr(self, name)}")
        if self.epochs is not None and not self.epochs > 0:
            raise HuggingTweetsError(f"epochs must be positive, got {self.epochs}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise HuggingTweetsError(f"learning rate must be positive, got {self.learning_rate}")
        if self.lora_layers is not None and self.lora_layers <= 0:
            raise HuggingTweetsError(f"LoRA layers must be positive, got {self.lora_layers}")
        check_seed(self.seed)
        if self.method not in ("auto", "lora", "full"):
            raise HuggingTweetsError(f"method must be lora, full or auto, got {self.method}")
        check_setting(self.compile)

    def resolved(self, device: str | None = None) -> TrainConfig:
        """A copy with every automatic choice made for `device` ("cpu", "cuda" or "mps"; default: this machine's)."""
        self.validate()
        device = device or accelerator()
        gpu = device != "cpu"
        method: Method = self.method if self.method != "auto" else ("full" if gpu else "lora")
        precision = self.precision if self.precision != "auto" else default_precision(device)
        return TrainConfig(
            **{
                **asdict(self),
                "method": method,
                "epochs": self.epochs if self.epochs is not None else (4.0 if gpu else 2.0),
                "learning_rate": self.learning_rate or (LORA_LR if method == "lora" else 1e-4),
                "batch_size": self.batch_size or (2 if method == "lora" and not gpu else 8),
                "precision": precision,
            }
        )


@dataclass
class TrainingEvent:
    """What a progress listener receives. `kind` is start, step, log (a train loss), eval or end."""

    kind: Literal["start", "step", "log", "eval", "end"]
    step: int
    total_steps: int
    epoch: float
    loss: float | None = None
    eval_loss: float | None = None
    seconds: float = 0.0


Listener = Callable[[TrainingEvent], None]


@dataclass
class TrainResult:
    model: Any  # trained weights: the best evaluation's when there was validation data
    config: TrainConfig
    history: list[dict[str, float]]  # one row per evaluation: step, epoch, train/validation loss, perplexity, tokens, seconds
    best_eval_loss: float | None
    steps: int
    seconds: float
    stopped: bool  # stopped early on request (the Stop button, or Ctrl-C handled by the caller)
    resumed_from: str | None
    train_stats: dict[str, Any]


def run_fingerprint(config: TrainConfig, base: str, train_texts: list[str], validation_texts: list[str]) -> str:
    """Identifies a run: resuming is only allowed into checkpoints of the same data, base and settings.

    Settings that change only how fast the same training runs are left out: among them the precision, since mixed
    precision keeps float32 weights and optimizer state, so a run stopped in float32 resumes in bf16 (after an upgrade
    that made bf16 this CPU's default, or with HUGGINGTWEETS_CPU_BF16 changed) and the other way round.
    """
    digest = hashlib.sha256()
    # length_posts acts after training: checkpoints of a run with another value are the same checkpoints.
    speed_only = ("wandb", "save_minutes", "fused_loss", "compile", "precision", "length_posts")
    settings = {k: v for k, v in asdict(config).items() if k not in speed_only}
    # At the values earlier runs had and left out of their fingerprints (end weight 1, each post alone: the defaults
    # of 2026-12-06): those runs still resume when asked for the same training, and a default run (3x, posts packed
    # together) does not resume into them.
    for name, default in (("end_loss_weight", 1.0), ("isolate_posts", True)):
        if settings[name] == default:
            del settings[name]
    digest.update(json.dumps([settings, base], sort_keys=True, default=str).encode())
    for text in (*train_texts, "\x00", *validation_texts):
        digest.update(text.encode())
        digest.update(b"\x01")
    return digest.hexdigest()[:16]


def interrupted_run_posts(
    work_dir: Path, config: TrainConfig, base: str, train_texts: list[str], validation_texts: list[str], data: Any = None
) -> tuple[list[str], list[str]] | None:
    """The posts an interrupted run with these settings started with, when only more posts came since.

    Fetching an account again before resuming brings its newest posts, which changes the data and so the run.
    Resuming on the posts the run started with keeps its checkpoints usable; `--restart` trains on everything.
    `data` describes how the posts were chosen (the caller's cleaning options): when it differs from the run's
    (replies kept now, say), the extra posts are a choice, not news, and this returns None. So it does when there
    is nothing to resume this way: no checkpoint, other settings, or posts gone or edited.
    """
    run = atomic.read_json(work_dir / "run.json")
    kept = atomic.read_json(work_dir / POSTS)
    if not (isinstance(run, dict) and isinstance(kept, dict) and last_checkpoint(work_dir)):
        return None
    old_train, old_validation = kept.get("train"), kept.get("validation")
    if not (isinstance(old_train, list) and isinstance(old_validation, list)) or kept.get("data") != data:
        return None
    if run.get("fingerprint") != run_fingerprint(config, base, old_train, old_validation):
        return None  # other settings or base model
    if not set(old_train) | set(old_validation) <= set(train_texts) | set(validation_texts):
        return None  # posts were removed or cleaned differently: not the same run with newer posts
    return old_train, old_validation


def prepare_work_dir(work_dir: Path, fingerprint: str, restart: bool, posts: dict[str, Any] | None = None) -> str | None:
    """Make `work_dir` ready; return the checkpoint to resume from, if this exact run was interrupted before.

    `posts` (train and validation texts, and how they were chosen) are kept beside the checkpoints, for
    `interrupted_run_posts`.
    """
    marker = work_dir / "run.json"
    if work_dir.exists():
        run = atomic.read_json(marker)
        previous = run.get("fingerprint") if isinstance(run, dict) else None
        if previous is None and not restart and last_checkpoint(work_dir):
            raise HuggingTweetsError(
                f"{work_dir / 'run.json'} is missing or unreadable, so its checkpoints cannot be matched to this run: "
                "pass --restart to discard them"
            )
        if previous != fingerprint:
            # A run stopped before its first checkpoint left nothing to resume or to lose: start afresh.
            if not restart and last_checkpoint(work_dir):
                raise HuggingTweetsError(
                    f"{work_dir} holds checkpoints of a different training run (other data or settings): "
                    "pass --restart to discard them, or train with the same data and settings to resume"
                )
            shutil.rmtree(work_dir)
        elif restart:
            shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if posts is not None and not (work_dir / POSTS).is_file():
        atomic.write_json(work_dir / POSTS, posts)
    atomic.write_json(marker, {"fingerprint": fingerprint})
    return last_checkpoint(work_dir)


def last_checkpoint(work_dir: Path) -> str | None:
    """The newest complete checkpoint. Trainer writes `trainer_state.json` last, but not atomically: a run killed
    while writing it leaves a part of it, so it must also parse."""
    def step(path: Path) -> str:
        return path.name.removeprefix("checkpoint-")

    done = [p for p in work_dir.glob("checkpoint-*") if step(p).isdigit() and atomic.read_json(p / "trainer_state.json") is not None]
    return str(max(done, key=lambda p: int(step(p)))) if done else None


def add_lora(model: Any, rank: int, top_layers: int | None = None) -> Any:
    """Wrap `model` with LoRA adapters on every linear layer (attention and MLP; not the output head).

    `top_layers` puts them only in the top N transformer layers: nothing below needs a gradient, so the
    backward pass stops there and keeps no activations for the layers below.
    """
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = "all-linear"
    layers = None
    depth = layer_count(model.config)
    if top_layers and depth and top_layers < depth:
        layers = list(range(depth - top_layers, depth))
        targets = _linear_names(model)  # peft takes a layer range only with named modules
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM", layers_to_transform=layers
    )
    return get_peft_model(model, config)


def layer_count(config: Any) -> int:
    """How many transformer layers a model config describes (Llama-style or GPT-2-style names); 0 if neither."""
    return int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0)


def layer_stack(model: Any) -> torch.nn.ModuleList:
    """The model's list of transformer layers (the ModuleList as long as the configured depth)."""
    depth = layer_count(model.config)
    for module in model.modules():
        if depth and isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    raise HuggingTweetsError("cannot find the model's transformer layers")


def _linear_names(model: Any) -> list[str]:
    """Names of the linear layers inside the transformer blocks (what "all-linear" means), without the output head."""
    from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

    head = model.get_output_embeddings()
    return sorted(
        {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D)) and m is not head}
    )


def _fused_loss_trainer(end: EndWeight | None = None) -> type:
    from transformers import Trainer

    from .loss import causal_lm_loss

    class FusedLossTrainer(Trainer):  # type: ignore[misc]
        """`Trainer` whose training loss comes from `loss.causal_lm_loss` where that applies (CPU, plain output layer)."""

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            # Evaluation asks for the outputs too, several processes rescale the loss in Trainer, and several GPUs in
            # one process split the batch in the model's forward (DataParallel): all take the model's own path. So
            # does fp16, whose loss scaling the fused path was not made for.
            own = return_outputs or self.args.fp16 or self.accelerator.num_processes > 1 or self.args.n_gpu > 1
            if not own:
                # Normalised as the model's own loss would be: by the Trainer's count when the model accepts it.
                count = num_items_in_batch if self.model_accepts_loss_kwargs else None
                # accelerate runs the model's forward under its autocast (bf16); the fused path calls the decoder
                # directly, so it enters the same autocast itself. Without mixed precision this does nothing.
                with self.accelerator.autocast():
                    loss = causal_lm_loss(model, inputs, count, end)  # weighted as `_end_weighted` weighs the other path
                if loss is not None:
                    return loss
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    return FusedLossTrainer


def _end_weighted(end: EndWeight) -> Callable[..., torch.Tensor]:
    def loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        # Evaluation runs without gradients: there the plain loss, so validation perplexity stays comparable.
        return weighted_lm_loss(outputs["logits"], labels, end if torch.is_grad_enabled() else None, num_items_in_batch)

    return loss


class _Relay:
    """Turns Trainer callbacks into `TrainingEvent`s, collects per-evaluation history, and honours a stop request."""

    def __init__(self, listener: Listener | None, stop: threading.Event | None, tokens_per_step: float, save_seconds: float) -> None:
        self.listener = listener
        self.save_seconds = save_seconds
        self.last_save = time.perf_counter()
        self.stop = stop
        self.tokens_per_step = tokens_per_step
        self.history: list[dict[str, float]] = []
        self.train_losses: list[float] = []
        self.started = time.perf_counter()
        self.stopped = False

    def emit(self, kind: str, state: Any, **values: Any) -> None:
        if self.listener is not None:
            event = TrainingEvent(kind, state.global_step, state.max_steps, float(state.epoch or 0.0), seconds=self.elapsed(), **values)  # type: ignore[arg-type]
            self.listener(event)

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def callback(self) -> Any:
        from transformers import TrainerCallback

        relay = self

        class Relay(TrainerCallback):  # type: ignore[misc]
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                relay.emit("start", state)

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                relay.emit("step", state)
                # Long evaluation intervals on a CPU: checkpoint on time too. Several processes save together or not
                # at all (a save waits for all of them), so the main process's clock decides for every one.
                if distributed.agree(time.perf_counter() - relay.last_save > relay.save_seconds):
                    control.should_save = True
                if relay.stop is not None and relay.stop.is_set():
                    # Save where we are, then stop: the checkpoint is kept and the run can be resumed.
                    relay.stopped = True
                    control.should_save = True
                    control.should_training_stop = True

            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                relay.last_save = time.perf_counter()

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
                if logs and "loss" in logs:
                    relay.train_losses.append(float(logs["loss"]))
                    relay.emit("log", state, loss=float(logs["loss"]))

            def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
                if not metrics or "eval_loss" not in metrics:
                    return
                eval_loss = float(metrics["eval_loss"])
                train_loss = sum(relay.train_losses) / len(relay.train_losses) if relay.train_losses else math.nan
                relay.train_losses = []
                relay.history.append(
                    {
                        "step": state.global_step,
                        "epoch": round(float(state.epoch or 0.0), 3),
                        "train_loss": round(train_loss, 4),
                        "validation_loss": round(eval_loss, 4),
                        "perplexity": round(math.exp(min(eval_loss, 50.0)), 3),
                        "tokens": int(state.global_step * relay.tokens_per_step),
                        "seconds": round(relay.elapsed(), 1),
                    }
                )
                relay.emit("eval", state, eval_loss=eval_loss)

            def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                relay.emit("end", state)

        return Relay()


# AdamW as one fused kernel (on every device since torch 2.4): on 2 CPU cores a full fine-tune's optimizer step went
# from 0.4 s to 0.13 s (benchmarks/README.md).
OPTIMIZER = "adamw_torch_fused"


def _wandb_environment() -> None:
    """W&B runs only when asked; without a key it logs offline instead of prompting (a prompt would hang)."""
    if not os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") != "disabled":
        os.environ["WANDB_MODE"] = "offline"
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_PROJECT", "huggingtweets")


def _finish_wandb(failed: bool = False) -> None:
    """End the W&B run Trainer started: it leaves it open, and the next training in this process (the app's second
    bot) would otherwise log into it. A run that failed or was interrupted is marked so; W&B's own trouble in
    finishing must not hide the training's. W&B reads its settings (WANDB_DIR, the key) once per process and keeps
    them; tearing its session down makes the next run read the environment as it is then (a key typed in the app)."""
    import wandb

    with contextlib.suppress(Exception):
        if wandb.run is not None:
            wandb.finish(exit_code=1 if failed else 0)
        wandb.teardown()


def train_model(
    model: Any,
    tokenizer: Any,
    train_texts: list[str],
    validation_texts: list[str],
    config: TrainConfig,
    work_dir: Path,
    *,
    base: str = "",
    restart: bool = False,
    listener: Listener | None = None,
    stop: threading.Event | None = None,
    show_progress: bool = True,
    run_name: str | None = None,
    progress: Callable[[str], None] | None = None,
    data: Any = None,
) -> TrainResult:
    """Fine-tune `model` on the texts. `config` should be `resolved()`; LoRA is added here unless present.

    `data` (JSON-able) says how the texts were chosen; it is kept with the checkpoints for `interrupted_run_posts`.
    """
    config.validate()
    if config.epochs is None or config.method == "auto" or config.learning_rate is None or config.batch_size is None:
        config = config.resolved()
    device = accelerator()
    gpu = device != "cpu"
    train_data = build_blocks(train_texts, tokenizer, config.block_size, config.isolate_posts)
    eval_data: Blocks | None = build_blocks(validation_texts, tokenizer, config.block_size) if validation_texts else None
    if len(train_data) == 0:
        raise HuggingTweetsError("no training text: give more posts")

    fingerprint = run_fingerprint(config, base, train_texts, validation_texts)
    posts = {"train": train_texts, "validation": validation_texts, "data": data}
    resume = distributed.once(lambda: prepare_work_dir(work_dir, fingerprint, restart, posts))  # the main process writes it
    if resume:
        log.info("resuming from %s", resume)

    model = _for_method(model, config)

    # Each of several processes takes its share of every step's batch: a step covers batch_size blocks per process.
    per_epoch = steps_per_epoch(len(train_data), config.batch_size * distributed.world_size())
    every = max(1, math.ceil(per_epoch / config.evals_per_epoch))
    checks = eval_data is not None and len(eval_data) > 0
    if config.wandb:
        _wandb_environment()
    args = _training_arguments(config, work_dir, run_name, every, checks, device == "cpu", show_progress)
    relay = _Relay(listener, stop, train_data.trained_tokens / max(1, per_epoch), config.save_minutes * 60)
    end = EndWeight(markers(tokenizer)[1], config.end_loss_weight) if config.end_loss_weight != 1 else None
    trainer = _trainer(model, args, train_data, eval_data if checks else None, config, relay, show_progress, end)
    planned = config.max_steps if config.max_steps > 0 else math.ceil(float(config.epochs or 1) * per_epoch)
    done = int(resume.rsplit("-", 1)[1]) if resume else 0  # Trainer's checkpoint-N
    # Several processes wrap the model in DDP, which compiled layers are not tested under: they run eager.
    use_compile = distributed.world_size() == 1 and compile_wanted(config.compile, planned - done, gpu, getattr(model.config, "model_type", None))
    if use_compile and progress:
        progress("compiling the transformer layers first (torch.compile): the first steps take a minute or two longer")
    output = _run(trainer, model, config, resume, use_compile, gpu)
    return _result(trainer, output, config, relay, resume, train_data, len(validation_texts), per_epoch, use_compile)


def _for_method(model: Any, config: TrainConfig) -> Any:
    """The model ready to train by `config.method`: LoRA adapters added unless it has them; full training refuses an adapter."""
    if config.method == "lora" and not is_peft(model):
        from transformers import set_seed

        set_seed(config.seed)  # the adapters' initial weights come from the seed too (Trainer seeds only later)
        model = add_lora(model, config.lora_rank, config.lora_layers)
    elif config.method == "full" and is_peft(model):
        raise HuggingTweetsError("this bot was trained with LoRA: continue it with --method lora")
    model.config.use_cache = False  # the KV cache is for generation; in training it only costs memory
    return model


def _run(trainer: Any, model: Any, config: TrainConfig, resume: str | None, use_compile: bool, gpu: bool) -> Any:
    """`trainer.train`, compiled if asked; W&B's run is closed either way, as failed when the training raised."""
    # bf16 on a CPU: transformers' own attention, faster there than SDPA's kernels (hardware.py); put back after.
    attention = set_attention(model, BF16_CPU_ATTENTION) if config.precision == "bf16" and not gpu else None
    try:
        with compiled(layer_stack(model) if use_compile else []):
            output = trainer.train(resume_from_checkpoint=resume)
    except BaseException:
        if config.wandb:
            _finish_wandb(failed=True)
        raise
    finally:
        if attention is not None:
            set_attention(model, attention)
    if config.wandb:
        _finish_wandb()
    return output


def _training_arguments(
    config: TrainConfig, work_dir: Path, run_name: str | None, every: int, checks: bool, cpu: bool, show_progress: bool
) -> Any:
    """The Trainer's arguments: one evaluation and one checkpoint every `every` steps, keeping the best and the newest."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(work_dir),
        run_name=run_name,
        num_train_epochs=float(config.epochs or 1),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=float(config.learning_rate or 1e-4),
        lr_scheduler_type="cosine",
        warmup_steps=0,
        weight_decay=0.0,
        optim=OPTIMIZER,
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="steps" if checks else "no",
        eval_steps=every,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=2,  # the best and the newest
        load_best_model_at_end=checks,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, min(10, every // 2)),
        report_to=["wandb"] if config.wandb else [],
        use_cpu=cpu,
        bf16=config.precision == "bf16",
        fp16=config.precision == "fp16",
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
    )


def _trainer(
    model: Any, args: Any, train_data: Blocks, eval_data: Blocks | None, config: TrainConfig, relay: "_Relay", show_progress: bool,
    end: EndWeight | None = None,
) -> Any:
    """The HF Trainer with the relay (progress, stop, timed saves) and early stopping when there is a validation set;
    with `end`, the end marker weighs more in the training loss (Trainer's own `compute_loss_func` hook, so the loss
    is normalised and scaled across processes as the model's own would be; evaluation keeps the plain loss)."""
    from transformers import EarlyStoppingCallback, Trainer, default_data_collator

    callbacks: list[Any] = [relay.callback()]
    if eval_data is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience))
    trainer = (_fused_loss_trainer(end) if config.fused_loss else Trainer)(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        data_collator=default_data_collator,
        callbacks=callbacks,
        compute_loss_func=_end_weighted(end) if end is not None else None,
    )
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
    return trainer


def _result(
    trainer: Any,
    output: Any,
    config: TrainConfig,
    relay: "_Relay",
    resume: str | None,
    train_data: Blocks,
    validation_posts: int,
    per_epoch: int,
    use_compile: bool,
) -> TrainResult:
    """What the run did, from the Trainer's state; the model goes back to generating (KV cache on)."""
    checks = trainer.eval_dataset is not None
    best = trainer.state.best_metric if checks else None
    model = trainer.model
    model.config.use_cache = True
    return TrainResult(
        model=model,
        config=config,
        history=relay.history,
        best_eval_loss=float(best) if best is not None else None,
        steps=int(output.global_step),
        seconds=round(relay.elapsed(), 1),
        stopped=relay.stopped,
        resumed_from=resume,
        train_stats={
            **train_data.stats,
            "trained_tokens_per_epoch": train_data.trained_tokens,
            "padding_share": round(train_data.padding_share, 4),
            "truncated_posts": train_data.truncated_posts,
            "validation_posts": validation_posts,
            "steps_per_epoch": per_epoch,
            "compiled": use_compile,
        },
    )
