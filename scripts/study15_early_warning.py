"""Study 15 of the lead-time evidence (pre-registered in ``docs/evidence.md``): every logged value read at its own
step — the library's default detector fed each of the trainer's logs (a metrics-only observation between two
readings) against the same detector as it runs (every second logged value), replayed on the same new runs.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study15_early_warning.py train-test --jobs 2      # T15: 56 runs (32 fault-free), ~35 min
    python scripts/study15_early_warning.py evaluate                  # score T15 once
    python scripts/study15_early_warning.py train-live --jobs 2      # T15's label flips, read_every_log on, ~5 min
    python scripts/study15_early_warning.py live                      # their live alerts against the replay
    python scripts/study15_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

The live check's runs go to ``<out>/live``.

T15 goes to ``--out`` (default ``spinal_runs/study15``); fault-free runs are trained without held-out evaluations,
fault runs with them. Nothing is chosen before the test set, so there is no calibration phase.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study drivers live beside this one

from study_driver import run_study, specs_for

from studies.scenarios import RunSpec, study15_test_set
from studies.study15 import live_settings_of, settings_of

PHASES = ("train-test", "evaluate", "train-live", "live")
__all__ = ["PHASES", "main", "specs_of"]


def _label_flips() -> list[RunSpec]:
    return [spec for spec in study15_test_set() if spec.scenario == "label_flip"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    return specs_for(phase, quick, {"train-test": study15_test_set, "train-live": _label_flips})


def _live(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study15

    return "live.md", study15.live_table(study15.live_check(out))


def _evaluate(args: argparse.Namespace, out: Path) -> tuple[str, str]:
    from studies import study11, study15
    from studies.tables import test_tables

    results = study15.evaluate(out)
    largest = ", ".join(f"{key} {value:.2f}" for key, value in results["largest_healthy"].items() if value is not None)
    return "table.md", (test_tables(results, in_time=True) + "\n" + study11.model_table(results)
                        + "\nFault-free runs fed every logged value, largest statistic (fraction of the threshold): "
                        + f"{largest or 'none'}.\n")


def main(argv: list[str] | None = None) -> int:
    return run_study(argv, __doc__, PHASES, "spinal_runs/study15", "T15", specs_of,
                     {"train-test": settings_of, "train-live": live_settings_of},
                     {"evaluate": _evaluate, "live": _live}, subfolders={"train-live": "live", "live": "live"})


if __name__ == "__main__":
    raise SystemExit(main())
