"""Training on tiny models: the end token is learned, runs resume, bots save and reload, LoRA and full, both families."""

from __future__ import annotations

import json
from dataclasses import replace
import math
import shutil
import threading
from pathlib import Path

import pytest
import torch

from conftest import make_posts
from huggingtweets import models
from huggingtweets.bot import Bot, list_bots
from huggingtweets.clean import CleanOptions
from huggingtweets.corpus import Corpus, build_corpus
from huggingtweets.dataset import build_blocks, markers
from huggingtweets.errors import HuggingTweetsError
from huggingtweets.train import TrainConfig, TrainingEvent, interrupted_run_posts, last_checkpoint, layer_stack, prepare_work_dir


def corpus_of(path: Path) -> Corpus:
    return build_corpus([str(path)], CleanOptions(), min_characters=1000)


def end_token_probability(model: torch.nn.Module, tokenizer, texts: list[str]) -> float:
    """Mean probability the model gives the end token right after each complete post."""
    _, end = markers(tokenizer)
    data = build_blocks(texts, tokenizer, 64)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
    probs = logits.softmax(-1)
    # labels[t] == end means position t-1 must predict the end token.
    where = (data.labels == end).nonzero()
    return float(torch.stack([probs[b, t - 1, end] for b, t in where.tolist()]).mean())


def fast(**overrides) -> TrainConfig:
    settings = dict(method="full", epochs=3, learning_rate=3e-3, batch_size=8, block_size=64)
    return TrainConfig(**{**settings, **overrides})


def test_end_of_post_token_is_learned(home, tiny_llama, posts_file):
    corpus = corpus_of(posts_file)
    _, validation = corpus.texts()
    base, tokenizer = models.load_base(str(tiny_llama))
    before = end_token_probability(base, tokenizer, validation)
    bot = Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=fast(), show_progress=False)
    after = end_token_probability(bot.model, bot.tokenizer, validation)
    # Posts are 4-20 random words: a model that learned that posts end puts real mass on the end token (chance: 1/300).
    assert before < 0.02
    assert after > 0.03 and after > 10 * before


def test_training_lowers_validation_loss_and_writes_a_complete_bot(home, tiny_llama, posts_file):
    events: list[TrainingEvent] = []
    bot = Bot.train_corpus(corpus_of(posts_file), home / "bot", base_model=str(tiny_llama), config=fast(), listener=events.append, show_progress=False)
    metrics = json.loads((home / "bot" / "metrics.json").read_text())
    history = metrics["history"]
    assert len(history) >= 3  # two evaluations per epoch
    assert metrics["bot_perplexity"] < metrics["base_perplexity"]
    # The best evaluation is kept, and the saved weights are the best ones.
    best = min(r["validation_loss"] for r in history)
    assert metrics["best_validation_loss"] == pytest.approx(best, abs=1e-3)
    _, validation = corpus_of(posts_file).texts()
    assert Bot.load(home / "bot").perplexity(validation) == pytest.approx(math.exp(best), rel=1e-3)

    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and "eval" in kinds and "log" in kinds
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == list(range(1, len(steps) + 1)) and steps[-1] == events[0].total_steps

    folder = home / "bot"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "generation_config.json", "huggingtweets.json", "counts.json", "ngrams.bin", "README.md"):
        assert (folder / name).is_file(), name
    card = (folder / "README.md").read_text()
    assert "AI-generated" in card and "| account |" in card and f"{tiny_llama.name} (a local model folder)" in card
    # The card says how the loss was taken: its train loss column includes the end marker's weight.
    assert f"end-of-post marker weighs {TrainConfig().end_loss_weight:g}x in the train loss" in card and "posts packed together" in card
    assert not (home / ".bot.training").exists()  # checkpoints are removed once the bot is written
    assert [b["name"] for b in list_bots(home)] == ["bot"]
    # Damaged or foreign folders beside it are left out, not a traceback: JSON that is not an object, bytes that are not text.
    for name, file, content in (("listed", "huggingtweets.json", b"[]"), ("binary", "huggingtweets.json", b"\xff\xfe"), ("figures", "metrics.json", b"7")):
        shutil.copytree(folder, home / name)
        (home / name / file).write_bytes(content)
    assert [b["name"] for b in list_bots(home)] == ["bot"]
    assert bot.info["method"] == "full"


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gpt2"])
def test_lora_bot_saves_only_the_adapter_and_reloads(home, family, request, posts_file):
    base = request.getfixturevalue(family)
    bot = Bot.train_corpus(corpus_of(posts_file), home / "bot", base_model=str(base), config=fast(method="lora", epochs=1), show_progress=False)
    folder = home / "bot"
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert json.loads((folder / "huggingtweets.json").read_text())["base_model"] == str(base)
    samples = bot.generate(n=3, seed=1)
    again = Bot.load(folder).generate(n=3, seed=1)
    assert [s.text for s in samples] == [s.text for s in again]  # the saved bot is the trained one


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gpt2"])
def test_lora_on_the_top_layers_trains_only_those_and_reloads(home, family, request, posts_file):
    base = request.getfixturevalue(family)
    before = models.load_model(str(base))
    depth = before.config.num_hidden_layers
    config = fast(method="lora", epochs=1, lora_layers=1)
    bot = Bot.train_corpus(corpus_of(posts_file), home / "bot", base_model=str(base), config=config, show_progress=False)
    # The merged bot differs from its base in the top layer only: nothing below it had an adapter.
    changed = {name for name, value in bot.model.state_dict().items() if not torch.equal(value, before.state_dict()[name])}
    top = {f"layers.{depth - 1}.", f"h.{depth - 1}."}
    assert changed and all(any(t in name for t in top) for name in changed), changed
    assert [s.text for s in bot.generate(n=2, seed=1)] == [s.text for s in Bot.load(home / "bot").generate(n=2, seed=1)]


