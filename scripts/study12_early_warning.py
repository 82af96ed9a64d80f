"""Study 12 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the library's new default, live — the
probe forward every 50 steps, the forward-free readings and the detector every 2, the probe pairs no longer watched —
on new seeds of the seven models, two data faults and three optimizer faults.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study12_early_warning.py train-test --jobs 2      # T12: 72 runs (32 fault-free), ~30 min
    python scripts/study12_early_warning.py train-rollback --jobs 2  # 9 live runs with rollback on (~5 min)
    python scripts/study12_early_warning.py evaluate                  # score T12 once (+ study 11's spent runs)
    python scripts/study12_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

T12 goes to ``--out`` (default ``spinal_runs/study12``); fault-free runs are trained without held-out evaluations,
fault and rollback runs with them. ``evaluate`` also replays study 11's runs (``--spent``, default
``spinal_runs/study11``) with the old and the new default, a re-analysis of spent runs, when they are there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study_driver import run_study, specs_for

from studies.scenarios import RunSpec, study12_rollback_set, study12_test_set
from studies.study12 import settings_of

PHASES = ("train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    return specs_for(phase, quick, {"train-test": study12_test_set, "train-rollback": study12_rollback_set})


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study11, study12
    from studies.tables import test_tables

    results = study12.evaluate(out, Path(args.spent))
    return "table.md", (test_tables(results, in_time=True) + "\n" + study11.model_table(results) + "\n"
                        + study12.spent_table(results))


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spent", default="spinal_runs/study11", help="study 11's runs, replayed by evaluate")


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study12", "T12", specs_of, settings_of,
                     {"evaluate": _evaluate}, _options)


if __name__ == "__main__":
    raise SystemExit(main())
