"""The demo model: a tiny Llama built ``from_config`` and briefly pre-trained on the addition task.

Supervised pre-training is a plain PyTorch loop (teacher forcing, loss on the answer tokens only)
that stops at a decent but imperfect accuracy, so DPO has mistakes left to fix. Its result is
cached on disk under a key made of the model config, the task and the training settings, so a
second run skips it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from spinal_callback.demo.task import AdditionTask, build_tokenizer, greedy_accuracy

__all__ = [
    "DEMO_ARCHITECTURES",
    "SFTResult",
    "SFTSettings",
    "build_model",
    "demo_config",
    "pretrained_demo_model",
    "supervised_pretrain",
]

logger = logging.getLogger(__name__)


#: Decoder families :func:`demo_config` can build: the demo's Llama, and two others for checks on other
#: architectures (Qwen2: Llama's blocks with biased attention projections; GPT-2: LayerNorm, GELU, learned
#: absolute positions and a tied unembedding).
DEMO_ARCHITECTURES = ("llama", "qwen2", "gpt2")


def demo_config(vocab_size: int, num_layers: int = 9, hidden_size: int = 96, architecture: str = "llama") -> Any:
    """A tiny decoder config: 9 blocks by default, so the early/mid/late thirds have 3 blocks each.

    Args:
        vocab_size: tokenizer size (99 for the demo tokenizer).
        num_layers: decoder blocks.
        hidden_size: residual width; a multiple of 8 (4 attention heads of even size, for RoPE).
        architecture: one of :data:`DEMO_ARCHITECTURES` (default: the demo's Llama).

    Raises:
        ValueError: unknown ``architecture``.
    """
    ids: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    if architecture == "llama":
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 3,
                           num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False, **ids)
    if architecture == "qwen2":
        from transformers import Qwen2Config

        return Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 3,
                           num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False, **ids)
    if architecture == "gpt2":
        from transformers import GPT2Config

        return GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=num_layers, n_head=4, n_positions=64,
                          **ids)
    raise ValueError(f"`architecture` must be one of {', '.join(DEMO_ARCHITECTURES)}, got {architecture!r}")


def build_model(config: Any, seed: int) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` (float32) from ``config``, seeded with ``seed``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


@dataclass(frozen=True)
class SFTSettings:
    """Supervised pre-training settings (all part of the cache key).

    Training stops at ``max_steps`` or as soon as greedy accuracy on a validation draw of training
    problems reaches ``target_accuracy`` (checked every ``check_every`` steps): a model that is
    decent but still makes mistakes, which is what the DPO demo needs.

    Attributes:
        max_steps: most optimizer steps.
        batch_size: problems per step.
        learning_rate: AdamW learning rate (linear warm-up over ``warmup_steps``, then constant).
        warmup_steps: warm-up length.
        target_accuracy: stop once the validation accuracy reaches this (in ``[0, 1]``).
        check_every: steps between validation checks.
        max_operand: largest operand of the addition task.
    """

    max_steps: int = 800
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 40
    target_accuracy: float = 0.6
    check_every: int = 40
    max_operand: int = 99

    def __post_init__(self) -> None:
        for name in ("batch_size", "check_every", "warmup_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}")
        if self.max_steps < 0:
            raise ValueError(f"`max_steps` must be 0 or positive, got {self.max_steps!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be positive, got {self.learning_rate!r}")
        if not 0.0 <= self.target_accuracy <= 1.0:
            raise ValueError(f"`target_accuracy` must be in [0, 1], got {self.target_accuracy!r}")


@dataclass
class SFTResult:
    """What :func:`pretrained_demo_model` returns besides the model and tokenizer.

    Attributes:
        accuracy_before: greedy eval accuracy of the random initialisation.
        accuracy_after: greedy eval accuracy after pre-training.
        steps: optimizer steps taken.
        seconds: wall time of the pre-training (0 when loaded from cache).
        cached: whether the weights came from the on-disk cache.
        path: the cache directory (``save_pretrained`` model + tokenizer + ``sft.json``).
    """

    accuracy_before: float
    accuracy_after: float
    steps: int
    seconds: float
    cached: bool
    path: str


def _encode(tokenizer: Any, prompts: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded prompt+answer+EOS ids with labels on the answer and EOS only."""
    rows, labels = [], []
    for prompt, answer in zip(prompts, answers):
        p = tokenizer(prompt)["input_ids"]
        full = tokenizer(prompt + answer)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(full)
        labels.append([-100] * len(p) + full[len(p) :])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def _progress_bar(total: int, target: float, enabled: bool) -> Any:
    """A bar over the SFT optimizer steps; it says that it ends early once ``target`` validation accuracy is
    reached (then its total shrinks to the steps taken, so it ends full)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with the `demo` extra; without it, train silently
        return None
    return tqdm(total=total, desc=f"SFT steps (ends early at {target:.0%} val. accuracy)", unit="step")


def supervised_pretrain(
    model: Any, tokenizer: Any, task: AdditionTask, settings: SFTSettings, progress: bool = False
) -> int:
    """Teacher-forced training on correct answers (cross-entropy on answer + EOS tokens).

    Args:
        model: the causal LM to train in place (left in eval mode).
        tokenizer: its tokenizer.
        task: source of training and validation problems.
        settings: steps, batch size, learning rate and the early-stopping target.
        progress: show a tqdm progress bar.

    Returns:
        The number of optimizer steps taken.
    """
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.01)
    warmup = settings.warmup_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    stream = task.sft_stream()
    validation = task.train_problems(128, purpose="validation")
    step = 0
    bar = _progress_bar(settings.max_steps, settings.target_accuracy, progress)
    while step < settings.max_steps:
        problems = [next(stream) for _ in range(settings.batch_size)]
        batch = _encode(tokenizer, [p.prompt for p in problems], [p.answer for p in problems])
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if bar is not None:
            bar.update(1)
        if step % settings.check_every == 0:
            accuracy = greedy_accuracy(model, tokenizer, validation)
            logger.info("SFT step %d: loss %.4f, validation accuracy %.3f", step, loss.item(), accuracy)
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{accuracy:.2f}")
            if accuracy >= settings.target_accuracy:
                if bar is not None:  # a finished bar, not one that looks cut off at 40 %
                    bar.total = step
                    bar.set_description(f"SFT steps ({settings.target_accuracy:.0%} val. accuracy reached)")
                    bar.refresh()
                break
    if bar is not None:
        bar.close()
    model.eval()
    return step


def _cache_key(config: Any, settings: SFTSettings, seed: int, eval_size: int) -> str:
    payload = {"config": config.to_dict(), "sft": asdict(settings), "seed": seed, "eval": eval_size, "version": 1}
    payload["config"].pop("transformers_version", None)
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def pretrained_demo_model(
    cache_dir: str | os.PathLike[str],
    seed: int = 0,
    settings: SFTSettings | None = None,
    num_layers: int = 9,
    hidden_size: int = 96,
    eval_size: int = 500,
    progress: bool = False,
    architecture: str = "llama",
) -> tuple[Any, Any, SFTResult]:
    """The demo policy: built from config, pre-trained once, then loaded from ``cache_dir``.

    Args:
        cache_dir: parent folder of the cache; one sub-folder per (config, settings, seed) key.
        seed: seed of the initialisation, the task and the training order.
        settings: pre-training settings (defaults: :class:`SFTSettings`).
        num_layers: decoder blocks of the tiny model.
        hidden_size: its residual width.
        eval_size: held-out problems used to measure accuracy (part of the cache key, so the
            recorded accuracies always match ``AdditionTask(seed=seed).eval_problems(eval_size)``).
        progress: show a progress bar while pre-training.
        architecture: the decoder family, one of :data:`DEMO_ARCHITECTURES` (default: the demo's Llama).

    Returns:
        ``(model, tokenizer, result)``; the model is in eval mode, float32, on CPU.
    """
    from transformers import AutoModelForCausalLM

    settings = settings or SFTSettings()
    tokenizer = build_tokenizer()
    config = demo_config(len(tokenizer), num_layers=num_layers, hidden_size=hidden_size, architecture=architecture)
    task = AdditionTask(max_operand=settings.max_operand, seed=seed)
    path = Path(cache_dir) / f"sft-{_cache_key(config, settings, seed, eval_size)}"
    meta = path / "sft.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model.eval()
        before, after = info["accuracy_before"], info["accuracy_after"]
        return model, tokenizer, SFTResult(before, after, info["steps"], 0.0, True, str(path))

    model = build_model(config, seed)
    evals = task.eval_problems(eval_size)
    before = greedy_accuracy(model, tokenizer, evals)
    start = time.perf_counter()
    steps = supervised_pretrain(model, tokenizer, task, settings, progress=progress)
    seconds = time.perf_counter() - start
    after = greedy_accuracy(model, tokenizer, evals)
    logger.info("SFT: %d steps in %.1fs, greedy accuracy %.3f -> %.3f", steps, seconds, before, after)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "sft.json").write_text(
        json.dumps(
            {
                "accuracy_before": before,
                "accuracy_after": after,
                "steps": steps,
                "seconds": seconds,
                "seed": seed,
                "settings": asdict(settings),
            },
            indent=2,
        )
    )
    if path.exists():  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, path)
    return model, tokenizer, SFTResult(before, after, steps, seconds, False, str(path))