def _stop_at(step: int, stop: threading.Event):
    def listen(event: TrainingEvent) -> None:
        if event.kind == "step" and event.step == step:
            stop.set()

    return listen


def weights(bot: Bot) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in bot.model.state_dict().items()}


def test_stopped_run_resumes_to_the_same_weights(home, tiny_llama, posts_file):
    config = fast(epochs=2)
    corpus = corpus_of(posts_file)
    whole = weights(Bot.train_corpus(corpus, home / "a", base_model=str(tiny_llama), config=config, show_progress=False))

    stop = threading.Event()
    stopped = Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=config, stop=stop, listener=_stop_at(5, stop), show_progress=False)
    assert stopped.info["stopped_early"] and last_checkpoint(home / ".b.training").endswith("checkpoint-5")
    resumed = Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=config, show_progress=False)
    assert resumed.metrics["resumed_from_step"] == 5
    for name, tensor in weights(resumed).items():
        torch.testing.assert_close(tensor, whole[name], rtol=1e-4, atol=1e-5)


def test_a_run_stopped_in_float32_resumes_in_bf16(home, tiny_llama, posts_file, monkeypatch):
    # An upgrade that made bf16 this CPU's default (or HUGGINGTWEETS_CPU_BF16 changed) must not strand a stopped run:
    # mixed precision keeps float32 weights and optimizer state, so its checkpoints go on as they are.
    corpus, stop = corpus_of(posts_file), threading.Event()
    Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=fast(epochs=2), stop=stop, listener=_stop_at(3, stop), show_progress=False)
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")
    resumed = Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=fast(epochs=2), show_progress=False)
    assert resumed.metrics["resumed_from_step"] == 3 and resumed.info["config"]["precision"] == "bf16"


def test_killed_run_resumes_from_its_last_checkpoint(home, tiny_llama, posts_file):
    config = fast(epochs=2)
    corpus = corpus_of(posts_file)

    def crash(event: TrainingEvent) -> None:
        if event.kind == "step" and event.step == 16:  # after the checkpoint at half an epoch (13 steps)
            raise KeyboardInterrupt  # what Ctrl-C or a dying kernel looks like to the training loop

    with pytest.raises(KeyboardInterrupt):
        Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=config, listener=crash, show_progress=False)
    assert not (home / "bot").exists()  # no half-written bot
    saved = last_checkpoint(home / ".bot.training")
    assert saved is not None
    bot = Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=config, show_progress=False)
    assert bot.metrics["resumed_from_step"] == int(saved.rsplit("-", 1)[1])


