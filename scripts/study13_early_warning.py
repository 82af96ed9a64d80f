"""Study 13 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the turn test scored against the
course 8 readings back as well as 2 (``DetectorConfig.turn_lag``), run live with the library's defaults on new seeds.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study13_early_warning.py calibrate                 # the choice, on spent runs (~1 min)
    python scripts/study13_early_warning.py train-test --jobs 2      # T13: 56 runs (32 fault-free), ~25 min
    python scripts/study13_early_warning.py evaluate                  # score T13 once
    python scripts/study13_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

``calibrate`` replays study 12's default and study 13's on studies 11 and 12's runs (``--spent``, default
``spinal_runs/study11`` and ``spinal_runs/study12``). T13 goes to ``--out`` (default ``spinal_runs/study13``);
fault-free runs are trained without held-out evaluations, fault runs with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study_driver import run_study, specs_for, spent_runs

from studies.scenarios import RunSpec, study13_test_set
from studies.study13 import settings_of

PHASES = ("calibrate", "train-test", "evaluate")
#: The spent runs the choice was made on: study 11's and study 12's test sets.
SPENT = (("spinal_runs/study11", ("T11-healthy", "T11-faults")), ("spinal_runs/study12", ("T12-healthy", "T12-faults")))
__all__ = ["PHASES", "SPENT", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run per scenario)."""
    return specs_for(phase, quick, {"train-test": study13_test_set})


def _calibrate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study13

    runs = spent_runs(args.spent, SPENT, "studies 11 and 12")
    return "calibration.md", study13.calibration_table(study13.calibration_replay(runs))


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study11, study13
    from studies.tables import test_tables

    results = study13.evaluate(out)
    return "table.md", test_tables(results, in_time=True) + "\n" + study11.model_table(results)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spent", nargs=2, default=[d for d, _ in SPENT], metavar=("STUDY11", "STUDY12"),
                        help="studies 11 and 12's run folders, replayed by calibrate")


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study13", "T13", specs_of, settings_of,
                     {"calibrate": _calibrate, "evaluate": _evaluate}, _options)


if __name__ == "__main__":
    raise SystemExit(main())
