"""Study 10 of the lead-time evidence (pre-registered in ``docs/evidence.md``): 40 more fault-free runs over study 8's
five models for the false-alarm rate of study 9's detector, chosen on nothing, replayed once alone and pooled with
T9's fault-free runs.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study10_early_warning.py train-test --jobs 2   # T10: 40 fault-free runs, ~11 min
    python scripts/study10_early_warning.py evaluate               # replay every detector once; needs study 9's T9
    python scripts/study10_early_warning.py train-test --quick    # smoke: one 30-step run

T10 goes to ``--out`` (default ``spinal_runs/study10``); T9 is read from ``<--calibration-out>/study9`` (default
``spinal_runs``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study4_early_warning import settings_of
from study_driver import run_study, specs_for

from studies.scenarios import RunSpec, study10_test_set

PHASES = ("train-test", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run)."""
    return specs_for(phase, quick, {"train-test": study10_test_set})


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study10

    return "table.md", study10.false_alarm_table(study10.evaluate(out, Path(args.calibration_out)))


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration-out", default="spinal_runs", help="the folder holding study9/ (T9)")


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study10", "T10", specs_of, settings_of,
                     {"evaluate": _evaluate}, _options)


if __name__ == "__main__":
    raise SystemExit(main())
