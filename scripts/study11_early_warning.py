"""Study 11 of the lead-time evidence (pre-registered in ``docs/evidence.md``): study 9's shipped detector, chosen on
nothing here, on two model shapes no study used and on four fault families no detector was tested on since study 4.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study11_early_warning.py train-test --jobs 2      # T11: 72 runs (40 fault-free), ~30 min
    python scripts/study11_early_warning.py train-rollback --jobs 2  # 8 live runs with rollback on (~5 min)
    python scripts/study11_early_warning.py evaluate                  # score T11 once
    python scripts/study11_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

T11 goes to ``--out`` (default ``spinal_runs/study11``); fault-free runs are trained without held-out evaluations,
fault and rollback runs with them. The two new shapes are pre-trained into the cache on first use.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study4_early_warning import settings_of
from study_driver import run_study, specs_for

from studies.scenarios import RunSpec, study11_rollback_set, study11_test_set

PHASES = ("train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    return specs_for(phase, quick, {"train-test": study11_test_set, "train-rollback": study11_rollback_set})


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study11
    from studies.tables import test_tables

    results = study11.evaluate(out)
    return "table.md", test_tables(results, in_time=True) + "\n" + study11.model_table(results)


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study11", "T11", specs_of, settings_of,
                     {"evaluate": _evaluate})


if __name__ == "__main__":
    raise SystemExit(main())
