"""Study 12's run lists, settings and pinned detector, and its evaluation end to end on small synthetic run folders
(no training)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from studies import scenarios, study12
from studies.scenarios import RunSpec
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import write_run

PROBES = 90
FAULT = 120
ONSET = 140


def test_t12_is_the_protocols_and_new() -> None:
    test = scenarios.study12_test_set()
    healthy = [r for r in test if not r.is_fault]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T12-healthy", scenarios.STUDY11_MODELS)
                       for s in range(2400, 2432)]
    faults = [r for r in test if r.is_fault]
    assert [r.scenario for r in faults] == [f for f in scenarios.STUDY12_FAULTS for _ in range(8)]
    assert [r.seed for r in faults] == [2500 + 10 * i + k for i in range(5) for k in range(8)]
    assert all(r.model == ("M1", "M3", "Q1", "G2")[r.seed % 4] and 130 <= r.fault_step <= 160 for r in faults)
    earlier = (scenarios.calibration_set() + scenarios.test_set() + scenarios.study3_test_set()
               + scenarios.study4_test_set() + scenarios.study5_test_set() + scenarios.study6_test_set()
               + scenarios.study7_test_set() + scenarios.study8_test_set() + scenarios.study9_test_set()
               + scenarios.study10_test_set() + scenarios.study11_test_set())
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    rollback = scenarios.study12_rollback_set()
    firsts = [f"{family}-s{2500 + 10 * i}-rb" for i, family in enumerate(scenarios.STUDY12_FAULTS)]
    assert [r.name for r in rollback] == firsts + [f"healthy-s{s}-rb" for s in range(2400, 2404)]
    script = study_script(12)
    assert script.specs_of("train-test") == test and script.specs_of("train-rollback") == rollback
    assert [(r.scenario, r.max_steps) for r in script.specs_of("train-test", quick=True)] == [
        ("healthy", 30), *((family, 30) for family in scenarios.STUDY12_FAULTS)]


def test_t12_runs_the_librarys_defaults() -> None:
    # the library's default until study 13 added the turn's second lag (and study 14 decisive exceedances)
    assert study12.study12_detector() == replace(DetectorConfig(), turn_lag=0, decisive_factor=0.0) == replace(
        SpinalConfig().detector, turn_lag=0, decisive_factor=0.0)
    settings = study12.settings_of(scenarios.study12_test_set()[0])
    assert settings.interval == SpinalConfig().interval == study12.PROBE_INTERVAL
    assert settings.signal_interval is None and SpinalConfig().reading_interval == 2
    assert not settings.watch_probe_pairs and settings.eval_every == 0
    assert study12.settings_of(scenarios.study12_test_set()[-1]).eval_every == 2


def _signals(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """``update/size`` wandering within ±10 %, ×50 from the fault on in ``lr_jump`` runs; ``update/turn`` quiet; the
    probe pairs' margin jumps ×100 in one fault-free run (seed 11): watched by study 9's detector, not by study 12's."""
    jump = spec.scenario == "lr_jump" and step > FAULT
    margin = 100.0 if spec.seed == 11 and step > 100 else 1.0
    return {"update/size": 1e-3 * (50.0 if jump else 1.0) * math.exp(rng.gauss(0, 0.05)),
            "update/turn": 0.3 * math.exp(rng.gauss(0, 0.05)),
            "pairs/margin": margin + 0.01 * step + rng.gauss(0, 0.01)}


def test_evaluate_scores_t12_and_replays_the_spent_runs_with_both_defaults(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="T12-healthy"):
        study12.evaluate(tmp_path)
    t12, t11 = tmp_path / "t12", tmp_path / "t11"
    for out, part in ((t12, "T12"), (t11, "T11")):
        for seed, model in ((10, "M3"), (11, "G2")):
            write_run(out, RunSpec("healthy", seed, 2 * PROBES, model=model, part=f"{part}-healthy"), PROBES, 10**9,
                      False, _signals)
        for k, family in enumerate(("lr_jump", "label_flip")):
            spec = RunSpec(family, 20 + k, 2 * PROBES, fault_step=FAULT, model="M1", part=f"{part}-faults")
            write_run(out, spec, PROBES, ONSET, True, _signals)
    results = study12.evaluate(t12, t11)
    ours = results["detectors"][f"spinal: {study12.SHIPPED}"]
    assert ours["lr_jump"]["detected_in_time"] == 1 and ours["label_flip"]["detected_in_time"] == 0
    assert ours["healthy"]["runs_with_false_alarm"] == 0 and results["probe_interval"] == 50
    spent = results["spent_t11"]
    assert spent["study 9 detector"]["healthy_alarmed"] == ["healthy-s11"]  # the margin jump, watched there
    assert spent["study 12 default"]["healthy_alarmed"] == []
    assert spent["study 12 default"]["in_time"] == spent["study 9 detector"]["in_time"] == 1
    assert "| study 9 detector | 1/2 | 1/2 |" in study12.spent_table(results)
