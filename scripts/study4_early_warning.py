"""Study 4 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the UPDATE_JUMP test (how far the
optimizer moved a fixed sample of weights per step), calibrated on study 2's 40 fault-free runs re-trained with
the ``update/size`` probe signal, tested once on new seeds of four optimizer-side fault families.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study4_early_warning.py train-calibration --jobs 2  # C4: 40 runs, no evaluations: ~17 min
    python scripts/study4_early_warning.py choose                      # the update threshold, from C4 only
    python scripts/study4_early_warning.py train-test --jobs 2         # T4: 57 runs: ~60 min
    python scripts/study4_early_warning.py train-rollback --jobs 2     # 8 live runs with rollback on (~12 min)
    python scripts/study4_early_warning.py evaluate                    # score T4 once with the choice
    python scripts/study4_early_warning.py train-calibration --quick   # smoke: one 30-step run per scenario
    python scripts/study4_early_warning.py train-test --quick          # (training only: too short to choose)

A run without evaluations takes about 50 s, one with evaluations about 190 s (one torch thread each): C4 is
40 runs without; T4 is 25 T4-healthy runs without (~10 min) and 32 T4-faults runs with (~50 min).

Fault-free runs (C4 and T4-healthy) are trained without held-out evaluations (``StudySettings(eval_every=0)``:
only their false alarms count); fault runs evaluate every 2 steps (their behavioural onset). C4 goes to
``--calibration-out`` (default ``spinal_runs/study4/calibration``: C4 reuses study 2's run names), T4 to ``--out``
(default ``spinal_runs/study4``); ``choose`` writes ``calibration.json`` / ``calibration.md`` and ``evaluate``
``results.json`` / ``table.md`` to ``--out``. With ``--quick`` both folders are ``<out>-quick`` (C4 in its
``calibration`` sub-folder unless ``--calibration-out`` is given). Training reuses the pre-trained models of
study 2 in ``--cache-dir`` (default ``spinal_runs/study2/sft_cache``; built on first use); finished runs (with a
``run.json``) are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import RunSpec, study4_calibration_set, study4_rollback_set, study4_test_set

PHASES = ("train-calibration", "choose", "train-test", "train-rollback", "evaluate")


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-calibration": study4_calibration_set, "train-test": study4_test_set,
             "train-rollback": study4_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def settings_of(spec: RunSpec) -> Any:
    """The protocol's study settings of a run: no held-out evaluations for a fault-free run without rollback."""
    from studies.runner import StudySettings

    return StudySettings() if spec.is_fault or spec.rollback else StudySettings(eval_every=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study4", help="T4's runs and the results")
    parser.add_argument("--calibration-out", default=None, help="C4's runs (default <out>/calibration)")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    calibration = Path(args.calibration_out) if args.calibration_out else out / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study4", "study4_calibration_table", out, calibration,
                     lambda: specs_of(args.phase, args.quick),
                     calibration if args.phase == "train-calibration" else out,
                     args.cache_dir or "spinal_runs/study2/sft_cache", settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