def test_other_settings_do_not_resume_into_old_checkpoints(home, tiny_llama, posts_file):
    stop = threading.Event()
    corpus = corpus_of(posts_file)
    Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=fast(), stop=stop, listener=_stop_at(2, stop), show_progress=False)
    with pytest.raises(HuggingTweetsError, match="--restart"):
        Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=fast(learning_rate=1e-3), show_progress=False)
    bot = Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=fast(learning_rate=1e-3), restart=True, show_progress=False)
    assert bot.metrics["resumed_from_step"] is None


def test_interrupted_run_resumes_on_its_own_posts_when_newer_ones_arrive(home, tiny_llama, tmp_path):
    # An account fetched again before resuming brings its newest posts; the run goes on with the posts it had.
    posts = make_posts(400, seed=7)
    source = tmp_path / "account.txt"  # the same source each time, as `@handle` would be, with what it holds now

    def holding(lines: list[str], options: CleanOptions | None = None) -> Corpus:
        source.write_text("\n".join(lines))
        return build_corpus([str(source)], options or CleanOptions(), min_characters=1000)

    stop = threading.Event()
    first = holding(posts[:360])
    started_with = first.texts()
    Bot.train_corpus(first, home / "bot", base_model=str(tiny_llama), config=fast(), stop=stop, listener=_stop_at(2, stop), show_progress=False)

    for changed in (
        holding(["an edited post about nothing much at all", *posts[1:]]),  # a post changed: not the same posts plus newer
        holding(posts, CleanOptions(min_words=2)),  # other cleaning: more posts by choice, not news
        build_corpus([str(source), str(source)], CleanOptions(), min_characters=1000),  # another source list
    ):
        with pytest.raises(HuggingTweetsError, match="--restart"):
            Bot.train_corpus(changed, home / "bot", base_model=str(tiny_llama), config=fast(), show_progress=False)
    said: list[str] = []
    bot = Bot.train_corpus(holding(posts), home / "bot", base_model=str(tiny_llama), config=fast(), progress=said.append, show_progress=False)
    assert bot.metrics["resumed_from_step"] == 2
    assert any("resuming the interrupted run" in line and "40 fetched since left out" in line for line in said), said
    assert bot.metrics["data"]["posts"] == len(started_with[0])  # trained on the posts it started with
    assert bot.info["posts_left_out"] == 40 and "40 posts fetched after training began" in (home / "bot" / "README.md").read_text()

    again = Bot.train_corpus(holding(posts), home / "new", base_model=str(tiny_llama), config=fast(max_steps=2), show_progress=False)
    assert again.metrics["data"]["posts"] == len(holding(posts).texts()[0])  # a fresh run takes every post
    assert again.info["posts_left_out"] == 0 and "after training began" not in (home / "new" / "README.md").read_text()


def test_damaged_checkpoint_folders_give_clear_choices(tmp_path):
    work = tmp_path / ".bot.training"
    for name in ("checkpoint-foo", "checkpoint-7", "checkpoint-12"):
        (work / name).mkdir(parents=True)
        if name != "checkpoint-12":  # 12 was cut off before Trainer wrote its state: incomplete
            (work / name / "trainer_state.json").write_text("{}")
    (work / "run.json").write_text("{ half")
    assert last_checkpoint(work).endswith("checkpoint-7")  # a stray folder name is not a checkpoint
    assert interrupted_run_posts(work, fast(), "base", ["a"], []) is None
    with pytest.raises(HuggingTweetsError, match="--restart"):
        prepare_work_dir(work, "abc", restart=False)
    assert (work / "checkpoint-7").is_dir()  # nothing thrown away without --restart
    assert prepare_work_dir(work, "abc", restart=True, posts={"train": ["a"], "validation": []}) is None
    assert json.loads((work / "run.json").read_text()) == {"fingerprint": "abc"} and not (work / "checkpoint-7").exists()


def test_a_run_stopped_before_its_first_checkpoint_does_not_block_a_different_one(tmp_path):
    work = tmp_path / ".bot.training"
    assert prepare_work_dir(work, "first", restart=False, posts={"train": ["old"], "validation": []}) is None
    (work / "checkpoint-3").mkdir()  # cut off while being written: no trainer_state.json, nothing to resume
    # Other posts (the account gained one) or other settings: no --restart needed when nothing would be lost.
    assert prepare_work_dir(work, "second", restart=False, posts={"train": ["new"], "validation": []}) is None
    assert json.loads((work / "run.json").read_text()) == {"fingerprint": "second"}
    assert json.loads((work / "posts.json").read_text())["train"] == ["new"] and not (work / "checkpoint-3").exists()
    # Once there is a checkpoint, a different run must not discard it unasked.
    (work / "checkpoint-5").mkdir()
    (work / "checkpoint-5" / "trainer_state.json").write_text("{}")
    with pytest.raises(HuggingTweetsError, match="different training run"):
        prepare_work_dir(work, "third", restart=False)
    assert (work / "checkpoint-5").is_dir()


