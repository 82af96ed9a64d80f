"""Study 6's two analysis phases (protocol: ``docs/evidence.md``, study 6).

- :func:`choose` uses the calibration set C6 only — study 2's 40 fault-free runs re-trained once more, now also
  recording ``update/turn``, without held-out evaluations: calibrates the TURN_JUMP threshold on ``update/turn``
  alone (target :data:`~studies.study4.UPDATE_TARGET_RATE`, from the data alone; amendment 1), ships study 5's
  detector with that test added, records false alarms on C6 and the baselines' matched thresholds there, and
  writes ``calibration.json``.
- :func:`evaluate` scores study 6's test set T6 once with those choices (study 3's rules) and writes
  ``results.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import calibrate
from studies.replay import observations
from studies.study2 import load_set
from studies.study3 import (
    RECORDED_INTERVAL,
    matched_thresholds,
    onsets_of,
    probe_steps,
    replayed_summary,
)
from studies.study4 import UPDATE_CHECK, UPDATE_TARGET_RATE, score_test_set

__all__ = ["CALIBRATION_PARTS", "FAULT_PARTS", "HEALTHY_PARTS", "SHIPPED", "STUDY5", "TURN_CHECK", "TURN_ONLY",
           "UPDATE_ONLY", "choose", "evaluate", "study5_detector"]

#: Parts of C6 (calibration) and of T6 (the test set: fault-free runs, fault runs).
CALIBRATION_PARTS = ("C6-healthy",)
HEALTHY_PARTS = ("T6-healthy",)
FAULT_PARTS = ("T6-faults",)
SIZE, TURN = "update/size", "update/turn"

TURN_CHECK = "turn_jump"
SHIPPED = "shipped (study 5 detector + turn jump)"
STUDY5 = "study 5 detector (shipped before)"
UPDATE_ONLY = "update and turn jumps only"
TURN_ONLY = "turn jump only"


def study5_detector() -> DetectorConfig:
    """Study 5's shipped detector: no turn test, the update test on ``update/size`` at 0.41."""
    base = DetectorConfig()
    return replace(base, checks=tuple(c for c in base.checks if c != TURN_CHECK), update_signals=(SIZE,),
                   update_threshold=0.41)


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C6 only): the turn threshold, the shipped config, false alarms and matched baselines on C6.

    Raises:
        FileNotFoundError: ``calibration_dir`` holds no finished C6 run.
    """
    healthy = load_set(calibration_dir, CALIBRATION_PARTS)
    if not healthy:
        raise FileNotFoundError(f"no finished C6 run (part {CALIBRATION_PARTS[0]!r}) in {calibration_dir}: "
                                "train the calibration set first")
    base = study5_detector()
    base = replace(base, checks=(*base.checks, TURN_CHECK), turn_signals=(TURN,))
    streams = [observations(run) for run in healthy]
    threshold = float(calibrate(streams, replace(base, checks=(TURN_CHECK,)), target_rate=UPDATE_TARGET_RATE,
                                keep_floor=False).turn_threshold)
    shipped = replace(base, turn_threshold=threshold)
    configs = {SHIPPED: shipped, TURN_ONLY: replace(shipped, checks=(TURN_CHECK,))}
    onsets = onsets_of(healthy)
    false_alarms = {name: replayed_summary(name, config, healthy, onsets) for name, config in configs.items()}
    result = {
        "turn_threshold": threshold, "update_threshold": shipped.update_threshold,
        "update_target_rate": UPDATE_TARGET_RATE, "interval": RECORDED_INTERVAL,
        "shipped": SHIPPED, "shipped_config": shipped.to_dict(), "false_alarms": false_alarms,
        "matched_thresholds": matched_thresholds(healthy), "healthy_runs": len(healthy),
        "probe_steps": probe_steps(healthy, 1), "calibration_set": "C6", "other_thresholds_from": "study 5",
        "chosen_test": ("TURN_JUMP", "turn_threshold", "the turn"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "calibration.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T6, once): score with the choices of ``<out_dir>/calibration.json``: the shipped detector, study
    5's, the update and turn tests alone, the turn test alone, and the baselines matched on C6.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``).
    """
    chosen = json.loads((out_dir / "calibration.json").read_text())
    shipped = DetectorConfig.from_dict(chosen["shipped_config"])
    configs = {SHIPPED: shipped, STUDY5: study5_detector(),
               UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK)),
               TURN_ONLY: replace(shipped, checks=(TURN_CHECK,))}
    return score_test_set(out_dir, "T6", configs, SHIPPED, chosen, turn_threshold=chosen["turn_threshold"],
                          matched_on="C6")
