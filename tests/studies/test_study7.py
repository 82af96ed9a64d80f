"""Study 7's analysis end to end on small synthetic run folders (no training).

Healthy runs: ``update/size`` and ``update/turn`` wander within ±10 %; an ``lr_jump`` run's size jumps ×50 and a
``grad_ascent`` run's turn ×3 from the fault step on; a ``label_flip`` run moves neither. Held-out accuracy falls at
:data:`ONSET` in every fault run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback.config.detector import DetectorConfig
from studies import study7, tables
from studies.scenarios import RunSpec
from studies.scoring import BASELINES
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 70  # probe steps 0, 2, …, 138
FAULT = 90
ONSET = 100


def test_the_pinned_detector_is_study_6s() -> None:
    config = study7.study6_detector()
    assert config.turn_threshold == 0.95 and config.update_threshold == 0.41 and "turn_jump" in config.checks
    assert config.variance_signals == ("logps/chosen",) and config.update_signals == ("update/size",)
    assert (config.z_threshold, config.cusum_h, config.variance_threshold) == (20.59, 38.59, 4.61)
    assert set(study7.C6_MATCHED) == set(BASELINES)  # every baseline has its C6 threshold


def test_evaluate_scores_t7_with_the_pinned_detector(tmp_path: Path) -> None:
    out = tmp_path / "study7"
    for seed in range(3):
        write_run(out, RunSpec("healthy", 1500 + seed, 2 * PROBES, model="G1", part="T7-healthy"), PROBES, ONSET,
                  False, update_signals)
    for i, family in enumerate(("lr_jump", "label_flip", "grad_ascent")):
        for seed in range(2):
            spec = RunSpec(family, 1600 + 10 * i + seed, 2 * PROBES, fault_step=FAULT, model=("G1", "Q1")[seed],
                           part="T7-faults")
            write_run(out, spec, PROBES, ONSET, True, update_signals)

    results = study7.evaluate(out)
    detectors = results["detectors"]
    names = [f"spinal: {n}" for n in (study7.SHIPPED, study7.UPDATE_ONLY, "turn jump only")]
    assert list(detectors)[:3] == names
    shipped = detectors[names[0]]
    assert shipped["lr_jump"]["detected_in_time"] == 2 and shipped["grad_ascent"]["detected_in_time"] == 2
    assert shipped["healthy"]["false_alarms"] == 0
    assert results["matched_thresholds"] == study7.C6_MATCHED and results["matched_on"] == "C6"
    assert DetectorConfig.from_dict(results["shipped_config"]) == study7.study6_detector()
    assert json.loads((out / "results.json").read_text())["shipped"] == study7.SHIPPED
    assert study7.SHIPPED in tables.test_tables(results, in_time=True)
