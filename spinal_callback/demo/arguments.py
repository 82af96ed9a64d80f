"""Command-line flags shared by the TRL and Lightning DPO recipes."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_LR_BUILTIN", "DEFAULT_LR_PRETRAINED", "add_common_arguments", "check_common_arguments", "spinal_options",
]

#: DPO learning rate for the tiny built-in model (trained from scratch minutes ago).
DEFAULT_LR_BUILTIN = 5e-5
#: DPO learning rate for a user's ``--model`` (a real pretrained LM).
DEFAULT_LR_PRETRAINED = 5e-6


def add_common_arguments(parser: argparse.ArgumentParser, default_output_dir: str) -> None:
    """Add the flags both recipes understand.

    Args:
        parser: the recipe's parser.
        default_output_dir: its ``--output-dir`` default.
    """
    data = parser.add_argument_group("model and data")
    data.add_argument("--model", metavar="NAME_OR_PATH", default=None,
                      help="A causal LM to align (AutoModelForCausalLM / AutoTokenizer.from_pretrained). "
                      "Default: the built-in tiny Llama, pre-trained on the addition task (cached).")
    data.add_argument("--dataset", metavar="PATH_OR_NAME", default=None,
                      help="Preference data with prompt/chosen/rejected columns: a .json/.jsonl/.parquet "
                      "file, a save_to_disk directory or a Hub dataset name. Default: built-in addition pairs.")
    data.add_argument("--dataset-split", default="train", help="Split of --dataset to train on (default: train).")
    data.add_argument("--num-pairs", type=int, default=2048,
                      help="Built-in preference pairs to generate (default: 2048).")
    data.add_argument("--eval-size", type=int, default=500,
                      help="Held-out addition problems for greedy accuracy (default: 500).")

    train = parser.add_argument_group("training")
    train.add_argument("--max-steps", type=int, default=120, help="DPO optimizer steps (default: 120).")
    train.add_argument("--batch-size", type=int, default=16, help="Preference pairs per step (default: 16).")
    train.add_argument("--learning-rate", type=float, default=None,
                       help=f"DPO learning rate (default: {DEFAULT_LR_BUILTIN:g} for the built-in model, "
                       f"{DEFAULT_LR_PRETRAINED:g} with --model).")
    train.add_argument("--beta", type=float, default=0.1, help="DPO β (default: 0.1).")
    train.add_argument("--bf16", action="store_true", help="Train in bf16 mixed precision.")
    train.add_argument("--seed", type=int, default=0, help="Seed of the task, the model and training (default: 0).")
    train.add_argument("--output-dir", default=default_output_dir,
                       help=f"Where logs, traces and checkpoints go (default: {default_output_dir}).")
    train.add_argument("--threads", type=int, default=1,
                       help="torch CPU threads; tiny models run fastest on one (default: 1; 0 keeps torch's "
                       "default).")

    sft = parser.add_argument_group("built-in model pre-training (skipped with --model)")
    sft.add_argument("--sft-max-steps", type=int, default=800,
                     help="Most supervised pre-training steps (default: 800).")
    sft.add_argument("--sft-target", type=float, default=0.6,
                     help="Stop pre-training at this validation accuracy (default: 0.6).")
    sft.add_argument("--cache-dir", default=None,
                     help="Cache of pre-trained built-in models (default: <output-dir>/sft_cache).")

    spinal = parser.add_argument_group("spinal callback")
    spinal.add_argument("--no-spinal", action="store_true", help="Train without the spinal callback.")
    spinal.add_argument("--interval", type=int, default=10,
                        help="The probe forward (probe-pair signals, last-layer geometry) every N optimizer steps "
                        "(default: 10, for a dense dashboard on a short run; the library's default is 50).")
    spinal.add_argument("--signal-interval", type=int, default=None,
                        help="Read the early warning's forward-free signals (update size and turn, the trainer's "
                        "metrics) and run the detector every N steps (default: the library's, 2 for an even "
                        "--interval).")
    spinal.add_argument("--heatmap-interval", type=int, default=None,
                        help="Steps between heatmap images (default: the library's; alerts, rollbacks and the end of "
                        "training always draw; 0: at every full depth trace).")
    spinal.add_argument("--trace-interval", type=int, default=10,
                        help="Full depth trace every N optimizer steps (default: 10; 0: every probe).")
    spinal.add_argument("--num-probe-pairs", type=int, default=16,
                        help="Preference pairs in the fixed probe set (default: 16).")


def spinal_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``SpinalConfig`` fields the recipes' spinal flags set (a flag left at ``None`` keeps the library's
    default)."""
    options: dict[str, Any] = {"interval": args.interval, "signal_interval": args.signal_interval,
                               "trace_interval": args.trace_interval, "num_probe_pairs": args.num_probe_pairs}
    if args.heatmap_interval is not None:
        options["heatmap_interval"] = args.heatmap_interval
    return options


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse out-of-range values with ``parser.error`` (exit status 2), naming the flag."""
    positive: Sequence[tuple[str, int | float]] = [
        ("--max-steps", args.max_steps), ("--batch-size", args.batch_size), ("--interval", args.interval),
        ("--num-probe-pairs", args.num_probe_pairs), ("--num-pairs", args.num_pairs),
        ("--eval-size", args.eval_size), ("--beta", args.beta),
    ]
    for flag, value in positive:
        if value <= 0:
            parser.error(f"{flag} must be positive, got {value}")
    if args.signal_interval is not None and args.signal_interval <= 0:
        parser.error(f"--signal-interval must be positive, got {args.signal_interval}")
    if args.signal_interval is not None and args.interval % args.signal_interval:
        parser.error(f"--interval ({args.interval}) must be a multiple of --signal-interval ({args.signal_interval})")
    if args.heatmap_interval is not None and args.heatmap_interval < 0:
        parser.error(f"--heatmap-interval must be 0 or positive, got {args.heatmap_interval}")
    if args.trace_interval < 0:
        parser.error(f"--trace-interval must be 0 or positive, got {args.trace_interval}")
    if args.learning_rate is not None and args.learning_rate <= 0:
        parser.error(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.threads < 0:
        parser.error(f"--threads must be 0 (torch's default) or positive, got {args.threads}")
    if args.sft_max_steps < 0:
        parser.error(f"--sft-max-steps must be 0 or positive, got {args.sft_max_steps}")
    if not 0.0 < args.sft_target <= 1.0:
        parser.error(f"--sft-target must be in (0, 1], got {args.sft_target}")
