"""The ``spinal`` command line.

Commands:

- ``spinal demo [flags]`` — DPO with TRL on a tiny built-in model, the spinal callback attached
  (``spinal demo --help`` lists the recipe's flags);
- ``spinal report TRACE [--out DIR]`` — plots and a summary from a run's trace file.

Heavy imports (transformers, TRL, matplotlib) happen only inside the command that needs them, so
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
  report    plots and a summary from a run's trace file: spinal report TRACE [--out DIR]

options:
  -h, --help  show this message and exit
  --version   show the version and exit
"""


def _demo(argv: Sequence[str]) -> int:
    from .demo.trl_recipe import main as trl_main

    return trl_main(list(argv), prog="spinal demo")


def _report(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="spinal report", description="Plots (PNG) and summary.md from a spinal JSON-lines trace file."
    )
    parser.add_argument("trace", metavar="TRACE", help="a spinal_trace.jsonl written by a callback")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: <trace dir>/report)")
    args = parser.parse_args(list(argv))
    from .report import run_report

    return int(run_report(args.trace, args.out))


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"demo": _demo, "report": _report}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spinal``; returns the exit status (0 on success, 2 for usage errors)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from . import __version__

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
