"""The model card (`README.md`) written into every bot folder."""

from __future__ import annotations

from typing import Any


def _results(metrics: dict[str, Any]) -> str:
    rows = metrics.get("history") or []
    if not rows:
        return "No validation posts were held out, so there is no validation loss."
    lines = ["| step | epoch | train loss | validation loss | perplexity | seconds |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [
        f"| {r['step']} | {r['epoch']} | {r['train_loss']} | {r['validation_loss']} | {r['perplexity']} | {r['seconds']} |" for r in rows
    ]
    return "\n".join(lines)


def _left_out(info: dict[str, Any]) -> str:
    n = info.get("posts_left_out") or 0
    return f" {n} posts fetched after training began are counted above but were not trained on: the run resumed on the posts it started with." if n else ""


def _use_transformers(name: str, adapter: bool) -> str:
    """How to load the bot without huggingtweets: an adapter needs peft and its base model; whole weights only transformers."""
    if adapter:
        return f"""```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer
model = AutoPeftModelForCausalLM.from_pretrained("{name}")   # downloads the base model named in adapter_config.json
tokenizer = AutoTokenizer.from_pretrained("{name}")
```"""
    return f"""```python
from transformers import pipeline
generator = pipeline("text-generation", model="{name}")
print(generator(generator.tokenizer.bos_token, do_sample=True, top_p=0.95, max_new_tokens=96))
```"""


def _training(info: dict[str, Any], metrics: dict[str, Any], adapter: bool) -> str:
    config = info.get("config", {})
    method = (
        "LoRA (rank " + str(config.get("lora_rank")) + ", all linear layers" + ("" if adapter else ", merged into the weights") + ")"
        if info.get("method") == "lora"
        else "full fine-tune"
    )
    return f"""- Base model: {info.get("base_model_description", info.get("base_model"))}
- Method: {method}
- Epochs: {config.get("epochs")}, learning rate {config.get("learning_rate")}, cosine schedule, batch {config.get("batch_size")} blocks of {config.get("block_size")} tokens, seed {config.get("seed")}, {config.get("precision")}
- Steps: {metrics.get("steps")}, {metrics.get("seconds")} s{", stopped early on request" if info.get("stopped_early") else ""}
- Loss: {_loss(config)}"""


def _loss(config: dict[str, Any]) -> str:
    """How the training loss was taken (bots from before these settings: every token alike, posts packed together)."""
    weight = float(config.get("end_loss_weight", 1.0))
    framing = "each post seeing only itself" if config.get("isolate_posts") else "posts packed together, each after the ones before it"
    if weight == 1:
        return f"every token weighs the same; {framing}"
    return f"the end-of-post marker weighs {weight:g}x in the train loss below (the validation loss is the plain one); {framing}"


def render(info: dict[str, Any], metrics: dict[str, Any], counts_table: str) -> str:
    accounts = ", ".join(info.get("accounts", [])) or "unknown"
    name = info.get("name", "bot")
    adapter = info.get("adapter", info.get("method") == "lora")  # False: LoRA merged into the weights of the bot it continued
    return f"""---
tags:
- huggingtweets
- text-generation
- ai-generated-text
library_name: {"peft" if adapter else "transformers"}
---

# {name}: a language model fine-tuned on the public posts of {accounts}

> **AI-generated text.** Everything this model writes is machine-made. It was never written or endorsed by
> {accounts}. Label generated posts as AI-generated wherever you show them, and do not pass them off as the person's.

Made with huggingtweets, a research and teaching tool for fine-tuning language models.

## Data

{counts_table}

The newest {int(100 * 0.1)}% of each account's posts were held out for validation.{_left_out(info)}

## Training

{_training(info, metrics, adapter)}

## Results

Validation perplexity: base model {metrics.get("base_perplexity")}, this bot {metrics.get("bot_perplexity")} (lower is better).

{_results(metrics)}

## How to use

With huggingtweets:

```python
from huggingtweets import Bot
bot = Bot.load("{name}")
for post in bot.generate(n=5, prompt="I think"):
    print(post.text, "(copies a training post)" if post.copied else "")
```

With transformers (each post starts after the tokenizer's start token and ends at its end token):

{_use_transformers(name, adapter)}

## Limitations and bias

The model imitates the style and the topics of a small set of posts, including their mistakes, opinions and biases, and
it inherits those of its base model. It makes things up. It can repeat parts of the training posts: huggingtweets checks
each generated post for any 8-word run from the training posts and drops copies by default. The base model's own
limitations apply (see its model card).
"""
