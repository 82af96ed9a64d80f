"""Study 11's run lists and its evaluation end to end on small synthetic run folders (no training)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import scenarios, study11
from studies.scenarios import RunSpec
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import write_run

PROBES = 90
FAULT = 120
ONSET = 140


def test_t11_is_the_protocols_and_new() -> None:
    test = scenarios.study11_test_set()
    healthy = [r for r in test if not r.is_fault]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T11-healthy", scenarios.STUDY11_MODELS)
                       for s in range(2200, 2240)]
    faults = [r for r in test if r.is_fault]
    assert [r.scenario for r in faults] == [f for f in scenarios.STUDY11_FAULTS for _ in range(8)]
    assert [r.seed for r in faults] == [2300 + 10 * i + k for i in range(4) for k in range(8)]
    assert all(r.model == ("M1", "M3", "Q1", "G2")[r.seed % 4] and 130 <= r.fault_step <= 160 for r in faults)
    fields = {r.scenario: (r.lr_growth, r.adam_beta2, r.adam_eps, r.grad_noise, r.weight_noise) for r in faults}
    assert fields == {"lr_ramp": (1.06, None, None, 0.0, 0.0), "adam_beta2": (1.0, 0.5, 1e-12, 0.0, 0.0),
                      "grad_noise": (1.0, None, None, 5.0, 0.0), "weight_noise": (1.0, None, None, 0.0, 0.3)}
    new_shapes = {r.model for r in test} & set(study11.NEW_MODELS)
    assert new_shapes == {"M3", "G2"} and sum(r.model in new_shapes for r in healthy) == 11
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set() + scenarios.study6_test_set()
               + scenarios.study7_test_set() + scenarios.study8_test_set() + scenarios.study9_test_set()
               + scenarios.study10_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    assert not {r.model for r in earlier} & set(study11.NEW_MODELS)
    rollback = scenarios.study11_rollback_set()
    assert [r.name for r in rollback] == ["lr_ramp-s2300-rb", "adam_beta2-s2310-rb", "grad_noise-s2320-rb",
                                          "weight_noise-s2330-rb"] + [f"healthy-s{s}-rb" for s in range(2200, 2204)]
    script = study_script(11)
    assert script.PHASES == ("train-test", "train-rollback", "evaluate")
    assert script.specs_of("train-test") == test and script.specs_of("train-rollback") == rollback
    assert [(r.scenario, r.max_steps) for r in script.specs_of("train-test", quick=True)] == [
        ("healthy", 30), *((family, 30) for family in scenarios.STUDY11_FAULTS)]


def _signals(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """``update/size`` wandering within ±10 %, ×50 from the fault on in ``lr_ramp`` runs (other faults: unmoved);
    ``update/turn`` quiet. One fault-free run (seed 11) has its size jump ×50 at step 100: a false alarm."""
    jump = (spec.scenario == "lr_ramp" and step > FAULT) or (spec.seed == 11 and step > 100)
    return {"update/size": 1e-3 * (50.0 if jump else 1.0) * math.exp(rng.gauss(0, 0.05)),
            "update/turn": 0.3 * math.exp(rng.gauss(0, 0.05))}


def test_evaluate_scores_t11_and_splits_the_shipped_detector_by_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="T11-healthy"):
        study11.evaluate(tmp_path)
    for seed, model in ((10, "M3"), (11, "G2"), (12, "M1")):
        write_run(tmp_path, RunSpec("healthy", seed, 2 * PROBES, model=model, part="T11-healthy"), PROBES, 10**9,
                  False, _signals)
    for i, family in enumerate(("lr_ramp", "grad_noise")):
        for k, model in enumerate(("M3", "M1")):
            spec = RunSpec(family, 20 + 10 * i + k, 2 * PROBES, fault_step=FAULT, model=model, part="T11-faults")
            write_run(tmp_path, spec, PROBES, ONSET, True, _signals)
    results = study11.evaluate(tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["by_model"] == results["by_model"]
    shipped = f"spinal: {study11.SHIPPED}"
    assert list(results["detectors"])[:2] == [shipped, f"spinal: {study11.UPDATE_ONLY}"]
    ours = results["detectors"][shipped]
    assert ours["lr_ramp"]["detected_in_time"] == 2 and ours["grad_noise"]["detected_in_time"] == 0
    assert results["matched_on"] == "C6" and results["shipped"] == study11.SHIPPED
    assert results["by_model"] == {
        "G2": {"healthy": 1, "healthy_alarmed": ["healthy-s11"], "faults": 0, "in_time": 0, "missed": []},
        "M1": {"healthy": 1, "healthy_alarmed": [], "faults": 2, "in_time": 1, "missed": ["grad_noise-s31"]},
        "M3": {"healthy": 1, "healthy_alarmed": [], "faults": 2, "in_time": 1, "missed": ["grad_noise-s30"]},
    }
    table = study11.model_table(results)
    assert "| G2* | 1 | 1 | 0 | 0 | – |" in table and "| M1 | 1 | 0 | 2 | 1 | grad_noise-s31 |" in table
