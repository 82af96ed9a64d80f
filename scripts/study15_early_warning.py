"""Study 15 of the lead-time evidence (pre-registered in ``docs/evidence.md``): every logged value read at its own
step — the library's default detector fed each of the trainer's logs (a metrics-only observation between two
readings) against the same detector as it runs (every second logged value), replayed on the same new runs.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study15_early_warning.py train-test --jobs 2      # T15: 56 runs (32 fault-free), ~40 min
    python scripts/study15_early_warning.py evaluate                  # score T15 once
    python scripts/study15_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

T15 goes to ``--out`` (default ``spinal_runs/study15``); fault-free runs are trained without held-out evaluations,
fault runs with them. Nothing is chosen before the test set, so there is no calibration phase.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec, study15_test_set
from studies.study15 import settings_of

PHASES = ("train-test", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs the training phase trains, in protocol order (``quick``: one short run per scenario)."""
    if phase != "train-test":
        raise ValueError(f"{phase!r} trains nothing; the training phase is 'train-test'")
    specs = study15_test_set()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study15", help="T15's runs and the results")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase == "evaluate":
        from studies import study11, study15
        from studies.tables import test_tables

        results = study15.evaluate(out)
        largest = ", ".join(f"{key} {value:.2f}" for key, value in results["largest_healthy"].items()
                            if value is not None)
        text = (test_tables(results, in_time=True) + "\n" + study11.model_table(results)
                + f"\nFault-free runs fed every logged value, largest statistic (fraction of the threshold): "
                  f"{largest or 'none'}.\n")
        (out / "table.md").write_text(text)
        print(text)
    elif train_missing(specs_of(args.phase, args.quick), out, args.cache_dir or "spinal_runs/study2/sft_cache",
                       60 if args.quick else args.sft_steps, args.jobs, args.force, settings_of):
        return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
