"""DPO with TRL's ``DPOTrainer`` and the spinal callback attached — the ``spinal demo`` recipe.

Run ``python recipes/trl_dpo.py`` (or ``spinal demo``): a tiny Llama is pre-trained on two-number
addition (cached), then aligned with DPO on pairs whose chosen answer is right and rejected answer
wrong, while ``SpinalTrainerCallback`` logs the layer geometry to the same TensorBoard run as HF's
own scalars. ``--model`` / ``--dataset`` swap in a real model and real preference data.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from spinal_callback.demo.arguments import add_common_arguments, check_common_arguments, spinal_options
from spinal_callback.demo.data import DatasetError
from spinal_callback.demo.inputs import RunInputs, prepare_inputs, silence_known_warnings
from spinal_callback.demo.summary import save_policy, sft_model_of, start_end, write_summary

__all__ = ["build_parser", "build_trainer", "main"]

_DPO_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "loss")


_DESCRIPTION = (
    "DPO with TRL's DPOTrainer and the spinal callback attached (the `spinal demo` recipe). Without "
    "--model/--dataset: a tiny Llama pre-trained on two-number addition (cached), aligned on correct-vs-wrong "
    "answer pairs; nothing is downloaded."
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The recipe's argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
    add_common_arguments(parser, default_output_dir=os.path.join("spinal_runs", "trl_dpo"))
    trl = parser.add_argument_group("TRL")
    trl.add_argument(
        "--peft",
        action="store_true",
        help="Train LoRA adapters (peft); the reference is the policy with its adapter disabled. "
        "The default learning rate is 10x higher.",
    )
    trl.add_argument("--lora-r", type=int, default=8, help="LoRA rank with --peft (default: 8).")
    trl.add_argument("--logging-steps", type=int, default=5, help="HF logging interval in steps (default: 5).")
    alerts = parser.add_argument_group("early warning")
    alerts.add_argument(
        "--on-alert", default="log", help="Comma-separated alert actions: log, stop, rollback (default: log)."
    )
    alerts.add_argument(
        "--snapshot-interval",
        type=int,
        default=20,
        help="Known-good snapshot every N steps when rolling back (default: 20).",
    )
    alerts.add_argument(
        "--lr-spike",
        metavar="STEP:FACTOR",
        default=None,
        help="Inject a fault: multiply the learning rate by FACTOR from STEP on (e.g. 60:30), "
        "to watch the early warning and the rollback.",
    )
    return parser


def _spinal_config(args: argparse.Namespace) -> Any:
    """The callback's configuration from the recipe's flags (raises ``ValueError`` for bad ones)."""
    from spinal_callback import RollbackConfig, SpinalConfig

    return SpinalConfig(
        **spinal_options(args),
        on_alert=tuple(a.strip() for a in args.on_alert.split(",") if a.strip()),
        rollback=RollbackConfig(snapshot_interval=args.snapshot_interval),
    )


def build_trainer(args: argparse.Namespace, inputs: RunInputs) -> tuple[Any, Any]:
    """A ``DPOTrainer`` for ``inputs`` and the spinal callback attached to it (``None`` with --no-spinal).

    The reference model is a frozen deep copy of the policy (TRL cannot rebuild one from a model
    made ``from_config``), or nothing under ``--peft``, where TRL disables the adapter instead.
    Gradient checkpointing keeps DPOConfig's default (on).
    """
    from trl import DPOConfig

    learning_rate = inputs.learning_rate * (10 if args.peft and args.learning_rate is None else 1)
    config = DPOConfig(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(5, args.max_steps // 10),
        beta=args.beta,
        max_length=256,
        bf16=args.bf16,
        use_cpu=args.bf16 and not torch.cuda.is_available(),  # transformers refuses bf16 on CPU otherwise
        logging_steps=args.logging_steps,
        logging_first_step=True,
        report_to=["tensorboard"],
        save_strategy="no",
        seed=args.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    spinal = None if args.no_spinal else _spinal_config(args)
    trainer, callback = dpo_trainer(
        inputs, config, spinal=spinal, peft=args.peft, lora_r=args.lora_r, lr_spike=args.lr_spike
    )
    label = _progress_label(trainer)
    if label is not None:
        trainer.add_callback(label)
    return trainer, callback


def dpo_trainer(
    inputs: RunInputs, config: Any, *, spinal: Any, peft: bool = False, lora_r: int = 8, lr_spike: str | None = None
) -> tuple[Any, Any]:
    """The ``DPOTrainer`` on ``inputs`` with ``config`` (a ``DPOConfig``) and the spinal callback for the
    ``SpinalConfig`` ``spinal`` (``None``: no callback), which is given its trainer; shared with
    ``recipes/trl_dpo.py``.

    The reference model is a frozen deep copy of the policy (TRL cannot rebuild one from a model made
    ``from_config``), or nothing with ``peft``, where TRL disables the LoRA adapter (rank ``lora_r``)
    instead. ``lr_spike`` (``"STEP:FACTOR"``) adds the learning-rate fault.
    """
    from trl import DPOTrainer

    peft_config = None
    ref_model = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=lora_r,
            lora_alpha=2 * lora_r,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    else:
        ref_model = copy.deepcopy(inputs.model).eval().requires_grad_(False)
    callbacks: list[Any] = []
    callback = None
    if spinal is not None:
        from spinal_callback import SpinalTrainerCallback

        callback = SpinalTrainerCallback(spinal)
        callbacks.append(callback)
    if lr_spike:
        from spinal_callback.demo.faults import LearningRateSpike, parse_lr_spike

        callbacks.append(LearningRateSpike(*parse_lr_spike(lr_spike)))
    trainer = DPOTrainer(
        model=inputs.model,
        ref_model=ref_model,
        args=config,
        train_dataset=inputs.train_dataset,
        processing_class=inputs.tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    if callback is not None:
        callback.set_trainer(trainer)
    return trainer, callback


def _progress_label(trainer: Any) -> Any:
    """A callback that names what HF's progress bar counts (it shows a bare ``45/120`` otherwise), or ``None``
    when the trainer has no tqdm progress callback."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    progress = next((cb for cb in trainer.callback_handler.callbacks if isinstance(cb, ProgressCallback)), None)
    if progress is None:
        return None

    class _ProgressLabel(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            bar = getattr(progress, "training_bar", None)
            if bar is not None:
                bar.set_description("DPO optimizer steps")

    return _ProgressLabel()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the recipe; returns 0 on success (bad flags exit with status 2 and a message)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    if args.lora_r <= 0 or args.logging_steps <= 0:
        parser.error(f"--lora-r and --logging-steps must be positive, got {args.lora_r} and {args.logging_steps}")
    try:
        if args.lr_spike:
            from spinal_callback.demo.faults import parse_lr_spike

            parse_lr_spike(args.lr_spike)
        if not args.no_spinal:
            _spinal_config(args)
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    try:
        inputs = prepare_inputs(args)
    except DatasetError as err:
        parser.error(str(err))
    before = inputs.accuracy()
    with silence_known_warnings():
        trainer, callback = build_trainer(args, inputs)
        trainer.train()
    after = inputs.accuracy(trainer.model)
    policy = save_policy(trainer.model, inputs.tokenizer, args.output_dir)
    history = trainer.state.log_history
    dpo = {name: start_end(history, name) for name in _DPO_METRICS}
    from spinal_callback.integrations.transformers import tensorboard_callback_dir

    log_dir = getattr(callback, "log_dir", None) or tensorboard_callback_dir(
        trainer.callback_handler.callbacks, trainer.args
    )
    trace = getattr(callback, "trace_path", None)
    title = "spinal demo: DPO with TRL" + (" + LoRA" if args.peft else "")
    write_summary(
        title,
        inputs,
        before,
        after,
        dpo,
        log_dir,
        trace,
        args.output_dir,
        time.perf_counter() - start,
        sft_model=sft_model_of(args, inputs),
        policy_path=policy,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
