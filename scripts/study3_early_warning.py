"""Study 3 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the SPEED_JUMP test, calibrated
on every study-2 run, tested once on new seeds and two fault families no choice has seen.

Phases, in protocol order::

    python scripts/study3_early_warning.py choose                    # calibration set only (study 2's runs)
    python scripts/study3_early_warning.py train-test --jobs 2       # T3: 57 runs (~45 min on 2 cores)
    python scripts/study3_early_warning.py train-rollback --jobs 2   # 8 live runs with rollback on
    python scripts/study3_early_warning.py evaluate                  # score T3 once with the choices
    python scripts/study3_early_warning.py train-test --quick        # smoke: a few 30-step runs

``choose`` reads the finished study-2 runs in ``--calibration`` (default ``spinal_runs/study2``) and writes
``calibration.json`` / ``calibration.md`` to ``--out`` (default ``spinal_runs/study3``); ``evaluate`` writes
``results.json`` / ``table.md`` there. Training reuses the pre-trained models in ``<calibration>/sft_cache``
(built on first use); finished runs (with a ``run.json``) are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import study3_rollback_set, study3_test_set

PHASES = ("choose", "train-test", "train-rollback", "evaluate")


def specs_of(phase: str, quick: bool = False) -> list:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = study3_test_set() if phase == "train-test" else study3_rollback_set()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--calibration", default="spinal_runs/study2", help="study 2's finished runs")
    parser.add_argument("--out", default=None, help="study 3's runs and results (default spinal_runs/study3)")
    add_training_options(parser, "pre-trained models (default <calibration>/sft_cache)")
    args = parser.parse_args(argv)
    out = Path(args.out or "spinal_runs/study3" + ("-quick" if args.quick else ""))
    calibration = Path(args.calibration)
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study3", "study3_calibration_table", out, calibration,
                     lambda: specs_of(args.phase, args.quick), out, args.cache_dir or str(calibration / "sft_cache"))


if __name__ == "__main__":
    raise SystemExit(main())
