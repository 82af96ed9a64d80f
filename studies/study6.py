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
from studies.replay import saved_config, studied_defaults
from studies.study4 import STUDY4_CHECKS, UPDATE_CHECK, choose_threshold, healthy_part, score_test_set

__all__ = ["SHIPPED", "STUDY5", "TURN_CHECK", "TURN_ONLY", "UPDATE_ONLY", "choose", "evaluate", "study5_detector"]

SIZE, TURN = "update/size", "update/turn"

TURN_CHECK = "turn_jump"
SHIPPED = "shipped (study 5 detector + turn jump)"
STUDY5 = "study 5 detector (shipped before)"
UPDATE_ONLY = "update and turn jumps only"
TURN_ONLY = "turn jump only"


def study5_detector() -> DetectorConfig:
    """Study 5's shipped detector, pinned: the variance test on ``logps/chosen``, thresholds z 20.59, h 38.59,
    variance 4.61, speed 4.31, the update test on ``update/size`` at 0.41, no turn test."""
    return replace(studied_defaults(), variance_signals=("logps/chosen",), checks=STUDY4_CHECKS, z_threshold=20.59,
                   cusum_h=38.59, variance_threshold=4.61, variance_reference=0, speed_threshold=4.31,
                   update_signals=(SIZE,), update_threshold=0.41)


def choose(calibration_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Phase 1 (C6 only): the turn threshold on study 5's detector, false alarms and matched baselines on C6.

    Raises:
        FileNotFoundError: ``calibration_dir`` holds no finished C6 run.
    """
    base = study5_detector()
    base = replace(base, checks=(*base.checks, TURN_CHECK), turn_signals=(TURN,))
    return choose_threshold(healthy_part(calibration_dir, "C6"), out_dir, "C6", base, TURN_CHECK, (SHIPPED, TURN_ONLY),
                            update_threshold=base.update_threshold, calibration_set="C6",
                            other_thresholds_from="study 5", chosen_test=("TURN_JUMP", "turn_threshold", "the turn"))


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Phase 2 (T6, once): score with the choices of ``<out_dir>/calibration.json``: the shipped detector, study
    5's, the update and turn tests alone, the turn test alone, and the baselines matched on C6.

    ``calibration_dir`` is not read (every choice is in ``calibration.json``).
    """
    chosen = json.loads((out_dir / "calibration.json").read_text())
    shipped = saved_config(chosen["shipped_config"], study5_detector())
    configs = {SHIPPED: shipped, STUDY5: study5_detector(),
               UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK)),
               TURN_ONLY: replace(shipped, checks=(TURN_CHECK,))}
    return score_test_set(out_dir, "T6", configs, SHIPPED, chosen, turn_threshold=chosen["turn_threshold"],
                          matched_on="C6")
