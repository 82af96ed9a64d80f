"""Study 7 of the lead-time evidence (pre-registered in ``docs/evidence.md``): the shipped detector, unchanged, on two
decoder families no study has trained — a GPT-2 (LayerNorm, GELU, learned positions, tied unembedding) and a Qwen2
(Llama's blocks with biased attention projections), each of the demo model's size and pre-trained like it. Nothing
is chosen, so there is no calibration set: new healthy seeds (false alarms) and new seeds of the three fault
families the update, variance and turn tests answered in studies 4-6.

Phases, in protocol order (run times at ``--jobs 2`` on 2 cores)::

    python scripts/study7_early_warning.py train-test --jobs 2      # T7: 42 runs (+ 2 pre-trainings): ~30 min
    python scripts/study7_early_warning.py train-rollback --jobs 2  # 7 live runs with rollback on (~6 min)
    python scripts/study7_early_warning.py evaluate                 # score T7 once
    python scripts/study7_early_warning.py train-test --quick       # smoke: one 30-step run per scenario

T7 goes to ``--out`` (default ``spinal_runs/study7``); fault-free runs are trained without held-out evaluations,
fault and rollback runs with them. The GPT-2 and Qwen2 models are pre-trained once into ``--cache-dir`` (default
study 2's cache, ``spinal_runs/study2/sft_cache``, beside its Llamas).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study4_early_warning import settings_of
from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, run_phase

from studies.scenarios import RunSpec, study7_rollback_set, study7_test_set

PHASES = ("train-test", "train-rollback", "evaluate")
__all__ = ["PHASES", "main", "specs_of"]


def specs_of(phase: str, quick: bool = False) -> list[RunSpec]:
    """The runs a training phase trains, in protocol order (``quick``: one short run per scenario)."""
    specs = {"train-test": study7_test_set, "train-rollback": study7_rollback_set}[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--out", default="spinal_runs/study7", help="T7's runs and the results")
    add_training_options(parser, "pre-trained models (default spinal_runs/study2/sft_cache, study 2's)")
    args = parser.parse_args(argv)
    out = Path(args.out + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    return run_phase(parser, args, "study7", None, out, out, lambda: specs_of(args.phase, args.quick), out,
                     args.cache_dir or "spinal_runs/study2/sft_cache", settings_of)


if __name__ == "__main__":
    raise SystemExit(main())