def test_continue_training_an_existing_bot_on_new_posts(home, tiny_llama, tmp_path):
    first = tmp_path / "first.txt"
    first.write_text("\n".join(make_posts(300, seed=5)))
    newer = tmp_path / "newer.txt"
    newer.write_text("\n".join("water sound people " + p for p in make_posts(300, seed=6)))
    Bot.train_corpus(corpus_of(first), home / "v1", base_model=str(tiny_llama), config=fast(method="lora", epochs=1), show_progress=False)
    _, held_out = corpus_of(newer).texts()
    v1 = Bot.load(home / "v1")
    before = v1.perplexity(held_out)
    v2 = Bot.train_corpus(corpus_of(newer), home / "v2", base_model=str(home / "v1"), config=fast(method="lora", epochs=1), show_progress=False)
    assert v2.info["continued_from"] == "v1"
    assert v2.info["base_model"] == str(tiny_llama)  # a LoRA bot keeps pointing at the model its adapter fits
    assert v2.perplexity(held_out) < before


def test_a_full_bot_continued_with_lora_under_its_own_name_keeps_its_weights(home, tiny_llama, tmp_path):
    # LoRA over a bot's own weights, saved where that bot is (the app's default name for the same account):
    # an adapter-only folder would have replaced the weights it needs.
    first = tmp_path / "first.txt"
    first.write_text("\n".join(make_posts(300, seed=5)))
    newer = tmp_path / "newer.txt"
    newer.write_text("\n".join("water sound people " + p for p in make_posts(300, seed=6)))
    Bot.train_corpus(corpus_of(first), home / "alice", base_model=str(tiny_llama), config=fast(epochs=1), show_progress=False)
    _, held_out = corpus_of(newer).texts()
    before = Bot.load(home / "alice").perplexity(held_out)
    Bot.train_corpus(corpus_of(newer), home / "alice", base_model=str(home / "alice"), config=fast(method="lora", epochs=1), show_progress=False)
    again = Bot.load(home / "alice")
    assert again.info["method"] == "lora" and again.info["adapter"] is False
    assert not (home / "alice" / "adapter_config.json").exists() and (home / "alice" / "model.safetensors").is_file()
    assert again.perplexity(held_out) < before
    card = (home / "alice" / "README.md").read_text()
    assert "merged into the weights" in card and "library_name: transformers" in card


def test_a_stop_while_continuing_a_full_bot_with_lora_in_place_leaves_no_stale_checkpoints(home, tiny_llama, tmp_path):
    # The checkpoints hold adapters for the weights the stop has just replaced: resuming them over the saved bot
    # would add their update a second time.
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(300, seed=5)))
    Bot.train_corpus(corpus_of(posts), home / "alice", base_model=str(tiny_llama), config=fast(epochs=1), show_progress=False)
    stop, said = threading.Event(), []
    lora = fast(method="lora", epochs=1)
    stopped = Bot.train_corpus(corpus_of(posts), home / "alice", base_model=str(home / "alice"), config=lora, stop=stop,
                               listener=_stop_at(2, stop), progress=said.append, show_progress=False)
    assert stopped.info["stopped_early"] and not (home / ".alice.training").exists()
    assert said[-1] == "stopped: saved alice as trained so far; train again to go on from it"
    again = Bot.train_corpus(corpus_of(posts), home / "alice", base_model=str(home / "alice"), config=lora, show_progress=False)
    assert again.metrics["resumed_from_step"] is None and not again.info["stopped_early"]


