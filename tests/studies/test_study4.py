"""Study 4's analysis phases end to end on small synthetic run folders (no training)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import study4, tables
from studies.replay import saved_config
from studies.scenarios import RunSpec
from tests.studies.synthetic_runs import write_run

PROBES = 70  # probe steps 0, 2, …, 138
FAULT = 90
ONSET = 100


def _size(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """``update/size`` jumping ×50 from a fault run's fault step on."""
    jump = 50.0 if spec.fault_step is not None and step > spec.fault_step else 1.0
    return {"update/size": 1e-3 * jump * math.exp(rng.gauss(0, 0.1))}


def _write_run(root: Path, spec: RunSpec, evals: bool) -> None:
    write_run(root, spec, PROBES, ONSET, evals, _size)


def test_choose_then_evaluate(tmp_path: Path) -> None:
    calibration, out = tmp_path / "calibration", tmp_path / "study4"
    for seed in range(6):
        _write_run(calibration, RunSpec("healthy", 100 + seed, 2 * PROBES, part="C4-healthy"), evals=False)
    for seed in range(3):
        _write_run(out, RunSpec("healthy", 700 + seed, 2 * PROBES, part="T4-healthy"), evals=False)
    for seed, family in enumerate(("lr_jump", "weight_noise", "adam_beta2")):
        _write_run(out, RunSpec(family, 800 + seed, 2 * PROBES, fault_step=FAULT, part="T4-faults"), evals=True)

    chosen = study4.choose(calibration, out)
    assert json.loads((out / "calibration.json").read_text())["update_threshold"] == chosen["update_threshold"]
    assert 0 < chosen["update_threshold"] < math.log(50)  # above the healthy noise, below the fault's jump
    assert chosen["shipped_config"]["update_threshold"] == chosen["update_threshold"]
    assert chosen["shipped_config"]["z_threshold"] == study4.study3_detector().z_threshold
    assert chosen["shipped_config"]["variance_signals"] == ["*"]  # study 3 and 4 ran it on every watched signal
    assert "turn_jump" not in chosen["shipped_config"]["checks"]
    assert "update_jump" in chosen["shipped_config"]["checks"]
    assert set(chosen["false_alarms"]) == {study4.SHIPPED, "update jump only"}
    assert chosen["healthy_runs"] == 6 and chosen["probe_steps"] == 6 * PROBES
    assert set(chosen["matched_thresholds"]) == set(study4.matched_thresholds([]))
    assert "UPDATE_JUMP threshold" in tables.study4_calibration_table(chosen)

    results = study4.evaluate(out, calibration)
    detectors = results["detectors"]
    assert list(detectors)[:3] == [f"spinal: {study4.SHIPPED}", "spinal: study 3 detector", "spinal: update jump only"]
    assert all(name.startswith("spinal: ") or ", shipped" in name or ", matched" in name for name in detectors)
    for name in (f"spinal: {study4.SHIPPED}", "spinal: update jump only"):
        assert detectors[name]["all"]["fault_runs"] == 3 and detectors[name]["all"]["detected_in_time"] == 3
        assert detectors[name]["healthy"]["false_alarms"] == 0
    assert set(detectors[f"spinal: {study4.SHIPPED}"]) == {"all", "lr_jump", "weight_noise", "adam_beta2",
                                                            "healthy", "runs"}
    assert results["onsets"]["lr_jump-s800"] == ONSET and results["onsets"]["healthy-s700"] is None
    assert results["live"]["fault_runs"] == 3 and "geometry_vs_probe_set" not in results
    table = tables.test_tables(json.loads((out / "results.json").read_text()), in_time=True)
    assert study4.SHIPPED in table and "on C4" in table


def test_a_saved_config_reads_back_as_the_detector_that_ran() -> None:
    """Fields added to DetectorConfig after a study saved its choice come from that study's detector, not from
    today's defaults (the variance test's signals were every watched signal until study 5)."""
    ran = study4.study4_detector()
    saved = {k: v for k, v in ran.to_dict().items() if k not in ("variance_signals", "turn_signals", "turn_threshold")}
    assert saved_config(saved, ran) == ran
    assert study4.DetectorConfig.from_dict(saved).variance_signals != ran.variance_signals
    with pytest.raises(ValueError, match="no_such_field"):
        saved_config({**saved, "no_such_field": 1}, ran)
