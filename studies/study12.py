"""Study 12's analysis (protocol: ``docs/evidence.md``, study 12): the library's new default, run live.

The runs probe every 50 steps and read the forward-free signals (update size and turn, TRL's metrics) and run the
detector every 2 (the library's defaults, ``StudySettings(interval=50, watch_probe_pairs=False)``). The detector is
the library's default since study 12 (:func:`study12_detector`, pinned): study 9's tests and thresholds on TRL's
metrics and the update signals, the probe pairs only checked for NON_FINITE. Nothing is chosen. :func:`evaluate`
scores T12 once by study 3's rules against the baselines at their C6 thresholds, per model too, and — labelled as a
re-analysis of spent runs — replays the new and the old default on study 11's runs (:func:`spent_replay`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.signals import DEFAULT_FINITE_SIGNALS, DEFAULT_SIGNALS
from studies.replay import Run
from studies.scoring import Score
from studies.study2 import load_set
from studies.study3 import detector_scores, onsets_of
from studies.study4 import UPDATE_CHECK, score_test_set
from studies.study6 import TURN_CHECK
from studies.study7 import C6_MATCHED
from studies.study10 import study9_detector
from studies.study11 import by_model

__all__ = ["SHIPPED", "UPDATE_ONLY", "evaluate", "replay_both", "replay_summary", "settings_of", "spent_replay",
           "study12_detector"]

SHIPPED = "shipped (study 12 default: no probe pairs)"
UPDATE_ONLY = "update and turn jumps only"
#: Probe interval of the T12 runs (the library's default since study 12).
PROBE_INTERVAL = 50


def study12_detector() -> DetectorConfig:
    """The library's default detector since study 12, pinned: study 9's, watching TRL's metrics only (no probe pairs),
    with the probe forward's ``head/*`` and ``pairs/*`` checked for NON_FINITE alone."""
    return replace(study9_detector(), signals=dict(DEFAULT_SIGNALS), finite_signals=DEFAULT_FINITE_SIGNALS)


def settings_of(spec: Any) -> Any:
    """T12's study settings: the library's default schedule (probe every 50 steps, readings every 2) and detector;
    held-out evaluations for fault and rollback runs only (as in studies 4-11)."""
    from studies.runner import StudySettings

    evals: dict[str, Any] = {} if spec.is_fault or spec.rollback else {"eval_every": 0}
    return StudySettings(interval=PROBE_INTERVAL, watch_probe_pairs=False, **evals)


def evaluate(out_dir: Path, spent_dir: Path | None = None) -> dict[str, Any]:
    """Score T12 (``out_dir``) once: the new default, its update and turn tests alone, and the baselines at their C6
    thresholds; the new default per model; and, when ``spent_dir`` holds study 11's runs, :func:`spent_replay`.

    Raises:
        FileNotFoundError: ``out_dir`` lacks T12's fault-free or fault runs.
    """
    shipped = study12_detector()
    configs = {SHIPPED: shipped, UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK))}
    results = score_test_set(out_dir, "T12", configs, SHIPPED, {"matched_thresholds": dict(C6_MATCHED)},
                             matched_on="C6", probe_interval=PROBE_INTERVAL)
    runs = load_set(out_dir, ("T12-healthy", "T12-faults"))
    results["by_model"] = by_model(runs, detector_scores(SHIPPED, shipped, runs, onsets_of(runs), 1))
    if spent_dir is not None and spent_dir.is_dir():
        results["spent_t11"] = spent_replay(load_set(spent_dir, ("T11-healthy", "T11-faults")))
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def replay_summary(runs: Sequence[Run], scores: Sequence[Score]) -> dict[str, Any]:
    """One detector's replay on ``runs``: fault-free runs and those that alarmed, scorable fault runs and those
    answered in time, each fault run's first alarm after the fault."""
    fault = {run.name: run.is_fault for run in runs}
    return {
        "healthy_runs": sum(not fault[s.run] for s in scores),
        "healthy_alarmed": [s.run for s in scores if not fault[s.run] and s.false_alarms],
        "scorable_faults": sum(fault[s.run] and s.onset is not None for s in scores),
        "in_time": sum(fault[s.run] and s.onset is not None and s.in_time for s in scores),
        "first_alarm": {s.run: s.first for s in scores if fault[s.run]},
    }


def replay_both(runs: Sequence[Run], old: tuple[str, DetectorConfig],
                new: tuple[str, DetectorConfig]) -> dict[str, Any]:
    """Two detectors (``(name, config)``) replayed on the same runs: per detector the healthy runs that alarmed, the
    scorable fault runs and those answered in time, each fault run's first alarm after the fault; and
    ``"first_alarm_differs"``, the fault runs where the two first alarms differ (``[old, new]``)."""
    onsets = onsets_of(runs)
    out: dict[str, Any] = {name: replay_summary(runs, detector_scores(name, config, runs, onsets, 1))
                           for name, config in (old, new)}
    before, after = out[old[0]]["first_alarm"], out[new[0]]["first_alarm"]
    out["first_alarm_differs"] = {name: [before[name], after[name]] for name in before if before[name] != after[name]}
    return out


def spent_replay(runs: Sequence[Run]) -> dict[str, Any]:
    """Re-analysis of spent runs (study 11's, recorded with a probe at every reading): study 9's detector and the new
    default replayed on the same runs; the runs whose first alarm after the fault differs are listed."""
    return replay_both(runs, ("study 9 detector", study9_detector()), ("study 12 default", study12_detector()))


def spent_table(results: dict[str, Any]) -> str:
    """The re-analysis of study 11's spent runs, if it was run."""
    spent = results.get("spent_t11")
    if not spent:
        return ""
    lines = ["Re-analysis of spent runs (study 11's T11, a probe at every reading): the same runs replayed with study "
             "9's detector (probe pairs watched) and the study-12 default (not watched).", "",
             "| detector | healthy runs with an alarm | fault runs answered in time |", "|---|---:|---:|"]
    for name in ("study 9 detector", "study 12 default"):
        row = spent[name]
        lines.append(f"| {name} | {len(row['healthy_alarmed'])}/{row['healthy_runs']} | "
                     f"{row['in_time']}/{row['scorable_faults']} |")
    differs = spent["first_alarm_differs"]
    lines += ["", "Fault runs whose first alarm after the fault differs (study 9 → study 12): "
              + (", ".join(f"{k} ({a} → {b})" for k, (a, b) in sorted(differs.items())) or "none") + "."]
    return "\n".join(lines) + "\n"