def test_a_lora_bot_continued_as_a_full_fine_tune_gets_the_full_settings(home, tiny_llama, tmp_path):
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(300, seed=5)))
    Bot.train_corpus(corpus_of(posts), home / "v1", base_model=str(tiny_llama), config=fast(method="lora", epochs=1), show_progress=False)
    full = TrainConfig(method="full", epochs=1, block_size=64)  # learning rate and batch size left to the method's defaults
    v2 = Bot.train_corpus(corpus_of(posts), home / "v2", base_model=str(home / "v1"), config=full, show_progress=False)
    assert v2.info["method"] == "full" and not v2.info["adapter"] and v2.info["base_model"] == str((home / "v1").resolve())
    assert (v2.info["config"]["learning_rate"], v2.info["config"]["batch_size"]) == (1e-4, 8)  # not LoRA's 2e-3 at batch 2
    shutil.rmtree(home / "v1")
    assert Bot.load(home / "v2").generate(n=1, seed=0)  # whole weights: it needs nothing from v1


def test_a_stop_before_training_begins_ends_the_run_at_once(home, tiny_llama, tmp_path):
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(300, seed=5)))
    stop = threading.Event()
    stop.set()  # pressed while the base model was loading
    with pytest.raises(HuggingTweetsError, match="stopped before the first training step"):
        Bot.train_corpus(corpus_of(posts), home / "bot", base_model=str(tiny_llama), config=fast(), stop=stop, show_progress=False)
    assert not (home / "bot").exists() and not (home / ".bot.training").exists()


def test_a_relative_base_model_path_is_stored_absolute(home, tiny_llama, tmp_path, monkeypatch):
    posts = tmp_path / "posts.txt"
    posts.write_text("\n".join(make_posts(300, seed=5)))
    monkeypatch.chdir(tiny_llama.parent)
    Bot.train_corpus(corpus_of(posts), home / "bot", base_model=tiny_llama.name, config=fast(method="lora", epochs=1), show_progress=False)
    monkeypatch.chdir(tmp_path)  # somewhere the relative path means nothing
    bot = Bot.load(home / "bot")
    assert bot.info["base_model"] == str(tiny_llama.resolve()) and bot.generate(n=1, seed=0)
    # The card names the folder, not the path to it.
    card = (home / "bot" / "README.md").read_text()
    assert f"{tiny_llama.name} (a local model folder)" in card and str(tiny_llama.parent) not in card


@pytest.mark.parametrize(
    "bad, message",
    [(dict(epochs=0), "epochs"), (dict(learning_rate=-1.0), "learning rate"), (dict(batch_size=0), "batch size"), (dict(method="half"), "method"),
     (dict(lora_layers=0), "LoRA layers"), (dict(compile="yes"), "compile"), (dict(seed=-1), "seed"), (dict(seed=2**32), "seed")],
)
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(HuggingTweetsError, match=message):
        TrainConfig(**bad).resolved("cpu")


def test_device_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "0")  # a CPU without bf16 arithmetic, also when the suite runs in bf16
    cpu = TrainConfig().resolved("cpu")
    assert (cpu.method, cpu.precision) == ("lora", "fp32")  # a CPU without bf16 arithmetic (the suite's setting)
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")  # one with it: bf16 autocast, ~1.9x faster steps
    assert TrainConfig().resolved("cpu").precision == "bf16"
    assert TrainConfig(method="full").resolved("cpu").precision == "bf16"
    assert TrainConfig(precision="fp32").resolved("cpu").precision == "fp32"  # asked for, kept
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "yes")
    with pytest.raises(HuggingTweetsError, match="HUGGINGTWEETS_CPU_BF16 must be 0"):
        TrainConfig().resolved("cpu")
    monkeypatch.delenv("HUGGINGTWEETS_CPU_BF16")  # the processor decides: torch's own check
    assert TrainConfig().resolved("cpu").precision == ("bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32")
    assert (cpu.learning_rate, cpu.batch_size) == (2e-3, 2)  # measured in benchmarks/: LoRA at batch 2 stays under 2 GB
    full = TrainConfig(method="full").resolved("cpu")
    assert (full.learning_rate, full.batch_size) == (1e-4, 8)
    assert TrainConfig(batch_size=4).resolved("cpu").batch_size == 4


