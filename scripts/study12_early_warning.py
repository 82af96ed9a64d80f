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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec, study12_rollback_set, study12_test_set
from studies.study12 import settings_of

PHASES = ("train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-test": study12_test_set, "train-rollback": study12_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study12", help="T12's runs and the results")
    parser.add_argument("--spent", default="spinal_runs/study11", help="study 11's runs, replayed by evaluate")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase == "evaluate":
        from studies import study11, study12
        from studies.tables import test_tables

        results = study12.evaluate(out, Path(args.spent))
        text = (test_tables(results, in_time=True) + "\n" + study11.model_table(results) + "\n"
                + study12.spent_table(results))
        (out / "table.md").write_text(text)
        print(text)
    elif train_missing(specs_of(args.phase, args.quick), out, args.cache_dir or "spinal_runs/study2/sft_cache",
                       60 if args.quick else args.sft_steps, args.jobs, args.force, settings_of):
        return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
