"""Study 10's analysis (protocol: ``docs/evidence.md``, study 10): the shipped detector's false alarms on a second
set of healthy runs.

Nothing is chosen: the detector is study 9's shipped one (:func:`study9_detector`, pinned); the baselines keep their
shipped thresholds and those matched on C6 (:data:`~studies.study7.C6_MATCHED`). :func:`evaluate` replays every
detector once on T10's fault-free runs and on those pooled with T9's (neither set was used for any choice), and
writes ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from studies.replay import Run
from studies.scoring import Score, summarise
from studies.study2 import baseline_scores, load_set
from studies.study3 import RECORDED_INTERVAL, detector_scores, probe_steps
from studies.study7 import C6_MATCHED
from studies.study9 import STUDY8, study8_detector

__all__ = ["SHIPPED", "evaluate", "false_alarm_table", "study9_detector"]

SHIPPED = "shipped (study 9 detector)"


def study9_detector() -> DetectorConfig:
    """Study 9's shipped detector, pinned: study 8's with the variance test against the last 32 increments at 33.72."""
    return replace(study8_detector(), variance_reference=32, variance_threshold=33.72)


def _scores(healthy: Sequence[Run]) -> dict[str, list[Score]]:
    """Every detector and baseline replayed once on the fault-free runs ``healthy``."""
    onsets: dict[str, int | None] = {run.name: None for run in healthy}
    scores: dict[str, list[Score]] = {
        f"spinal: {name}": detector_scores(name, config, healthy, onsets, 1)
        for name, config in ((SHIPPED, study9_detector()), (STUDY8, study8_detector()))}
    scores.update(baseline_scores(healthy, onsets, dict(C6_MATCHED)))
    return scores


def _false_alarms(runs: Sequence[Run], scores: dict[str, list[Score]]) -> dict[str, Any]:
    """The set ``runs`` (whose replays are ``scores``): its size and each detector's false alarms."""
    steps = probe_steps(runs, 1)
    return {"runs": len(runs), "probe_steps": steps, "detectors": {
        name: {**summarise(replays, steps, RECORDED_INTERVAL),
               "alarmed": sorted(s.run for s in replays if s.false_alarms)} for name, replays in scores.items()}}


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Replay every detector on T10's fault-free runs (``<out_dir>``) and on those pooled with T9's
    (``<calibration_dir>/study9``, default ``<out_dir>/../study9``); writes ``<out_dir>/results.json``.

    Raises:
        FileNotFoundError: ``out_dir`` holds no finished T10 run, or the T9 folder no finished T9-healthy run.
    """
    t10 = load_set(out_dir, ("T10-healthy",))
    t9_dir = (calibration_dir or out_dir.parent) / "study9"
    t9 = load_set(t9_dir, ("T9-healthy",))
    if not t10 or not t9:
        raise FileNotFoundError(f"{len(t10)} finished T10-healthy runs in {out_dir} and {len(t9)} T9-healthy runs in "
                                f"{t9_dir}: train T10 (and study 9's T9) first")
    scores9, scores10 = _scores(t9), _scores(t10)  # each run replayed once
    pooled = {name: [*scores9[name], *scores10[name]] for name in scores10}
    results = {
        "interval": RECORDED_INTERVAL, "shipped": f"spinal: {SHIPPED}", "matched_thresholds": dict(C6_MATCHED),
        "sets": {"T10": _false_alarms(t10, scores10),
                 "T9 + T10": _false_alarms([*t9, *t10], pooled)},
        "live": sorted(run.name for run in t10 if run.live_alerts),
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def false_alarm_table(result: dict[str, Any]) -> str:
    """Per detector and set: false alarms per 1000 probe steps (95 % CI) and the runs with one."""
    sets = result["sets"]
    lines = [
        f"Probe interval {result['interval']} steps; fault-free runs only, replayed; shipped detector: "
        f"**{result['shipped']}**.",
        "",
        "| detector | " + " | ".join(f"{name} ({s['runs']} runs, {s['probe_steps']} probe steps): false alarms / 1000 "
                                       "(95 % CI) · runs with one" for name, s in sets.items()) + " |",
        "|---|" + "---:|" * len(sets),
    ]
    for detector in next(iter(sets.values()))["detectors"]:
        cells = []
        for s in sets.values():
            summary = s["detectors"][detector]
            low, high = summary["false_per_1000_ci"]
            cells.append(f"{summary['false_per_1000']:.2f} ({low:.2f}–{high:.2f}) · {summary['runs_with_false_alarm']}")
        lines.append(f"| {detector} | " + " | ".join(cells) + " |")
    live = result["live"]
    lines += ["", "Live (the callback's own alerts in T10, library defaults; an alert is what a rollback needs): runs "
              f"with an alert: {len(live)} ({', '.join(live) or 'none'})."]
    return "\n".join(lines) + "\n"
