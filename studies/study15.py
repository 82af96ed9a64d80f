"""Study 15's analysis (protocol: ``docs/evidence.md``, study 15): every logged value read, at its own step.

Study 14 left the detector one step behind TRL's chosen log-prob drop on label flips: TRL logs every step in the
studies, the callback reads every 2 steps, so it reads one logged value in two, and a fault that lands on an odd step
waits for the next reading. Study 15 asks whether feeding the detector every logged value — between two readings each
log is an observation of its own (the trainer's metrics alone; the update signals keep their reading cadence) —
answers data faults earlier without a false alarm. The runs record every logged value, so T15 is trained with the
library's default as it is (study 14's) and both ways of feeding the same detector are replayed on the same runs
(:class:`studies.replay.Run`'s ``every_log``); nothing is chosen, so no spent runs are replayed first.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from studies.study2 import load_set
from studies.study3 import detector_scores, first_live_alert, live_versus_replay, onsets_of
from studies.study4 import score_test_set
from studies.study7 import C6_MATCHED
from studies.study11 import by_model
from studies.study12 import PROBE_INTERVAL
from studies.study14 import largest_healthy, study14_detector

__all__ = ["AS_RUN", "EVERY_LOG", "evaluate", "live_check", "live_settings_of", "live_table", "settings_of"]

EVERY_LOG = "study 14 default, every logged value read"
AS_RUN = "study 14 default as it runs (every second logged value)"


def settings_of(spec: Any) -> Any:
    """T15's study settings: study 14's (the library's schedule and default detector; held-out evaluations for fault
    runs only)."""
    from studies.study14 import settings_of as study14_settings

    return study14_settings(spec)


def live_settings_of(spec: Any) -> Any:
    """The live check's settings: T15's, with the callback feeding every logged value itself
    (``SpinalConfig.read_every_log``)."""
    return replace(settings_of(spec), read_every_log=True)


def live_check(out_dir: Path) -> dict[str, Any]:
    """The library's live implementation against the replay: T15's label-flip seeds retrained with
    ``read_every_log`` on (``out_dir``), each run's first alert after the fault live and replayed every-log.

    Raises:
        FileNotFoundError: ``out_dir`` holds no such run.
        ValueError: a run there was trained without ``read_every_log``.
    """
    runs = load_set(out_dir, ("T15-faults",))
    if not runs:
        raise FileNotFoundError(f"{out_dir} holds no finished T15-faults run: train the live check first")
    if not all(run.every_log for run in runs):
        raise ValueError(f"{out_dir} holds runs trained without read_every_log: not the live check's")
    scores = detector_scores(EVERY_LOG, study14_detector(), runs, onsets_of(runs), 1)
    per_run = {score.run: {"replay": score.first, "live": first_live_alert(run)}
               for score, run in zip(scores, runs, strict=True)}
    return {**live_versus_replay(runs, scores), "per_run": per_run}


def live_table(results: dict[str, Any]) -> str:
    """:func:`live_check`'s results as Markdown."""
    lines = ["| run | first alert after the fault, live | replayed every-log |", "|---|---:|---:|"]
    lines += [f"| {name} | {row['live']} | {row['replay']} |" for name, row in results["per_run"].items()]
    lines += ["", f"Same first alert in {results['fault_runs_same_first_alert']} of {results['fault_runs']} runs."]
    return "\n".join(lines) + "\n"


def evaluate(out_dir: Path) -> dict[str, Any]:
    """Score T15 (``out_dir``) once: the study-14 default fed every logged value, the same detector as it runs (live
    alerts checked against it) and the baselines at their C6 thresholds; every-log per model; and the largest
    fault-free TREND_BREAK and VARIANCE_BURST statistics fed every logged value.

    Raises:
        FileNotFoundError: ``out_dir`` lacks T15's fault-free or fault runs.
    """
    detector = study14_detector()
    results = score_test_set(out_dir, "T15", {EVERY_LOG: detector, AS_RUN: detector}, EVERY_LOG,
                             {"matched_thresholds": dict(C6_MATCHED)}, every_log={EVERY_LOG}, live=AS_RUN,
                             matched_on="C6", probe_interval=PROBE_INTERVAL)
    runs = [replace(run, every_log=True) for run in load_set(out_dir, ("T15-healthy", "T15-faults"))]
    results["by_model"] = by_model(runs, detector_scores(EVERY_LOG, detector, runs, onsets_of(runs), 1))
    results["largest_healthy"] = largest_healthy(runs, detector)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
