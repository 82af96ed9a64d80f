"""Study 7's analysis (protocol: ``docs/evidence.md``, study 7): the shipped detector on decoder families no study
has trained.

Nothing is chosen: the detector is study 6's shipped one (:func:`study6_detector`, pinned), the baselines keep the
thresholds matched on C6 (:data:`C6_MATCHED`, pinned from study 6's ``calibration.md``). :func:`evaluate` scores
the test set T7 once, by study 3's rules, and writes ``results.json``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from studies.replay import saved_config
from studies.study4 import UPDATE_CHECK, score_test_set
from studies.study6 import TURN_CHECK, TURN_ONLY, study5_detector

__all__ = ["C6_MATCHED", "SHIPPED", "UPDATE_ONLY", "evaluate", "score_choice", "study6_detector"]

SHIPPED = "shipped (study 6 detector)"
UPDATE_ONLY = "update and turn jumps only"

#: The baselines' thresholds matched on C6 (≤ 0.5 false alarms per 1000 probe steps), as study 6 reported them.
C6_MATCHED: dict[str, float | None] = {
    "Lightning SpikeDetection (loss)": 2.0,
    "OLMo-core z (loss)": 4.0,
    "OLMo-core z (grad norm)": 21.0,
    "TRL reward-accuracy drop": 0.25,
    "TRL chosen log-prob drop": 0.75,
}


def study6_detector() -> DetectorConfig:
    """Study 6's shipped detector, pinned (the library's defaults when study 7 was registered): study 5's detector
    with TURN_JUMP on ``update/turn`` at 0.95."""
    base = study5_detector()
    return replace(base, checks=(*base.checks, TURN_CHECK), turn_signals=("update/turn",), turn_threshold=0.95)


def evaluate(out_dir: Path, calibration_dir: Path | None = None) -> dict[str, Any]:
    """Score T7 once: the shipped detector, the update and turn tests alone, the turn test alone, and the baselines
    at their C6 thresholds; writes ``<out_dir>/results.json``.

    ``calibration_dir`` is not read (study 7 has no calibration set); it is accepted so the phases share one call
    shape.

    Raises:
        FileNotFoundError: ``out_dir`` lacks T7's fault-free or fault runs.
    """
    shipped = study6_detector()
    configs = {SHIPPED: shipped, UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK)),
               TURN_ONLY: replace(shipped, checks=(TURN_CHECK,))}
    chosen = {"matched_thresholds": dict(C6_MATCHED)}
    return score_test_set(out_dir, "T7", configs, SHIPPED, chosen, matched_on="C6",
                          shipped_config=shipped.to_dict())



def score_choice(out_dir: Path, test_set: str, shipped_name: str, before_name: str, before: DetectorConfig,
                 kept: tuple[str, ...]) -> dict[str, Any]:
    """Score test set ``test_set`` once with the choice of ``<out_dir>/calibration.json`` (studies 8 and 9): the
    shipped detector (the saved config read over ``before``, the detector shipped before it), ``before`` itself, the
    update and turn tests alone, and the baselines at their C6 thresholds; ``kept``: keys of the choice copied into
    ``results.json``."""
    chosen = json.loads((out_dir / "calibration.json").read_text())
    shipped = saved_config(chosen["shipped_config"], before)
    configs = {shipped_name: shipped, before_name: before,
               UPDATE_ONLY: replace(shipped, checks=(UPDATE_CHECK, TURN_CHECK))}
    return score_test_set(out_dir, test_set, configs, shipped_name, chosen, matched_on="C6",
                          **{key: chosen[key] for key in kept})
