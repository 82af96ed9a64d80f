"""Small DPO set-ups shared by the integration tests: tiny model, local tokenizer, local pairs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from spinal_callback.demo.task import build_tokenizer


def tiny_llama(vocab_size: int, num_layers: int = 6, seed: int = 0) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.for_model(
        "llama", vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=num_layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
    )
    return AutoModelForCausalLM.from_config(config)


def tokenizer() -> Any:
    return build_tokenizer()


def pairs(n: int = 24) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        a, b = 3 + 7 * i % 50, 11 + 5 * i % 40
        out.append({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(a + b + 1 + i % 3)})
    return out


def scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in every event file under ``log_dir``: tag -> [(step, value)]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for run_dir in _run_dirs(log_dir):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def _run_dirs(log_dir: str | Path) -> set[Path]:
    """Directories holding event files (an accumulator reads every event file of its directory)."""
    return {events.parent for events in Path(log_dir).rglob("events.out.tfevents.*")}


def images(log_dir: str | Path) -> set[str]:
    tags: set[str] = set()
    for run_dir in _run_dirs(log_dir):
        acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
        acc.Reload()
        tags.update(acc.Tags()["images"])
    return tags


def all_finite(points: list[tuple[int, float]]) -> bool:
    return all(math.isfinite(v) for _, v in points)
