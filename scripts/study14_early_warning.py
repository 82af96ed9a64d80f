"""Study 14 of the lead-time evidence (pre-registered in ``docs/evidence.md``): data faults answered at the reading
that sees them — the HF callback reads a logging step with that step's log, and an exceedance ``decisive_factor`` times
its threshold needs no second one — run live with the library's defaults on new seeds.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study14_early_warning.py calibrate                 # the choice, on spent runs (~3 min)
    python scripts/study14_early_warning.py train-test --jobs 2      # T14: 56 runs (32 fault-free), ~25 min
    python scripts/study14_early_warning.py evaluate                  # score T14 once
    python scripts/study14_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

``calibrate`` replays study 13's default as it ran, with the reading at the log, and with each candidate factor on
studies 11–13's runs (``--spent``, default ``spinal_runs/study11``, ``…/study12``, ``…/study13``). T14 goes to ``--out``
(default ``spinal_runs/study14``); fault-free runs are trained without held-out evaluations, fault runs with them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec, study14_test_set
from studies.study14 import settings_of

PHASES = ("calibrate", "train-test", "evaluate")
#: The spent runs the choice was made on: the test sets of studies 11, 12 and 13.
SPENT = (("spinal_runs/study11", ("T11-healthy", "T11-faults")), ("spinal_runs/study12", ("T12-healthy", "T12-faults")),
         ("spinal_runs/study13", ("T13-healthy", "T13-faults")))
__all__ = ["PHASES", "SPENT", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run per scenario)."""
    if phase != "train-test":
        raise ValueError(f"{phase!r} trains nothing; the training phase is 'train-test'")
    specs = study14_test_set()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study14", help="T14's runs and the results")
    parser.add_argument("--spent", nargs=3, default=[d for d, _ in SPENT], metavar=("STUDY11", "STUDY12", "STUDY13"),
                        help="studies 11, 12 and 13's run folders, replayed by calibrate")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase == "calibrate":
        from studies import study14
        from studies.study2 import load_set

        runs = [run for folder, (_, parts) in zip(args.spent, SPENT, strict=True)
                for run in load_set(Path(folder), parts)]
        if not runs:
            print(f"no spent runs under {', '.join(args.spent)}: train studies 11–13 first", file=sys.stderr)
            return 1
        text = study14.calibration_table(study14.calibration_replay(runs))
        (out / "calibration.md").write_text(text)
        print(text)
    elif args.phase == "evaluate":
        from studies import study11, study14
        from studies.tables import test_tables

        results = study14.evaluate(out)
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
