"""Study 10 of the lead-time evidence (pre-registered in ``docs/evidence.md``): 40 more fault-free runs over study 8's
five models for the false-alarm rate of study 9's detector, chosen on nothing, replayed once alone and pooled with
T9's fault-free runs.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study10_early_warning.py train-test --jobs 2   # T10: 40 fault-free runs, ~11 min
    python scripts/study10_early_warning.py evaluate               # replay every detector once; needs study 9's T9
    python scripts/study10_early_warning.py train-test --quick    # smoke: one 30-step run

T10 goes to ``--out`` (default ``spinal_runs/study10``); T9 is read from ``<--calibration-out>/study9`` (default
``spinal_runs``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study4_early_warning import settings_of
from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec, study10_test_set

PHASES = ("train-test", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run)."""
    if phase != "train-test":
        raise ValueError(f"{phase!r} trains nothing")
    specs = study10_test_set()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study10", help="T10's runs and the results")
    parser.add_argument("--calibration-out", default="spinal_runs", help="the folder holding study9/ (T9)")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase == "evaluate":
        from studies import study10

        text = study10.false_alarm_table(study10.evaluate(out, Path(args.calibration_out)))
        (out / "table.md").write_text(text)
        print(text)
    elif train_missing(specs_of(args.phase, args.quick), out, args.cache_dir or "spinal_runs/study2/sft_cache",
                       60 if args.quick else args.sft_steps, args.jobs, args.force, settings_of):
        return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
