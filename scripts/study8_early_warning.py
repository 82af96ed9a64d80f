"""Study 8 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the tests that raised false alarms on
study 7's GPT-2 and Qwen2 runs and answered no fault there first leave the default checks; the choice is made on
study 7's spent test set (C8) and tested once on new seeds of every model of the studies (the demo's Llamas, the
GPT-2, the Qwen2) and of a gradual data fault, a sudden one, the learning-rate jump and gradient ascent.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study8_early_warning.py choose                    # the choice, from C8 (study 7's T7) only
    python scripts/study8_early_warning.py train-test --jobs 2      # T8: 54 runs: ~25 min
    python scripts/study8_early_warning.py train-rollback --jobs 2  # 8 live runs with rollback on (~5 min)
    python scripts/study8_early_warning.py evaluate                 # score T8 once with the choice
    python scripts/study8_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

C8 is read from ``--calibration-out`` (default ``spinal_runs/study7``, where study 7's driver writes T7); T8 goes to
``--out`` (default ``spinal_runs/study8``); fault-free runs are trained without held-out evaluations, fault and
rollback runs with them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study4_early_warning import settings_of
from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import RunSpec, study8_rollback_set, study8_test_set

PHASES = ("choose", "train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-test": study8_test_set, "train-rollback": study8_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study8", help="T8's runs and the results")
    parser.add_argument("--calibration-out", default="spinal_runs/study7", help="C8: study 7's T7 runs")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study8", "study8_calibration_table", out, Path(args.calibration_out),
                     lambda: specs_of(args.phase, args.quick), out,
                     args.cache_dir or "spinal_runs/study2/sft_cache", settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
