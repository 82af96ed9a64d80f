"""Study 6 of the lead-time evidence (pre-registered in ``docs/evidence.md``): ``update/turn`` — how far the latest
update turned away from the weights' recent course — added to the UPDATE_JUMP test, calibrated on study 2's 40
fault-free runs re-trained once more to record it, tested once on new healthy seeds, gradient ascent and the
learning-rate jump.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study6_early_warning.py train-calibration --jobs 2  # C6: 40 runs, no evaluations: ~17 min
    python scripts/study6_early_warning.py choose                      # the update threshold, from C6 only
    python scripts/study6_early_warning.py train-test --jobs 2         # T6: 41 runs: ~25 min
    python scripts/study6_early_warning.py train-rollback --jobs 2     # 6 live runs with rollback on (~5 min)
    python scripts/study6_early_warning.py evaluate                    # score T6 once with the choice
    python scripts/study6_early_warning.py train-test --quick          # smoke: one 30-step run per scenario

Folders and options as study 4's driver (``scripts/study4_early_warning.py``): C6 goes to ``--calibration-out``
(default ``<out>/calibration``), T6 to ``--out`` (default ``spinal_runs/study6``); fault-free runs are trained
without held-out evaluations, fault and rollback runs with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study4_early_warning import settings_of
from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import RunSpec, study6_calibration_set, study6_rollback_set, study6_test_set

PHASES = ("train-calibration", "choose", "train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "settings_of", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-calibration": study6_calibration_set, "train-test": study6_test_set,
             "train-rollback": study6_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study6", help="T6's runs and the results")
    parser.add_argument("--calibration-out", default=None, help="C6's runs (default <out>/calibration)")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    calibration = Path(args.calibration_out) if args.calibration_out else out / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study6", "study4_calibration_table", out, calibration,
                     lambda: specs_of(args.phase, args.quick),
                     calibration if args.phase == "train-calibration" else out,
                     args.cache_dir or "spinal_runs/study2/sft_cache", settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
