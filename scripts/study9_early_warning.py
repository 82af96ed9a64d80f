"""Study 9 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the variance test measured against each
signal's own recent increments instead of the pooled noise scale, its threshold set on studies 7 and 8's spent test
sets (C9), tested once on new seeds of study 8's five models and four fault families, 8 seeds per family.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study9_early_warning.py choose                    # the choice, from C9 (T7 + T8) only
    python scripts/study9_early_warning.py train-test --jobs 2      # T9: 62 runs: ~40 min
    python scripts/study9_early_warning.py train-rollback --jobs 2  # 8 live runs with rollback on (~6 min)
    python scripts/study9_early_warning.py evaluate                 # score T9 once with the choice
    python scripts/study9_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

C9 is read from ``--calibration-out`` (default ``spinal_runs``: its ``study7/`` and ``study8/`` folders, where studies
7 and 8's drivers write T7 and T8); T9 goes to ``--out`` (default ``spinal_runs/study9``); fault-free runs are trained
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

from studies.scenarios import RunSpec, study9_rollback_set, study9_test_set

PHASES = ("choose", "train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-test": study9_test_set, "train-rollback": study9_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study9", help="T9's runs and the results")
    parser.add_argument("--calibration-out", default="spinal_runs", help="C9: the folder holding study7/ and study8/")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study9", "study9_calibration_table", out, Path(args.calibration_out),
                     lambda: specs_of(args.phase, args.quick), out,
                     args.cache_dir or "spinal_runs/study2/sft_cache", settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
