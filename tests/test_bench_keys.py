"""The JSON report's fields as they were before bench.py became a package, for tests/test_bench.py's quick run to
compare its report with: the refactor moved code, and a field that moved or vanished would break the README's
tables and whoever reads the JSON."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from huggingtweets.train import TrainConfig

# The shape of a quick run's report on a machine without CUDA and without bf16 arithmetic, None for a leaf; a list
# holds the shape of its items.
TRAIN_STEPS = dict.fromkeys((
    "kind", "method", "lora_rank", "lora_target", "layers", "checkpointing", "batch_size", "block_size", "learning_rate",
    "precision", "threads", "warmup_steps", "steps", "step_seconds", "tokens_per_s", "real_tokens_per_s", "parameters",
    "trainable_parameters", "flops_per_token", "flops_formula", "padding_share", "eval_loss", "peak_rss_bytes", "seconds",
    "utilisation",
))
LAYOUT = dict.fromkeys(("positions", "padding_share", "positions_vs_packed"))
PADDING = {
    **dict.fromkeys(("block_size", "posts", "blocks", "positions", "padding_share", "mask_zero_share", "labelled_share")),
    "without_packing": {"tokens": None, "one_post_per_block": LAYOUT, "padded_per_batch": {"2": LAYOUT, "8": LAYOUT}},
}
SPEED = dict.fromkeys(("posts", "batch_size", "seconds", "posts_per_s", "ended_share", "median_characters"))


def race_arm() -> dict[str, Any]:
    # The config is TrainConfig's own fields (train.py's to change), less the two that say nothing of the training.
    return {
        **dict.fromkeys(("name", "train_posts", "validation_posts", "steps", "train_seconds", "wall_seconds", "eval_seconds",
                         "checkpoint_seconds", "best_eval_loss", "best_perplexity", "best_at_train_seconds")),
        "config": {f.name: None for f in fields(TrainConfig) if f.name not in ("wandb", "save_minutes")},
        "history": [dict.fromkeys(("step", "epoch", "eval_loss", "perplexity", "train_seconds", "wall_seconds"))],
    }


def quick_report_before() -> dict[str, Any]:
    return {
        "date": None, "quick": None, "base_model": None, "failed_sections": None, "seconds": None,
        "options": dict.fromkeys((
            "data", "base_model", "quick", "sections", "matmul_size", "matmul_repeats", "warmup_steps", "throughput_steps",
            "race_posts", "race_validation_posts", "quality_posts", "evals_per_epoch", "batch1_posts", "batched_posts",
            "generation_batch", "stream_repeats", "memorisation_samples", "lever_steps", "gpu_posts", "race_variants",
            "child_timeout_s",
        )),
        "machine": dict.fromkeys(("cpu", "cores", "cpu_capability", "cpu_bf16", "torch", "torch_threads", "gpu", "python")),
        "data": dict.fromkeys(("source", "posts", "train_posts", "validation_posts", "race_train_posts", "race_validation_posts",
                               "quality_posts")),
        "peak": dict.fromkeys(("device", "size", "repeats", "best_seconds", "gflops")),
        "throughput": {"full": TRAIN_STEPS, "lora": TRAIN_STEPS},
        "padding": {"all_posts": PADDING, "race_posts": PADDING},
        "race": {
            "reference": race_arm(), "default": race_arm(),
            **dict.fromkeys(("target_eval_loss", "target_perplexity", "reference_seconds", "default_seconds", "ratio", "wall_ratio",
                             "default_best_perplexity", "meaningful", "note")),
        },
        "quality": {
            **dict.fromkeys(("posts", "base_perplexity", "bot_perplexity", "ratio", "bot")),
            "memorisation": dict.fromkeys(("samples_before", "copy_share_before", "samples_after", "copy_share_after", "redrawn",
                                           "examples")),
        },
        "generation": {
            **dict.fromkeys(("max_new_tokens", "use_cache", "int8", "fast_sampling", "temperature", "dtype",
                             "training_median_characters", "peak_rss_bytes", "seconds")),
            "batch1": SPEED, "batched": SPEED,
            "stream": dict.fromkeys(("repeats", "first_token_s", "first_text_s", "sixteen_tokens_s")),
        },
        "memory": dict.fromkeys(("full_training_rss_bytes", "lora_training_rss_bytes", "lora_compiled_training_rss_bytes",
                                 "generation_rss_bytes", "how")),
        "gpu": {"train_seconds": None, "note": None},
        "targets": [dict.fromkeys(("id", "measure", "value", "target", "passed", "note"))],
    }


VARIETY = dict.fromkeys(("posts", "distinct_1", "distinct_2", "repeated_4gram_share", "duplicate_share"))
# Issue 22's section, the one field the quick report has gained since.
VOICE = {**VARIETY, **dict.fromkeys(("median_characters", "person_median_characters", "length_ratio", "ended_share", "person_posts")),
         "person_sample": VARIETY}


# Issue 21's GPU check: two options the report has gained since (the gpu section's own fields need a CUDA device).
GPU_OPTIONS = ("gpu_matmul_size", "gpu_budget_s")


# Issue 22's end bias: tuned on the race bot's posts, applied to its draws, and the lever's other two arms.
CALIBRATION = {**dict.fromkeys(("held_out_bias", "bias", "person_median")), "tries": [dict.fromkeys(("bias", "median", "ended"))]}
ARM = {"end_bias": None, **VOICE}


def quick_report_now() -> dict[str, Any]:
    """The report before the split, with what issues 21 and 22 added."""
    report = {**quick_report_before(), "end_calibration": CALIBRATION,
              "voice": {**VOICE, "end_bias": None, "arms": {"as learnt (0)": ARM, "held-out calibration": ARM}}}
    report["options"] = {**report["options"], **dict.fromkeys((*GPU_OPTIONS, "length_posts"))}
    report["generation"] = {**report["generation"], "end_bias": None}
    return report


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Every key of a report as a dotted path; `[]` stands for the items of a list (their keys pooled)."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            paths |= {path} | key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, prefix + "[]")
    return paths


def test_key_paths_name_nested_keys_and_pool_list_items():
    report = {"a": {"b": 1, "c": [{"d": 1}, {"e": 2}], "f": [1, 2]}, "g": None}
    assert key_paths(report) == {"a", "a.b", "a.c", "a.c[].d", "a.c[].e", "a.f", "g"}
    assert key_paths({"a": {"b": 1}}) != key_paths({"a": {"c": 1}})
