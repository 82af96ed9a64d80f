"""Study 6's analysis phases end to end on small synthetic run folders (no training).

Healthy runs: ``update/size`` and ``update/turn`` wander within ±10 %; a ``grad_ascent`` run's turn jumps ×3 from the
fault step on with its size unchanged; an ``lr_jump`` run's size jumps ×50. The turn has its own test (TURN_JUMP).
Held-out accuracy falls at :data:`ONSET` in every fault run.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import study6, tables
from studies.scenarios import RunSpec
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 70  # probe steps 0, 2, …, 138
FAULT = 90
ONSET = 100


def _write_run(root: Path, spec: RunSpec, evals: bool) -> None:
    write_run(root, spec, PROBES, ONSET, evals, update_signals)


def test_choose_then_evaluate(tmp_path: Path) -> None:
    calibration, out = tmp_path / "calibration", tmp_path / "study6"
    for seed in range(6):
        _write_run(calibration, RunSpec("healthy", 100 + seed, 2 * PROBES, part="C6-healthy"), evals=False)
    for seed in range(3):
        _write_run(out, RunSpec("healthy", 1100 + seed, 2 * PROBES, part="T6-healthy"), evals=False)
        _write_run(out, RunSpec("grad_ascent", 1200 + seed, 2 * PROBES, fault_step=FAULT, part="T6-faults"), evals=True)
        _write_run(out, RunSpec("lr_jump", 1210 + seed, 2 * PROBES, fault_step=FAULT, part="T6-faults"), evals=True)

    chosen = study6.choose(calibration, out)
    assert 0 < chosen["turn_threshold"] < math.log(3)  # above the healthy wander, below the turn's jump
    config = chosen["shipped_config"]
    assert config["update_signals"] == ["update/size"] and config["turn_signals"] == ["update/turn"]
    assert config["turn_threshold"] == chosen["turn_threshold"] and config["update_threshold"] == 0.41
    assert "turn_jump" in config["checks"]
    assert config["variance_signals"] == ["logps/chosen"]  # otherwise study 5's detector
    table = tables.study4_calibration_table(chosen)
    assert "Calibration set C6" in table and "study 5's" in table and "TURN_JUMP threshold" in table

    results = study6.evaluate(out)
    detectors = results["detectors"]
    names = [f"spinal: {n}" for n in (study6.SHIPPED, study6.STUDY5, study6.UPDATE_ONLY, study6.TURN_ONLY)]
    assert list(detectors)[:4] == names
    shipped = detectors[names[0]]
    assert shipped["grad_ascent"]["detected_in_time"] == 3 and shipped["lr_jump"]["detected_in_time"] == 3
    assert shipped["healthy"]["false_alarms"] == 0
    assert detectors[names[1]]["grad_ascent"]["detected_in_time"] == 0  # the size alone cannot see it
    assert detectors[names[3]]["lr_jump"]["detected_in_time"] == 0  # nor the turn a jump in size
    assert results["matched_on"] == "C6" and results["live"]["fault_runs"] == 6
