"""Study 5's two analysis phases (protocol: ``docs/evidence.md``, study 5).

- :func:`choose` uses the calibration set C5 only — every fault-free and fault run of studies 2–4 (study 2's
  fault-free runs as re-trained by study 4, with ``update/size``): calibrates each candidate set of
  VARIANCE_BURST signals (:data:`CANDIDATES`) with every threshold of the detector on C5's fault-free runs, scores
  each on C5's fault runs and by leave-one-part-out on the fault-free runs, picks the shipped candidate by the
  protocol's rule, and writes ``calibration.json``.
- :func:`evaluate` scores study 5's test set T5 once with those choices (study 3's rules: a fault run is detected
  *in time* when the first alarm after the fault comes no later than the behavioural onset) and writes
  ``results.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import calibrate
from studies.replay import Run, observations, saved_config
from studies.scoring import Score, summarise
from studies.study2 import load_set
from studies.study3 import (
    RECORDED_INTERVAL,
    TARGET_RATE,
    detector_scores,
    matched_thresholds,
    onsets_of,
    probe_steps,
    replayed_summary,
)
from studies.study4 import STUDY4_CHECKS, score_test_set, study4_detector

__all__ = ["CALIBRATION", "CANDIDATES", "candidate_config", "choose", "evaluate"]

#: C5, as (folder under the runs root, parts): fault-free runs, then fault runs.
CALIBRATION: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "healthy": (("study4/calibration", ("C4-healthy",)), ("study3", ("T3-healthy",)), ("study4", ("T4-healthy",))),
    "faults": (("study2", ("C-faults", "T-faults")), ("study3", ("T3-faults",)), ("study4", ("T4-faults",))),
}

_TRL = ("rewards/chosen", "logps/chosen", "rewards/accuracies", "rewards/margins")
#: Candidate VARIANCE_BURST signal sets, fixed by the protocol: every watched signal (study 4's detector), TRL's
#: four watched DPO metrics, TRL's batch chosen log-probability alone, and no variance test.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "all watched signals (study 4)": ("*",),
    "TRL's four metrics": _TRL,
    "logps/chosen only": ("logps/chosen",),
    "no variance test": (),
}
STUDY4 = "study 4 detector (shipped before)"
UPDATE_ONLY = "update jump only"


def candidate_config(variance_signals: Sequence[str]) -> DetectorConfig:
    """Study 4's shipped detector with VARIANCE_BURST on ``variance_signals`` (none: the test is off)."""
    checks = STUDY4_CHECKS if variance_signals else tuple(c for c in STUDY4_CHECKS if c != "variance_burst")
    return replace(study4_detector(), variance_signals=tuple(variance_signals), checks=checks)


def _calibrated(variance_signals: Sequence[str], healthy: Sequence[Run]) -> DetectorConfig:
    streams = [observations(run) for run in healthy]
    return calibrate(streams, candidate_config(variance_signals), target_rate=TARGET_RATE, keep_floor=False)


def _load(root: Path, which: str) -> list[Run]:
    return [run for folder, parts in CALIBRATION[which] for run in load_set(root / folder, parts)]


def _cross_validated(variance_signals: Sequence[str], healthy: Sequence[Run]) -> dict[str, Any]:
    """Leave one part of C5's fault-free runs out: calibrate on the others, count the false alarms on it."""
    scores: list[Score] = []
    for part in dict.fromkeys(run.part for run in healthy):
        held = [run for run in healthy if run.part == part]
        config = _calibrated(variance_signals, [run for run in healthy if run.part != part])
        scores += detector_scores("cross-validated", config, held, onsets_of(held), 1)
    summary = summarise(scores, probe_steps(healthy, 1), RECORDED_INTERVAL)
    summary["where"] = [s.run for s in scores if s.false_alarms]
    return summary


def choose(runs_root: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C5 only): each candidate calibrated, scored, cross-validated; the shipped one by the rule.

    Rule: among candidates whose leave-one-part-out false-alarm rate is at most :data:`TARGET_RATE` per 1000
    probe steps, the most C5 fault runs detected in time; ties: the larger median in-time lead, then fewer
    variance signals (none counts as fewest).

    Raises:
        FileNotFoundError: the runs root holds no C5 run.
    """
    healthy, faults = _load(runs_root, "healthy"), _load(runs_root, "faults")
    if not healthy or not faults:
        raise FileNotFoundError(f"{runs_root} holds {len(healthy)} fault-free and {len(faults)} fault runs of C5: "
                                "studies 2-4 must be trained first")
    onsets = onsets_of(healthy + faults)
    table: dict[str, Any] = {}
    for name, signals in CANDIDATES.items():
        config = _calibrated(signals, healthy)
        table[name] = {"config": config.to_dict(), "faults": replayed_summary(name, config, faults, onsets),
                       "healthy": replayed_summary(name, config, healthy, onsets),
                       "cross_validated": _cross_validated(signals, healthy)}
        print(f"{name}: {table[name]['faults']['detected_in_time']}/{table[name]['faults']['fault_runs']} in time, "
              f"{table[name]['cross_validated']['false_per_1000']:.2f} false alarms / 1000 cross-validated", flush=True)

    def key(name: str) -> tuple[float, float, float]:
        faults_summary = table[name]["faults"]
        lead = faults_summary["median_in_time_lead"]
        return (faults_summary["detected_in_time"], lead if lead is not None else -1e9, -len(CANDIDATES[name]))

    eligible = [n for n in CANDIDATES if table[n]["cross_validated"]["false_per_1000"] <= TARGET_RATE]
    shipped = max(eligible or list(CANDIDATES), key=key)
    result = {"candidates": table, "shipped": shipped, "shipped_config": table[shipped]["config"],
              "interval": RECORDED_INTERVAL, "matched_thresholds": matched_thresholds(healthy), "onsets": onsets,
              "healthy_runs": len(healthy), "fault_runs": len(faults), "probe_steps": probe_steps(healthy, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def evaluate(out_dir: Path, runs_root: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T5, once): score with the choices of ``<out_dir>/calibration.json``: the shipped detector, study
    4's (as it shipped), the update test alone, and the baselines at their thresholds matched on C5.

    ``runs_root`` is not read (every choice is in ``calibration.json``); it is accepted so the phases share one
    call shape.
    """
    chosen = json.loads((out_dir / "calibration.json").read_text())
    shipped = saved_config(chosen["shipped_config"], study4_detector())
    configs = {chosen["shipped"]: shipped, STUDY4: study4_detector(),
               UPDATE_ONLY: replace(shipped, checks=("update_jump",))}
    return score_test_set(out_dir, "T5", configs, chosen["shipped"], chosen, matched_on="C5")
