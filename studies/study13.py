"""Study 13's analysis (protocol: ``docs/evidence.md``, study 13): the turn test against the course before a reversal.

Under Adam's momentum, gradient ascent does not turn the updates at once: ``update/turn`` rises from its healthy level
to about 3× over roughly 10 readings. TURN_JUMP compared each turn with the trend window ending ``lag`` (2) readings
back, which takes the rise in as it happens, so three of T12's gradient-ascent runs raised no alarm. Since study 13
the test also scores the turn against the window ending ``turn_lag`` (8) readings back and counts the larger log
ratio (:class:`~spinal_callback.config.detector.DetectorConfig`, ``turn_lag``); its threshold is unchanged.

The choice was made on spent runs (:func:`calibration_replay`: studies 11 and 12's runs, replayed with study 12's
default and with the change); :func:`evaluate` scores the fresh test set T13 once, as study 12 did.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from studies.replay import Run
from studies.study2 import load_set
from studies.study3 import detector_scores, onsets_of
from studies.study4 import UPDATE_CHECK, score_test_set
from studies.study6 import TURN_CHECK
from studies.study7 import C6_MATCHED
from studies.study11 import by_model
from studies.study12 import PROBE_INTERVAL, replay_both, study12_detector

__all__ = ["SHIPPED", "STUDY12", "TURN_LAG", "UPDATE_ONLY", "calibration_replay", "calibration_table", "evaluate",
           "settings_of", "study13_detector"]

SHIPPED = "shipped (study 13 default: turn against 8 readings back too)"
STUDY12 = "study 12 default (turn at the shared lag alone)"
UPDATE_ONLY = "update and turn jumps only"
#: The turn test's second lag, in readings (the library's ``DetectorConfig.turn_lag`` since study 13).
TURN_LAG = 8


def study13_detector() -> DetectorConfig:
    """The library's default detector since study 13, pinned: study 12's with ``turn_lag = 8``."""
    return replace(study12_detector(), turn_lag=TURN_LAG)


def settings_of(spec: Any) -> Any:
    """T13's study settings: study 12's (the library's schedule: probe every 50 steps, readings every 2; held-out
    evaluations for fault and rollback runs only). The live detector is the library's default, which is
    :func:`study13_detector`."""
    from studies.study12 import settings_of as study12_settings

    return study12_settings(spec)


def calibration_replay(runs: Sequence[Run]) -> dict[str, Any]:
    """The choice's evidence, on spent runs: study 12's default and study 13's replayed on the same runs, each run's
    first alarm after the fault, and the runs where it differs."""
    out = replay_both(runs, (STUDY12, study12_detector()), (SHIPPED, study13_detector()))
    onsets = onsets_of(runs)
    out["onsets"] = {run.name: onsets[run.name] for run in runs if run.is_fault}
    return out


def calibration_table(results: dict[str, Any]) -> str:
    """:func:`calibration_replay`'s results as Markdown."""
    lines = ["| detector | healthy runs with an alarm | fault runs answered in time |", "|---|---:|---:|"]
    for name in (STUDY12, SHIPPED):
        row = results[name]
        lines.append(f"| {name} | {len(row['healthy_alarmed'])}/{row['healthy_runs']} | "
                     f"{row['in_time']}/{row['scorable_faults']} |")
    onsets = results["onsets"]
    differs = results["first_alarm_differs"]
    lines += ["", "Fault runs whose first alarm after the fault differs (study 12 → study 13; behavioural onset): "
              + ("; ".join(f"{k} ({a} → {b}; {onsets.get(k)})" for k, (a, b) in sorted(differs.items())) or "none")
              + "."]
    return "\n".join(lines) + "\n"


def evaluate(out_dir: Path) -> dict[str, Any]:
    """Score T13 (``out_dir``) once: the new default, study 12's, the update and turn tests alone, and the baselines at
    their C6 thresholds; the new default per model.

    Raises:
        FileNotFoundError: ``out_dir`` lacks T13's fault-free or fault runs.
    """
    shipped = study13_detector()
    configs = {SHIPPED: shipped, STUDY12: study12_detector(),
               UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK))}
    results = score_test_set(out_dir, "T13", configs, SHIPPED, {"matched_thresholds": dict(C6_MATCHED)},
                             matched_on="C6", probe_interval=PROBE_INTERVAL)
    runs = load_set(out_dir, ("T13-healthy", "T13-faults"))
    results["by_model"] = by_model(runs, detector_scores(SHIPPED, shipped, runs, onsets_of(runs), 1))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results
