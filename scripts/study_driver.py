"""The command line the test-set studies (10 on) share: a phase, ``--out``, the training options; a training phase
trains the runs its set lacks, an analysis phase writes its Markdown into ``--out`` and prints it.

A driver names its phases, the run set of each training phase and the analysis of each other phase::

    def main(argv=None):
        return run_study(argv, __doc__, PHASES, "spinal_runs/study15", "T15", specs_of, settings_of,
                         {"evaluate": _evaluate})
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the study harness lives beside the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_early_warning import QUICK_STEPS, add_training_options, one_per_scenario, train_missing

from studies.scenarios import RunSpec

__all__ = ["Analysis", "run_study", "specs_for", "spent_runs"]

#: The pre-trained models every test-set study shares (study 2's cache).
DEFAULT_CACHE = "spinal_runs/study2/sft_cache"

#: An analysis phase: ``(arguments, output folder) → (file name, Markdown)``, written into the folder and printed.
#: A ``FileNotFoundError`` (runs it needs are missing; the message says which) ends the driver with status 1.
Analysis = Callable[[argparse.Namespace, Path], tuple[str, str]]


def specs_for(phase: str, quick: bool, sets: Mapping[str, Callable[[], list[RunSpec]]]) -> list[RunSpec]:
    """The runs training phase ``phase`` trains (``sets``: phase → its run list, in protocol order); ``quick``: the
    smoke selection, one short run per scenario.

    Raises:
        ValueError: ``phase`` is no training phase.
    """
    if phase not in sets:
        raise ValueError(f"{phase!r} trains nothing; the training phases are {', '.join(map(repr, sets))}")
    specs = sets[phase]()
    return one_per_scenario(specs, QUICK_STEPS) if quick else specs


def spent_runs(folders: Sequence[str], spent: Sequence[tuple[str, tuple[str, ...]]], studies: str) -> list[Any]:
    """The finished runs of ``spent`` (``(default folder, parts)`` per study) found in ``folders`` (the folders the
    command line gave, in the same order), for a calibrate phase to replay.

    Raises:
        FileNotFoundError: none is there (the message says to train ``studies`` first).
    """
    from studies.study2 import load_set

    runs = [run for folder, (_, parts) in zip(folders, spent, strict=True) for run in load_set(Path(folder), parts)]
    if not runs:
        raise FileNotFoundError(f"no spent runs under {', '.join(folders)}: train {studies} first")
    return runs


def run_study(argv: Sequence[str] | None, doc: str | None, phases: Sequence[str], out: str, runs: str,
              specs_of: Callable[[str, bool], list[RunSpec]],
              settings_of: Callable[[RunSpec], Any] | Mapping[str, Callable[[RunSpec], Any]],
              analyses: Mapping[str, Analysis],
              options: Callable[[argparse.ArgumentParser], None] | None = None,
              subfolders: Mapping[str, str] | None = None) -> int:
    """Parse ``argv`` and run one phase of a test-set study (``doc``: the driver's docstring, whose first paragraph
    is the description; ``out``: the default ``--out``; ``runs``: what it holds, e.g. ``"T15"``; ``settings_of``:
    one for every training phase, or one per phase; ``options`` adds the driver's own arguments; ``subfolders``:
    phase → the folder under ``--out`` it works in, for runs that must not mix with the test set's). Returns the exit
    status."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("phase", choices=phases)
    parser.add_argument("--out", default=out, help=f"{runs}'s runs and the results")
    if options is not None:
        options(parser)
    add_training_options(parser, f"pre-trained models (default {DEFAULT_CACHE}, study 2's)")
    args = parser.parse_args(argv)
    folder = Path(args.out + ("-quick" if args.quick else "")) / (subfolders or {}).get(args.phase, "")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.phase in analyses:
        try:
            name, text = analyses[args.phase](args, folder)
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 1
        (folder / name).write_text(text)
        print(text)
    elif train_missing(specs_of(args.phase, args.quick), folder, args.cache_dir or DEFAULT_CACHE,
                       60 if args.quick else args.sft_steps, args.jobs, args.force,
                       settings_of[args.phase] if isinstance(settings_of, Mapping) else settings_of):
        return 1
    print(f"elapsed: {time.perf_counter() - started:.0f} s")
    return 0
