"""The ``spinal`` command line.

Commands:

- ``spinal demo [flags]`` — DPO with TRL on a tiny built-in model, the spinal callback attached
  (``spinal demo --help`` lists the recipe's flags);
- ``spinal audit CKPT [CKPT ...] [flags]`` — depth traces of saved checkpoints side by side on one probe
  set: ``audit.json``, plots and a table (``spinal audit --help`` lists the flags);
- ``spinal report TRACE [--out DIR]`` — plots and a summary from a run's trace file;
- ``spinal calibrate TRACE [TRACE ...] -o detector.json`` — detector thresholds from healthy runs' trace files.

Heavy imports (transformers, TRL, PEFT, matplotlib) happen only inside the command that needs them, so
``spinal --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

_USAGE = """usage: spinal [-h] [--version] COMMAND [ARGS...]

Watch the layer geometry of a language model while it is aligned with DPO.

commands:
  demo      DPO with TRL on a tiny built-in model, the spinal callback attached
            (spinal demo --help lists its flags; --no-spinal trains without it)
  audit     depth traces of saved checkpoints side by side, with plots and a table:
            spinal audit CKPT [CKPT ...] [--base M] [--out DIR] (spinal audit --help lists its flags)
  report    plots and a summary from a run's trace file: spinal report TRACE [--out DIR]
  calibrate detector thresholds from your own healthy runs:
            spinal calibrate TRACE [TRACE ...] -o detector.json [--target-rate R] [--config FILE]

options:
  -h, --help  show this message and exit
  --version   show the version and exit
"""


def _demo(argv: Sequence[str]) -> int:
    from spinal_callback.demo.trl_recipe import main as trl_main

    return trl_main(list(argv), prog="spinal demo")


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def _audit_parser() -> argparse.ArgumentParser:
    from spinal_callback.config.spinal import SpinalConfig
    from spinal_callback.tools.audit import DTYPES

    parser = argparse.ArgumentParser(
        prog="spinal audit",
        description="Depth traces of saved checkpoints side by side on one probe set: audit.json, plots (PNG) and "
        "a table of band means.",
    )
    add = parser.add_argument
    add("checkpoints", nargs="+", metavar="CKPT",
        help="Hugging Face model directory, PEFT adapter directory, Lightning .ckpt file or Hub name")
    add("--base", metavar="NAME_OR_PATH",
        help="base model: the architecture of .ckpt files (required for them); overrides an adapter's base")
    add("--prefix", metavar="PREFIX",
        help="state-dict key prefix of .ckpt files, e.g. 'policy.' ('' for none); default: found automatically")
    add("--tokenizer", metavar="NAME_OR_PATH",
        help="tokenizer; default: the first checkpoint (or base) directory that has one")
    add("--probe-pairs", metavar="FILE", help=".json list or .jsonl of {prompt, chosen, rejected} records; "
        "default: held-out problems of the built-in addition task")
    add("--num-probe-pairs", metavar="K", type=_positive_int,
        help="probe pairs used (default: 16, or every pair of --probe-pairs)")
    add("--max-tokens", metavar="N", type=_positive_int, default=SpinalConfig.max_tokens,
        help="cap on measured token positions (default: %(default)s)")
    add("--seed", metavar="N", type=int, default=SpinalConfig.seed,
        help="seed of the default probe pairs and of the token subsample (default: %(default)s)")
    add("--labels", metavar="A,B,...", help="comma-separated names, one per checkpoint (default: from the paths)")
    add("--device", default="cpu", help="device to run on (default: %(default)s)")
    add("--dtype", default="float32", choices=tuple(DTYPES), help="weights dtype (default: %(default)s)")
    add("--out", metavar="DIR", default="spinal_audit", help="output folder (default: %(default)s)")
    add("--no-progress", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    add("--trust-checkpoint", action="store_true",
        help="read .ckpt files holding objects other than tensors, plain values and Lightning hyper-parameters "
        "with torch.load(weights_only=False), which runs code from them; default: refuse them. Only for files "
        "you trust")
    return parser


def _audit(argv: Sequence[str]) -> int:
    parser = _audit_parser()
    args = parser.parse_args(list(argv))
    from spinal_callback.tools.audit import AuditInputError, CheckpointInputError, run_audit

    try:
        return run_audit(
            args.checkpoints, args.out, probe_pairs=args.probe_pairs, num_probe_pairs=args.num_probe_pairs,
            tokenizer=args.tokenizer, base=args.base, prefix=args.prefix, device=args.device, dtype=args.dtype,
            labels=args.labels.split(",") if args.labels is not None else None, max_tokens=args.max_tokens,
            seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(),
            trust_checkpoint=args.trust_checkpoint,
        )
    except (AuditInputError, CheckpointInputError) as err:
        parser.error(str(err))


def _report(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="spinal report", description="Plots (PNG) and summary.md from a spinal JSON-lines trace file."
    )
    parser.add_argument("trace", metavar="TRACE", help="a spinal_trace.jsonl written by a callback")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: <trace dir>/report)")
    args = parser.parse_args(list(argv))
    from spinal_callback.tools.report import run_report

    return int(run_report(args.trace, args.out))


def _calibrate(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="spinal calibrate",
        description="Set the early-warning detector's thresholds from trace files of runs you know were healthy, "
        "to a target false-alarm rate; load the result with SpinalConfig(detector='detector.json').",
    )
    parser.add_argument("traces", nargs="+", metavar="TRACE", help="spinal_trace.jsonl files of healthy runs")
    parser.add_argument("-o", "--output", metavar="FILE", default="detector.json",
                        help="the detector settings to write (default: %(default)s)")
    parser.add_argument("--target-rate", metavar="R", type=float, default=0.5,
                        help="false alarms per 1000 detector steps (readings), all signals together "
                        "(default: %(default)s)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="detector settings to start from (signals, window, ...; a JSON file); default: the "
                        "shipped ones")
    args = parser.parse_args(list(argv))
    from spinal_callback.config.detector import DetectorConfig
    from spinal_callback.tools.calibrate import CalibrationInputError, run_calibrate

    try:
        base = DetectorConfig.from_json(args.config) if args.config else None
        summary = run_calibrate(args.traces, args.output, base=base, target_rate=args.target_rate)
    except (CalibrationInputError, OSError, ValueError) as err:
        parser.error(str(err))
    thresholds = ", ".join(f"{k} {v:.3g}" for k, v in summary["thresholds"].items())
    print(f"calibrated on {summary['runs']} run(s), {summary['probe_steps']} detector steps (readings): "
          f"{thresholds}; "
          f"{summary['false_alarms_per_1000_in_sample']:.2f} false alarms per 1000 readings on these runs "
          f"(in-sample; check on runs you kept apart). Wrote {summary['output']}")
    return 0


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "demo": _demo, "report": _report, "audit": _audit, "calibrate": _calibrate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spinal``; returns the exit status (0 on success, 2 for usage errors, 1 when a command
    fails, e.g. a checkpoint ``spinal audit`` cannot load)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from spinal_callback import __version__

        print(f"spinal-callback {__version__}")
        return 0
    command, rest = args[0], args[1:]
    handler = _COMMANDS.get(command)
    if handler is None:
        print(
            f"spinal: unknown command {command!r}; choose one of: {', '.join(_COMMANDS)} "
            "(run 'spinal --help' for details)",
            file=sys.stderr,
        )
        return 2
    try:
        return handler(rest)
    except SystemExit as exit_:  # argparse inside a command: keep its status as our return value
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)


if __name__ == "__main__":
    raise SystemExit(main())