@pytest.mark.parametrize("method", ["lora", "full"])
def test_on_a_cpu_with_bf16_training_autocasts_and_generation_switches_to_bf16_weights(home, tiny_llama, posts_file, method, monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "1")  # a CPU with bf16 arithmetic (emulated, slowly, where there is none)
    corpus = corpus_of(posts_file)
    seen: list[str] = []  # the attention in use at each training step

    def spy(self, model, inputs, *args, **kwargs):
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        seen.append(inner.config._attn_implementation)
        return original(self, model, inputs, *args, **kwargs)

    from transformers import Trainer

    import huggingtweets.bot as bot_module

    measured = bot_module.perplexity
    autocast: list[bool] = []  # the base model is measured in the arithmetic the bot is evaluated in
    monkeypatch.setattr(bot_module, "perplexity", lambda *a, **k: autocast.append(torch.is_autocast_enabled("cpu")) or measured(*a, **k))
    original = Trainer.compute_loss
    monkeypatch.setattr(Trainer, "compute_loss", spy)
    bot = Bot.train_corpus(corpus, home / "bot", base_model=str(tiny_llama), config=fast(method=method), show_progress=False)
    monkeypatch.setattr(Trainer, "compute_loss", original)
    monkeypatch.setattr(bot_module, "perplexity", measured)
    assert autocast == [True]
    assert bot.info["config"]["precision"] == "bf16" and "bf16" in (bot.path / "README.md").read_text()
    # Training ran with transformers' own attention (faster in bf16 on a CPU); the model's SDPA came back after.
    assert seen and set(seen) == {"eager"}
    assert bot.model.config._attn_implementation == "sdpa"
    # autocast computes in bf16 and keeps float32 weights: the saved bot is float32, ready for any machine
    weights = load_file(bot.path / ("adapter_model.safetensors" if method == "lora" else "model.safetensors"))
    assert weights and {w.dtype for w in weights.values()} == {torch.float32}
    assert bot.metrics["bot_perplexity"] < bot.metrics["base_perplexity"]
    assert next(bot.model.parameters()).dtype == torch.float32  # until it generates
    validation = corpus.texts()[1]
    before = bot.perplexity(validation)
    samples = bot.generate(n=6, seed=0, max_new_tokens=32)
    assert len(samples) == 6 and all(s.text for s in samples)
    assert {p.dtype for p in bot.model.parameters()} == {torch.bfloat16} and bot.model.config._attn_implementation == "eager"
    floating = [b for b in bot.model.buffers() if b.is_floating_point()]
    assert floating and {b.dtype for b in floating} == {torch.float32}  # the rotary frequencies keep their precision
    assert bot.perplexity(validation) == pytest.approx(before, rel=0.02)  # the same model, rounded to bf16
    assert [s.text for s in bot.generate(n=6, seed=0, max_new_tokens=32)] == [s.text for s in samples]
    assert "".join(p.text for p in bot.stream(seed=1, max_new_tokens=16))
    # A bot loaded to train further keeps its float32 weights, whatever generates from it; without bf16, so does any.
    trainable = Bot.load(bot.path, trainable=True)
    trainable.generate(n=2, seed=0, max_new_tokens=8)
    assert next(trainable.model.parameters()).dtype == torch.float32
    monkeypatch.setenv("HUGGINGTWEETS_CPU_BF16", "0")
    plain = Bot.load(bot.path)
    plain.generate(n=2, seed=0, max_new_tokens=8)
    assert next(plain.model.parameters()).dtype == torch.float32


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory):
    # Both runs below log into one folder.
    return tmp_path_factory.mktemp("wandb")


@pytest.mark.parametrize("key", [None, "wandb_secret_key_value_456"])
def test_wandb_runs_offline_unless_keyed_and_never_writes_a_secret(home, tiny_llama, posts_file, monkeypatch, capfd, key, wandb_dir):
    import os

    monkeypatch.delenv("WANDB_MODE", raising=False)
    if key:
        monkeypatch.setenv("WANDB_API_KEY", key)
        monkeypatch.setenv("WANDB_MODE", "offline")  # the user's choice, kept; this machine cannot reach W&B anyway
    else:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value_123")
    monkeypatch.setenv("X_BEARER_TOKEN", "x_secret_bearer_value_789")
    runs_before = len(list(wandb_dir.rglob("offline-run-*")))
    Bot.train_corpus(corpus_of(posts_file), home / "bot", base_model=str(tiny_llama), config=fast(epochs=1, wandb=True), show_progress=False)

    assert os.environ["WANDB_MODE"] == "offline"
    assert len(list(wandb_dir.rglob("offline-run-*"))) == runs_before + 1, "W&B logged nothing"
    secrets = [b"hf_secret_token_value_123", b"x_secret_bearer_value_789", *([key.encode()] if key else [])]
    out = capfd.readouterr()
    assert not [s for s in secrets if s.decode() in out.out + out.err]
    # Everything the run wrote: the bot, its training folder, caches, W&B's offline runs.
    for path in [*home.rglob("*"), *wandb_dir.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets if s in data], path


