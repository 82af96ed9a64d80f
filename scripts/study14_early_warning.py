"""Study 14 of the lead-time evidence (pre-registered in ``docs/evidence.md``): data faults answered at the reading
that sees them — the HF callback reads a logging step with that step's log, and an exceedance ``decisive_factor`` times
its threshold needs no second one — run live with the library's defaults on new seeds.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study14_early_warning.py calibrate                 # the choice, on spent runs (~3 min)
    python scripts/study14_early_warning.py train-test --jobs 2      # T14: 56 runs (32 fault-free), ~25 min
    python scripts/study14_early_warning.py evaluate                  # score T14 once
    python scripts/study14_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

``calibrate`` replays study 13's default as it ran, with the reading at the log, and with each candidate factor on
studies 11–13's runs (``--spent``, default ``spinal_runs/study11``, ``…/study12``, ``…/study13``). T14 goes to ``--out``
(default ``spinal_runs/study14``); fault-free runs are trained without held-out evaluations, fault runs with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study_driver import run_study, specs_for, spent_runs

from studies.scenarios import RunSpec, study14_test_set
from studies.study14 import settings_of

PHASES = ("calibrate", "train-test", "evaluate")
#: The spent runs the choice was made on: the test sets of studies 11, 12 and 13.
SPENT = (("spinal_runs/study11", ("T11-healthy", "T11-faults")), ("spinal_runs/study12", ("T12-healthy", "T12-faults")),
         ("spinal_runs/study13", ("T13-healthy", "T13-faults")))
__all__ = ["PHASES", "SPENT", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run per scenario)."""
    return specs_for(phase, quick, {"train-test": study14_test_set})


def _calibrate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study14

    runs = spent_runs(args.spent, SPENT, "studies 11–13")
    return "calibration.md", study14.calibration_table(study14.calibration_replay(runs))


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study11, study14
    from studies.tables import test_tables

    results = study14.evaluate(out)
    return "table.md", test_tables(results, in_time=True) + "\n" + study11.model_table(results)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spent", nargs=3, default=[d for d, _ in SPENT], metavar=("STUDY11", "STUDY12", "STUDY13"),
                        help="studies 11, 12 and 13's run folders, replayed by calibrate")


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study14", "T14", specs_of, settings_of,
                     {"calibrate": _calibrate, "evaluate": _evaluate}, _options)


if __name__ == "__main__":
    raise SystemExit(main())
