"""Study 8's choice rule on scripted alarms, and its phases end to end on small synthetic run folders (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import study8, tables
from studies.scenarios import RunSpec
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 70  # probe steps 0, 2, …, 138
FAULT = 90
ONSET = 100


def _write(root: Path, calibration: bool) -> None:
    prefix = "T7" if calibration else "T8"
    for seed in range(3):
        write_run(root, RunSpec("healthy", 10 + seed, 2 * PROBES, model="G1", part=f"{prefix}-healthy"), PROBES, ONSET,
                  False, update_signals)
        for i, family in enumerate(("lr_jump", "grad_ascent")):
            spec = RunSpec(family, 20 + 10 * i + seed, 2 * PROBES, fault_step=FAULT, model="Q1",
                           part=f"{prefix}-faults")
            write_run(root, spec, PROBES, ONSET, True, update_signals)


def test_a_test_that_alarms_when_healthy_and_answers_no_fault_first_is_dropped(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path, calibration=True)
    scripted = {  # run → (step, reason, signal) alarms
        "healthy-s10": [(60, "slope_change", "pairs/margin")],
        "healthy-s11": [(40, "variance_burst", "logps/chosen")],
        "lr_jump-s20": [(50, "slope_change", "pairs/margin"), (92, "update_jump", "update/size"),
                        (92, "trend_break", "pairs/margin"), (96, "slope_change", "pairs/margin")],
        "grad_ascent-s30": [(94, "turn_jump", "update/turn"), (94, "variance_burst", "logps/chosen")],
    }
    monkeypatch.setattr(study8, "alarm_reasons", lambda run, config: scripted.get(run.name, []))
    chosen = study8.choose(tmp_path, tmp_path / "out")
    tests = chosen["tests"]
    assert tests["slope_change"] == {"healthy_runs": ["healthy-s10"], "first_answers": []}  # its 50 is before the fault
    assert tests["update_jump"]["first_answers"] == ["lr_jump-s20"] and tests["trend_break"]["first_answers"] == [
        "lr_jump-s20"]  # ties count for each test
    assert tests["variance_burst"] == {"healthy_runs": ["healthy-s11"], "first_answers": ["grad_ascent-s30"]}
    assert chosen["dropped"] == ["slope_change"]  # the variance test answered a fault first: kept
    assert "slope_change" not in chosen["shipped_config"]["checks"]
    assert "variance_burst" in chosen["shipped_config"]["checks"]
    table = tables.study8_calibration_table(chosen)
    assert "**slope_change**" in table and "| slope_change | 1 | 0 |" in table


def test_choose_then_evaluate(tmp_path: Path) -> None:
    calibration, out = tmp_path / "study7", tmp_path / "study8"
    _write(calibration, calibration=True)
    _write(out, calibration=False)
    with pytest.raises(FileNotFoundError, match="T7-healthy"):
        study8.choose(tmp_path / "nothing", out)
    chosen = study8.choose(calibration, out)
    assert chosen["dropped"] == [] and chosen["healthy_runs"] == 3 and chosen["fault_runs"] == 6
    assert json.loads((out / "calibration.json").read_text())["shipped_config"] == chosen["shipped_config"]
    results = study8.evaluate(out)
    names = [f"spinal: {n}" for n in (study8.SHIPPED, study8.STUDY6, study8.UPDATE_ONLY)]
    assert list(results["detectors"])[:3] == names
    shipped = results["detectors"][names[0]]
    assert shipped["lr_jump"]["detected_in_time"] == 3 and shipped["grad_ascent"]["detected_in_time"] == 3
    assert shipped["healthy"]["false_alarms"] == 0 and results["dropped"] == [] and results["matched_on"] == "C6"