def test_long_intervals_also_checkpoint_on_time(home, tiny_llama, posts_file):
    def crash(event: TrainingEvent) -> None:
        if event.kind == "step" and event.step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Bot.train_corpus(corpus_of(posts_file), home / "bot", base_model=str(tiny_llama), config=fast(save_minutes=1e-9), listener=crash, show_progress=False)
    # Evaluation is every 13 steps here; the time rule saved after steps 1 and 2 (the crash came before step 3's save).
    assert last_checkpoint(home / ".bot.training").endswith("checkpoint-2")


@pytest.mark.parametrize("method", ["full", "lora"])
def test_compiled_layers_train_like_eager_ones_and_are_plain_afterwards(home, tiny_llama, posts_file, method, monkeypatch):
    from contextlib import contextmanager

    from torch._dynamo.utils import counters

    from huggingtweets import compiling, train

    corpus = corpus_of(posts_file)
    config = fast(method=method, epochs=1)
    eager = Bot.train_corpus(corpus, home / "eager", base_model=str(tiny_llama), config=replace(config, compile="off"), show_progress=False)
    assert compiling.compiler_problem() is None  # probed (and counted) before the snapshot below
    captured = counters["stats"]["calls_captured"]
    said: list[str] = []
    patched: list[bool] = []
    given: list[torch.nn.Module] = []

    @contextmanager
    def spy(layers):  # the real `compiled`, remembering which layers it was given
        given.extend(layers)
        with compiling.compiled(given):
            yield

    def watch(event: TrainingEvent) -> None:
        if event.kind == "step" and event.step == 2:  # mid-training: every layer runs the compiled forward
            patched.append(bool(given) and all("forward" in vars(layer) for layer in given))

    monkeypatch.setattr(train, "compiled", spy)
    bot = Bot.train_corpus(corpus, home / "compiled", base_model=str(tiny_llama), config=replace(config, compile="on"), show_progress=False,
                           progress=said.append, listener=watch)
    assert sum("compiling" in line for line in said) == 1  # the user knows why the first steps take longer
    assert bot.metrics["data"]["compiled"] and not eager.metrics["data"]["compiled"] and patched == [True]
    assert len(given) == bot.model.config.num_hidden_layers
    assert counters["stats"]["calls_captured"] > captured  # dynamo traced the layers' operations
    # Same steps on the same batches: the same weights up to the fused kernels' float rounding.
    for name, tensor in weights(bot).items():
        torch.testing.assert_close(tensor, weights(eager)[name], rtol=1e-3, atol=1e-4)
    # The layers are plain modules again (generation is not traced), and the saved bot is the trained one.
    assert not any("forward" in vars(layer) for layer in (*given, *layer_stack(bot.model)))
    assert [s.text for s in bot.generate(n=2, seed=1)] == [s.text for s in Bot.load(home / "compiled").generate(n=2, seed=1)]


def test_compile_is_chosen_for_long_cpu_runs_of_tested_models_and_refused_cleanly_without_a_compiler(monkeypatch):
    from huggingtweets import compiling

    def no_probe() -> str | None:
        raise AssertionError("the compiler is probed only when compiling is wanted")

    monkeypatch.setattr(compiling, "compiler_problem", no_probe)
    assert not compiling.compile_wanted("auto", compiling.MIN_STEPS - 1, False, "llama")
    assert not compiling.compile_wanted("auto", 10**6, True, "llama")
    assert not compiling.compile_wanted("auto", 10**6, False, "gpt2")  # not tested compiled: only with "on"
    assert not compiling.compile_wanted("off", 10**6, False, "llama")
    monkeypatch.setattr(compiling, "compiler_problem", lambda: None)
    assert compiling.compile_wanted("auto", compiling.MIN_STEPS, False, "llama")
    assert compiling.compile_wanted("on", 1, True, "gpt2")
    monkeypatch.setattr(compiling, "compiler_problem", lambda: "InvalidCxxCompiler: no working C++ compiler found")
    assert not compiling.compile_wanted("auto", 10**6, False, "llama")  # auto trains without it
    with pytest.raises(HuggingTweetsError, match="C\\+\\+ compiler.*compile off"):
        compiling.compile_wanted("on", 10**6, False, "llama")


