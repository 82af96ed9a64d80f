"""Study 10's run list and its evaluation end to end on small synthetic run folders (no training)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from studies import scenarios, study10
from studies.scenarios import RunSpec
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 90


def test_t10_is_the_protocols_and_new() -> None:
    test = scenarios.study10_test_set()
    assert test == [scenarios.healthy_test_spec(s, 240, "T10-healthy", scenarios.STUDY8_MODELS)
                    for s in range(2100, 2140)]
    assert {r.model for r in test} == set(scenarios.STUDY8_MODELS) and not any(r.is_fault or r.rollback for r in test)
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set() + scenarios.study6_test_set()
               + scenarios.study7_test_set() + scenarios.study8_test_set() + scenarios.study9_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    script = study_script(10)
    assert script.PHASES == ("train-test", "evaluate") and script.specs_of("train-test") == test
    assert [(r.scenario, r.max_steps) for r in script.specs_of("train-test", quick=True)] == [("healthy", 30)]


def _burst(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """TRL's chosen log-prob; one run (seed 12) bursts ×30 from step 120 on."""
    return {"logps/chosen": -1 + rng.gauss(0, 0.05 * (30.0 if spec.seed == 12 and step > 120 else 1.0))}


def test_evaluate_alone_and_pooled(tmp_path: Path) -> None:
    for part, folder, seeds in (("T9-healthy", "study9", range(3)), ("T10-healthy", "study10", range(10, 13))):
        for seed in seeds:
            write_run(tmp_path / folder, RunSpec("healthy", seed, 2 * PROBES, model="M1", part=part), PROBES, 10**9,
                      False, update_signals, _burst)
    with pytest.raises(FileNotFoundError, match="T9-healthy"):
        study10.evaluate(tmp_path / "study10", tmp_path / "nowhere")
    result = study10.evaluate(tmp_path / "study10")
    assert json.loads((tmp_path / "study10" / "results.json").read_text())["live"] == result["live"] == []
    t10, pooled = result["sets"]["T10"], result["sets"]["T9 + T10"]
    assert (t10["runs"], pooled["runs"]) == (3, 6) and pooled["probe_steps"] == 2 * t10["probe_steps"] == 6 * PROBES
    ours = t10["detectors"][result["shipped"]]
    assert ours["alarmed"] == ["healthy-s12"] and ours["runs_with_false_alarm"] == 1
    assert pooled["detectors"][result["shipped"]]["alarmed"] == ["healthy-s12"]
    assert ours["false_per_1000"] == pytest.approx(ours["false_alarms"] * 1000 / t10["probe_steps"])
    table = study10.false_alarm_table(result)
    assert "T9 + T10 (6 runs" in table and "runs with an alert: 0 (none)" in table
