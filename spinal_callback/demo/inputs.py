"""What a recipe trains on: the policy, its tokenizer, the preference data and the eval problems."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from spinal_callback.demo.arguments import DEFAULT_LR_BUILTIN, DEFAULT_LR_PRETRAINED
from spinal_callback.demo.data import load_preference_dataset, task_dataset
from spinal_callback.demo.model import SFTResult, SFTSettings, pretrained_demo_model
from spinal_callback.demo.task import AdditionTask, Problem, greedy_accuracy

__all__ = ["RunInputs", "accuracy_line", "prepare_inputs", "silence_known_warnings"]

#: Warnings the recipes trigger on purpose or that come from library internals, not from the user's setup.
_KNOWN_WARNINGS = (
    (FutureWarning, r".*is deprecated and will be removed in v6.*"),  # transformers' renames, called by TRL
    (UserWarning, r".*module\(s\) in eval mode at the start of training.*"),  # the frozen reference, by design
)


@dataclass
class RunInputs:
    """Everything a recipe needs before it builds its trainer.

    Attributes:
        model: the policy (float32, CPU, eval mode).
        tokenizer: its tokenizer (with a pad token).
        train_dataset: ``datasets.Dataset`` with prompt/chosen/rejected text columns.
        eval_problems: held-out addition problems, or ``None`` with a custom ``--dataset`` (greedy
            accuracy is only defined for the built-in task).
        sft: the built-in model's pre-training result, ``None`` with ``--model``.
        learning_rate: ``--learning-rate`` or the default for this kind of model.
    """

    model: Any
    tokenizer: Any
    train_dataset: Any
    eval_problems: list[Problem] | None
    sft: SFTResult | None
    learning_rate: float

    def accuracy(self, model: Any | None = None) -> float | None:
        """Greedy accuracy of ``model`` (default: the policy) on the eval problems, if any."""
        if self.eval_problems is None:
            return None
        return greedy_accuracy(model if model is not None else self.model, self.tokenizer, self.eval_problems)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _load_pretrained(name: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def prepare_inputs(args: argparse.Namespace) -> RunInputs:
    """Build or load the policy and the data a recipe's ``args`` ask for.

    Seeds Python and torch with ``--seed`` and sets the torch thread count (``--threads``).

    Raises:
        DatasetError: ``--dataset`` is unusable (missing file or columns, …).
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    _seed_everything(args.seed)
    task = AdditionTask(seed=args.seed)
    sft: SFTResult | None = None
    if args.model:
        model, tokenizer = _load_pretrained(args.model)
    else:
        cache = args.cache_dir or os.path.join(args.output_dir, "sft_cache")
        settings = SFTSettings(max_steps=args.sft_max_steps, target_accuracy=args.sft_target)
        model, tokenizer, sft = pretrained_demo_model(
            cache, seed=args.seed, settings=settings, eval_size=args.eval_size, progress=True
        )
    if args.dataset:
        dataset = load_preference_dataset(args.dataset, split=args.dataset_split)
        problems = None
    else:
        dataset = task_dataset(task.preference_pairs(args.num_pairs))
        problems = task.eval_problems(args.eval_size)
    default_lr = DEFAULT_LR_PRETRAINED if args.model else DEFAULT_LR_BUILTIN
    _seed_everything(args.seed)
    return RunInputs(model, tokenizer, dataset, problems, sft, args.learning_rate or default_lr)


@contextlib.contextmanager
def silence_known_warnings() -> Iterator[None]:
    """Hide the library warnings a recipe run always triggers (listed in ``_KNOWN_WARNINGS``), nothing else."""
    with warnings.catch_warnings():
        for category, message in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def accuracy_line(label: str, value: float | None) -> str:
    """``"label: 61.5%"`` or a note that accuracy needs the built-in task."""
    if value is None:
        return f"{label}: n/a (greedy accuracy is defined for the built-in addition task only)"
    return f"{label}: {100 * value:.1f}%"
