"""Study 13 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the turn test scored against the
course 8 readings back as well as 2 (``DetectorConfig.turn_lag``), run live with the library's defaults on new seeds.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study13_early_warning.py calibrate                 # the choice, on spent runs (~1 min)
    python scripts/study13_early_warning.py train-test --jobs 2      # T13: 56 runs (32 fault-free), ~25 min
    python scripts/study13_early_warning.py evaluate                  # score T13 once
    python scripts/study13_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

``calibrate`` replays study 12's default and study 13's on studies 11 and 12's runs (``--spent``, default
``spinal_runs/study11`` and ``spinal_runs/study12``). T13 goes to ``--out`` (default ``spinal_runs/study13``);
fault-free runs are trained without held-out evaluations, fault runs with them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec, study13_test_set
from studies.study13 import settings_of

PHASES = ("calibrate", "train-test", "evaluate")
#: The spent runs the choice was made on: study 11's and study 12's test sets.
SPENT = (("spinal_runs/study11", ("T11-healthy", "T11-faults")), ("spinal_runs/study12", ("T12-healthy", "T12-faults")))
__all__ = ["PHASES", "SPENT", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run per scenario)."""
    if phase != "train-test":
        raise ValueError(f"{phase!r} trains nothing; the training phase is 'train-test'")
    specs = study13_test_set()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study13", help="T13's runs and the results")
    parser.add_argument("--spent", nargs=2, default=[d for d, _ in SPENT], metavar=("STUDY11", "STUDY12"),
                        help="studies 11 and 12's run folders, replayed by calibrate")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase == "calibrate":
        from studies import study13
        from studies.study2 import load_set

        runs = [run for folder, (_, parts) in zip(args.spent, SPENT, strict=True)
                for run in load_set(Path(folder), parts)]
        if not runs:
            print(f"no spent runs under {' and '.join(args.spent)}: train studies 11 and 12 first", file=sys.stderr)
            return 1
        text = study13.calibration_table(study13.calibration_replay(runs))
        (out / "calibration.md").write_text(text)
        print(text)
    elif args.phase == "evaluate":
        from studies import study11, study13
        from studies.tables import test_tables

        results = study13.evaluate(out)
        text = test_tables(results, in_time=True) + "\n" + study11.model_table(results)
        (out / "table.md").write_text(text)
        print(text)
    elif train_missing(specs_of(args.phase, args.quick), out, args.cache_dir or "spinal_runs/study2/sft_cache",
                       60 if args.quick else args.sft_steps, args.jobs, args.force, settings_of):
        return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