def test_compile_choice_counts_the_steps_still_to_run(home, tiny_llama, posts_file, monkeypatch):
    from huggingtweets import train

    asked: list[tuple[str, int]] = []

    def record(setting: str, steps: int, gpu: bool, model_type: str | None) -> bool:
        asked.append((setting, steps))
        return False

    monkeypatch.setattr(train, "compile_wanted", record)
    corpus = corpus_of(posts_file)
    stop = threading.Event()
    first = Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=fast(epochs=2), stop=stop, listener=_stop_at(5, stop),
                             show_progress=False)
    per_epoch = first.metrics["data"]["steps_per_epoch"]
    Bot.train_corpus(corpus, home / "b", base_model=str(tiny_llama), config=fast(epochs=2), show_progress=False)  # resumes at step 5
    Bot.train_corpus(corpus, home / "c", base_model=str(tiny_llama), config=fast(max_steps=7), show_progress=False)
    assert asked == [("auto", 2 * per_epoch), ("auto", 2 * per_epoch - 5), ("auto", 7)]


def test_compiled_layers_are_restored_when_training_fails(tiny_llama):
    from huggingtweets.compiling import compiled

    model = models.load_model(str(tiny_llama))
    layers = layer_stack(model)
    hook = layers[0].forward
    layers[0].forward = hook  # an instance forward that was there before (as accelerate's hooks are)
    with pytest.raises(KeyboardInterrupt), compiled(layers):
        assert all("forward" in vars(layer) for layer in layers) and layers[0].forward is not hook
        raise KeyboardInterrupt
    assert layers[0].forward is hook and not any("forward" in vars(layer) for layer in layers[1:])


def test_a_compilation_that_fails_mid_run_falls_back_to_eager(tiny_llama, monkeypatch, caplog):
    import torch._dynamo.exc

    from huggingtweets import compiling

    def broken_compile(forward):
        def compiled_forward(*args, **kwargs):
            raise torch._dynamo.exc.BackendCompilerFailed(broken_compile, RuntimeError("g++ crashed"), None)

        return compiled_forward

    model = models.load_model(str(tiny_llama))
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = model(ids).logits
    monkeypatch.setattr(compiling.torch, "compile", broken_compile)
    with caplog.at_level("WARNING", logger="huggingtweets.compiling"), compiling.compiled(layer_stack(model)):
        got = model(ids).logits  # with gradients on: the compiled path is tried, fails, and runs eager
    torch.testing.assert_close(got, expected)
    warned = [r.getMessage() for r in caplog.records if r.name == "huggingtweets.compiling"]
    assert warned == ["torch.compile failed mid-run (RuntimeError: g++ crashed): training goes on without it"]  # once, not per layer


def test_a_backward_that_fails_to_compile_falls_back_to_eager(tiny_llama, monkeypatch, caplog):
    # A real torch.compile whose backward compiler fails. Compiled lazily (torch's default), the failure would
    # surface in loss.backward(), after the compiled forward has run, with nothing left to fall back to.
    import torch._dynamo.exc
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    from huggingtweets import compiling

    def failing_backward(graph, inputs):
        raise RuntimeError("g++ crashed in the backward")

    backend = aot_autograd(fw_compiler=lambda graph, inputs: make_boxed_func(graph.forward), bw_compiler=failing_backward)
    real_compile = torch.compile
    monkeypatch.setattr(compiling.torch, "compile", lambda forward: real_compile(forward, backend=backend))
    torch._dynamo.reset()
    model = models.load_model(str(tiny_llama))
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    model(ids, labels=ids).loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with caplog.at_level("WARNING", logger="huggingtweets.compiling"), compiling.compiled(layer_stack(model)):
        model(ids, labels=ids).loss.backward()
    for got, want in zip([p.grad for p in model.parameters()], expected):
        torch.testing.assert_close(got, want)
    warned = [r.getMessage() for r in caplog.records if r.name == "huggingtweets.compiling"]
    assert len(warned) == 1 and "g++ crashed in the backward" in warned[0] and "training goes on without it" in warned[0]
