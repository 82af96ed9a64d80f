"""Study 5 of the lead-time evidence (pre-registered in ``docs/evidence.md``): which signals the VARIANCE_BURST test
watches, chosen with every threshold on every earlier run (calibration set C5: studies 2–4, nothing re-trained), and
tested once on 30 new healthy seeds and new seeds of two data faults and the learning-rate jump.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study5_early_warning.py choose                      # from C5 only (studies 2-4's runs): ~10 min
    python scripts/study5_early_warning.py train-test --jobs 2         # T5: 54 runs: ~45 min
    python scripts/study5_early_warning.py train-rollback --jobs 2     # 7 live runs with rollback on (~10 min)
    python scripts/study5_early_warning.py evaluate                    # score T5 once with the choice
    python scripts/study5_early_warning.py train-test --quick          # smoke: one 30-step run per scenario

``choose`` reads studies 2–4's finished runs under ``--runs-root`` (default ``spinal_runs``: ``study2``,
``study3``, ``study4`` and ``study4/calibration``, as their drivers write them). T5 goes to ``--out`` (default
``spinal_runs/study5``); ``choose`` writes ``calibration.json`` / ``calibration.md`` and ``evaluate``
``results.json`` / ``table.md`` there. T5-healthy runs are trained without held-out evaluations
(``StudySettings(eval_every=0)``: only their false alarms count); fault and rollback runs evaluate every 2 steps.
Training reuses study 2's pre-trained models in ``--cache-dir`` (default ``spinal_runs/study2/sft_cache``; built
on first use); finished runs (with a ``run.json``) are kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study4_early_warning import settings_of
from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import RunSpec, study5_rollback_set, study5_test_set

PHASES = ("choose", "train-test", "train-rollback", "evaluate")


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-test": study5_test_set, "train-rollback": study5_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study5", help="T5's runs and the results")
    parser.add_argument("--runs-root", default="spinal_runs", help="where studies 2-4's runs are (C5)")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study5", "study5_calibration_table", out, Path(args.runs_root),
                     lambda: specs_of(args.phase, args.quick), out, args.cache_dir or "spinal_runs/study2/sft_cache",
                     settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
