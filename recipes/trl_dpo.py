"""DPO with TRL's DPOTrainer and the spinal callback, configured from the command line with ``TrlParser``.

Usage::

    python recipes/trl_dpo.py                                  # tiny built-in model (no download), ~1 min on CPU
    python recipes/trl_dpo.py --spinal_on_alert log rollback --spinal_rollback '{"snapshot_interval": 20}' \\
        --lr_spike 60:30                                       # inject a divergence, watch the rollback
    python recipes/trl_dpo.py --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name pairs.jsonl \\
        --max_steps 200 --bf16 --use_peft --spinal_interval 10 --spinal_detector detector.json
    python recipes/trl_dpo.py --config recipe.yaml             # the same options as a YAML mapping
    python recipes/trl_dpo.py --help

The options come from three dataclasses parsed together by ``TrlParser((RecipeArguments, DPOConfig,
SpinalArguments))``: :class:`RecipeArguments` below (model, data, LoRA, fault injection), TRL's ``DPOConfig``
(``--max_steps``, ``--learning_rate``, ``--beta``, ``--max_length``, ``--seed``, ``--bf16``, ``--report_to``,
``--output_dir`` …) and :class:`spinal_callback.config.SpinalArguments`: every ``SpinalConfig`` field ``name`` as
``--spinal_name``, so ``--max_length`` / ``--seed`` are DPO's and ``--spinal_max_length`` / ``--spinal_seed``
the probe's. ``--learning_rate`` defaults to 5e-5 for the built-in model and 5e-6 with
``--model_name_or_path`` (×10 with ``--use_peft``). The callback itself is one line::

    trainer = DPOTrainer(..., callbacks=[SpinalTrainerCallback(spinal_args.to_config())])
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import spinal_callback  # noqa: F401
except ModuleNotFoundError as err:  # a source checkout without `pip install -e .`
    if err.name != "spinal_callback":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from trl import DPOConfig, TrlParser

from spinal_callback.config import SpinalArguments
from spinal_callback.demo.arguments import DEFAULT_LR_BUILTIN, DEFAULT_LR_PRETRAINED
from spinal_callback.demo.data import DatasetError
from spinal_callback.demo.inputs import prepare_inputs, silence_known_warnings
from spinal_callback.demo.trl_recipe import dpo_trainer

_DPO_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "loss")

#: DPOConfig defaults this recipe changes (each can still be given on the command line or in --config).
RECIPE_DEFAULTS: dict[str, Any] = {
    "output_dir": os.path.join("spinal_runs", "trl_dpo"),
    "max_steps": 120,
    "per_device_train_batch_size": 16,
    "learning_rate": None,  # by model kind, see the module docstring
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 5,
    "max_length": 256,
    "bf16": False,
    "use_cpu": not torch.cuda.is_available(),
    "logging_steps": 5,
    "logging_first_step": True,
    "report_to": ["tensorboard"],
    "save_strategy": "no",
    "dataloader_num_workers": 0,
    "dataloader_pin_memory": torch.cuda.is_available(),
    "spinal_trace_interval": 10,
}


@dataclass
class RecipeArguments:
    """What to train on, and how."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Hugging Face model name or local path of a causal LM. Default: a tiny Llama pre-trained "
            "on two-number addition, built and cached locally (nothing is downloaded)."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Preference data with prompt/chosen/rejected columns: a local .json/.jsonl/.csv/.parquet "
            "file or a Hugging Face dataset name. Default: correct-vs-wrong addition pairs."
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of --dataset_name to train on."})
    num_pairs: int = field(default=2048, metadata={"help": "Built-in task: number of preference pairs."})
    eval_size: int = field(default=500, metadata={"help": "Built-in task: held-out problems for greedy accuracy."})
    sft_max_steps: int = field(default=800, metadata={"help": "Built-in model: pre-training steps (cached)."})
    sft_target: float = field(default=0.6, metadata={"help": "Built-in model: stop pre-training at this accuracy."})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Built-in model cache. Default: <output_dir>/sft_cache."}
    )
    threads: int = field(default=1, metadata={"help": "torch CPU threads (0: torch's default)."})
    use_peft: bool = field(
        default=False, metadata={"help": "Train LoRA adapters; the reference is the policy with its adapter disabled."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank with --use_peft."})
    no_spinal: bool = field(default=False, metadata={"help": "Train without the spinal callback."})
    lr_spike: str | None = field(
        default=None,
        metadata={
            "help": "Inject a fault: multiply the learning rate by FACTOR from STEP on (STEP:FACTOR, e.g. "
            "60:30), to watch the early warning and the rollback."
        },
    )

    def __post_init__(self) -> None:
        for name in ("num_pairs", "eval_size", "lora_r"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.sft_max_steps < 0 or self.threads < 0:
            raise ValueError(f"--sft_max_steps and --threads must be >= 0, got {self.sft_max_steps}, {self.threads}")
        if not 0.0 < self.sft_target <= 1.0:
            raise ValueError(f"--sft_target must be in (0, 1], got {self.sft_target}")
        if self.lr_spike is not None:
            from spinal_callback.demo.faults import parse_lr_spike

            parse_lr_spike(self.lr_spike)


def build_parser() -> TrlParser:
    """``TrlParser((RecipeArguments, DPOConfig, SpinalArguments))`` with the recipe's defaults."""
    dataclasses: tuple[Any, ...] = (RecipeArguments, DPOConfig, SpinalArguments)
    parser = TrlParser(dataclasses)
    parser.set_defaults(**RECIPE_DEFAULTS)
    return parser


def parse(argv: Sequence[str] | None = None) -> tuple[RecipeArguments, DPOConfig, Any]:
    """The three argument dataclasses from ``argv`` (and a ``--config`` YAML file), learning rate filled in."""
    parser = build_parser()
    try:
        recipe, dpo, spinal = parser.parse_args_and_config(list(argv) if argv is not None else None)
    except ValueError as err:  # a dataclass refused a value: exit 2 with the message, as argparse does
        parser.error(str(err))
    if dpo.learning_rate is None:
        dpo.learning_rate = (DEFAULT_LR_PRETRAINED if recipe.model_name_or_path else DEFAULT_LR_BUILTIN) * (
            10 if recipe.use_peft else 1
        )
    return recipe, dpo, spinal


def build_trainer(recipe: RecipeArguments, dpo: DPOConfig, spinal: Any, inputs: Any) -> tuple[Any, Any]:
    """The ``DPOTrainer`` and the spinal callback attached to it (``None`` with ``--no_spinal``)."""
    return dpo_trainer(
        inputs, dpo, spinal=None if recipe.no_spinal else spinal.to_config(), peft=recipe.use_peft,
        lora_r=recipe.lora_r, lr_spike=recipe.lr_spike,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, train, print where the logs are; returns 0 (bad options exit with a message)."""
    recipe, dpo, spinal = parse(argv)
    legacy = argparse.Namespace(  # what the built-in model and data loader read
        model=recipe.model_name_or_path,
        dataset=recipe.dataset_name,
        dataset_split=recipe.dataset_train_split,
        num_pairs=recipe.num_pairs,
        eval_size=recipe.eval_size,
        sft_max_steps=recipe.sft_max_steps,
        sft_target=recipe.sft_target,
        cache_dir=recipe.cache_dir,
        threads=recipe.threads,
        seed=dpo.seed,
        output_dir=dpo.output_dir,
        learning_rate=dpo.learning_rate,
    )
    start = time.perf_counter()
    try:
        inputs = prepare_inputs(legacy)
    except DatasetError as err:
        raise SystemExit(f"trl_dpo.py: error: {err}") from None
    with silence_known_warnings():
        trainer, callback = build_trainer(recipe, dpo, spinal, inputs)
        trainer.train()
    history = trainer.state.log_history
    print(f"DPO: {trainer.state.global_step} steps in {time.perf_counter() - start:.0f} s")
    for name in _DPO_METRICS:
        values = [h[name] for h in history if name in h]
        if values:
            print(f"  {name}: {values[0]:.4g} -> {values[-1]:.4g}")
    if callback is not None:
        print(f"spinal TensorBoard: tensorboard --logdir {callback.log_dir}")
        print(f"spinal trace: {callback.trace_path}  (spinal report {callback.trace_path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
