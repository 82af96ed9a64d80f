"""DPO with a plain LightningModule and ``SpinalLightningCallback`` attached.

Run ``python recipes/lightning_dpo.py``: the same tiny Llama and addition pairs as the TRL recipe
(pre-training cached), aligned by :class:`DPOLightningModule` with sigmoid DPO. Lightning's
``TensorBoardLogger`` (under ``--output-dir``) receives both the DPO metrics and the spinal
geometry. ``--model`` / ``--dataset`` swap in a real model and real preference data.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from spinal_callback.demo.arguments import add_common_arguments, check_common_arguments, spinal_options
from spinal_callback.demo.data import DatasetError
from spinal_callback.demo.inputs import RunInputs, prepare_inputs, silence_known_warnings
from spinal_callback.demo.summary import save_policy, sft_model_of, start_end, write_summary

__all__ = ["build_parser", "main", "preference_records"]

_DPO_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "train/loss")
_MAX_LENGTH = 256


_DESCRIPTION = (
    "DPO with a plain LightningModule and SpinalLightningCallback attached. Without --model/--dataset: a tiny "
    "Llama pre-trained on two-number addition (cached), aligned on correct-vs-wrong answer pairs; nothing is "
    "downloaded."
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The recipe's argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
    add_common_arguments(parser, default_output_dir=os.path.join("spinal_runs", "lightning_dpo"))
    group = parser.add_argument_group("Lightning")
    group.add_argument(
        "--gradient-checkpointing", action="store_true", help="Enable the policy's gradient checkpointing (HF models)."
    )
    group.add_argument(
        "--log-every-n-steps", type=int, default=5, help="Lightning logging interval in steps (default: 5)."
    )
    return parser


def preference_records(dataset: Any, tokenizer: Any) -> list[dict[str, Any]]:
    """Text pairs → records with ``prompt_ids``/``chosen_ids``/``rejected_ids`` plus the text fields.

    Tokenized like TRL does (:func:`spinal_callback.model.probe_batch.tokenize_pairs`: the prompt alone,
    prompt + completion together, EOS appended to each completion).

    Raises:
        DatasetError: a prompt/chosen/rejected value is not a string (conversational data needs the
            TRL recipe, which applies the chat template).
    """
    from spinal_callback.model.probe_batch import tokenize_pairs

    pairs = []
    for i, row in enumerate(dataset):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row[key], str):
                raise DatasetError(
                    f"--dataset row {i}: {key!r} is {type(row[key]).__name__}, not text; the Lightning recipe "
                    "takes plain-text pairs (use the TRL recipe for conversational data)"
                )
        pairs.append({key: row[key] for key in ("prompt", "chosen", "rejected")})
    try:
        tokenized = tokenize_pairs(pairs, tokenizer)
    except ValueError as err:
        raise DatasetError(f"--dataset could not be tokenized: {err}") from err
    return [{**text, **ids} for text, ids in zip(pairs, tokenized)]


def _build_trainer(args: argparse.Namespace, inputs: RunInputs) -> tuple[Any, Any, Any, Any]:
    """(trainer, module, train loader, spinal callback or None)."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from spinal_callback.demo.lightning_module import DPOLightningModule
    from spinal_callback.model.probe_batch import collate_pairs

    if args.gradient_checkpointing:
        # transformers 5 names it activation_checkpointing_enable (the old name goes in v6); 4.x has only the old one
        model = inputs.model
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    module = DPOLightningModule(inputs.model, inputs.tokenizer, beta=args.beta, learning_rate=inputs.learning_rate)
    records = preference_records(inputs.train_dataset, inputs.tokenizer)
    pad_id = inputs.tokenizer.pad_token_id if inputs.tokenizer.pad_token_id is not None else 0
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        records,  # type: ignore[arg-type]  # a list of dicts is a map-style dataset
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(args.seed),
        collate_fn=functools.partial(collate_pairs, pad_token_id=pad_id, max_length=_MAX_LENGTH),
    )
    callbacks: list[Any] = []
    callback = None
    if not args.no_spinal:
        from spinal_callback import SpinalConfig, SpinalLightningCallback

        callback = SpinalLightningCallback(
            SpinalConfig(**spinal_options(args))
        )
        callbacks.append(callback)
    trainer = pl.Trainer(
        max_steps=args.max_steps,
        accelerator="auto",
        devices=1,
        precision="bf16-mixed" if args.bf16 else "32-true",
        logger=TensorBoardLogger(save_dir=args.output_dir, name="lightning"),
        callbacks=callbacks,
        log_every_n_steps=args.log_every_n_steps,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=args.output_dir,
    )
    return trainer, module, loader, callback


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the recipe; returns 0 on success (bad flags exit with status 2 and a message)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    check_common_arguments(parser, args)
    if args.log_every_n_steps <= 0:
        parser.error(f"--log-every-n-steps must be positive, got {args.log_every_n_steps}")
    start = time.perf_counter()
    try:
        inputs = prepare_inputs(args)
        trainer, module, loader, callback = _build_trainer(args, inputs)
    except DatasetError as err:
        parser.error(str(err))
    before = inputs.accuracy()
    with silence_known_warnings():
        trainer.fit(module, train_dataloaders=loader)
    after = inputs.accuracy(module.policy)
    policy = save_policy(module.policy, inputs.tokenizer, args.output_dir)
    dpo = {name: start_end(module.history, name) for name in _DPO_METRICS}
    log_dir = getattr(callback, "log_dir", None) or trainer.logger.log_dir
    trace = getattr(callback, "trace_path", None)
    title = "spinal demo: DPO with Lightning"
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
