"""Study 13's run list, pinned detector and the turn's second lag, the calibration replay and the evaluation end to
end on small synthetic run folders (no training)."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import EarlyWarningDetector
from studies import scenarios, study12, study13
from studies.scenarios import RunSpec
from studies.study2 import load_set
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import write_run

PROBES = 90
FAULT = 120
ONSET = 150


def test_t13_is_the_protocols_and_new() -> None:
    test = scenarios.study13_test_set()
    healthy = [r for r in test if not r.is_fault]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T13-healthy", scenarios.STUDY11_MODELS)
                       for s in range(2600, 2632)]
    faults = [r for r in test if r.is_fault]
    assert [r.scenario for r in faults] == [f for f in ("grad_ascent", "label_flip", "lr_ramp") for _ in range(8)]
    assert [r.seed for r in faults] == [*range(2700, 2708), *range(2710, 2718), *range(2720, 2728)]
    assert all(130 <= r.fault_step <= 160 and r.part == "T13-faults" for r in faults)
    earlier = [*scenarios.study11_test_set(), *scenarios.study12_test_set(), *scenarios.study12_rollback_set()]
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    script = study_script(13)
    assert script.specs_of("train-test") == test
    assert [(r.scenario, r.max_steps) for r in script.specs_of("train-test", quick=True)] == [
        ("healthy", 30), *((family, 30) for family in scenarios.STUDY13_FAULTS)]
    with pytest.raises(ValueError, match="train-test"):
        script.specs_of("evaluate")


def test_t13_runs_the_librarys_defaults() -> None:
    # the library's default until study 14 added decisive exceedances
    assert study13.study13_detector() == replace(DetectorConfig(), decisive_factor=0.0) == replace(
        SpinalConfig().detector, decisive_factor=0.0)
    assert study13.study13_detector().turn_lag == study13.TURN_LAG == 8
    assert study12.study12_detector().turn_lag == 0  # pinned as it ran
    settings = study13.settings_of(scenarios.study13_test_set()[0])
    assert settings.interval == SpinalConfig().interval and not settings.watch_probe_pairs
    assert settings.eval_every == 0 and study13.settings_of(scenarios.study13_test_set()[-1]).eval_every == 2


def _ramp_turn(n: int, start: int, rise: int = 12, level: float = 0.3, peak: float = 0.9) -> list[float]:
    """A quiet ``update/turn`` that rises linearly to ``peak`` over ``rise`` readings from reading ``start`` on (a
    reversal under momentum), with ±3 % noise."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        base = level + (peak - level) * min(1.0, max(0.0, (i - start) / rise))
        out.append(base * math.exp(rng.gauss(0, 0.03)))
    return out


def test_a_reversal_that_builds_over_readings_is_caught_only_with_the_second_lag() -> None:
    series = _ramp_turn(80, 50)
    first = {}
    for lag in (0, 8):
        detector = EarlyWarningDetector(DetectorConfig(signals={"loss": "both"}, turn_lag=lag))
        alerts = [a for i, v in enumerate(series) for a in detector.update(2 * i, {"update/turn": v})]
        first[lag] = alerts[0].step if alerts else None
        if alerts:
            assert alerts[0].reason.name == "TURN_JUMP" and "steps" in alerts[0].message
    # 3x in 12 readings: the window 2 back rises with it (ratio < e^0.95); the one 8 back does not
    assert first[0] is None and first[8] is not None and 100 < first[8] <= 2 * (50 + 12)


def test_the_second_lag_changes_nothing_on_a_quiet_turn_or_a_sudden_one() -> None:
    quiet = _ramp_turn(80, 10**6)
    sudden = [v * (4.0 if i >= 50 else 1.0) for i, v in enumerate(quiet)]
    for series, expect in ((quiet, None), (sudden, 100)):
        firsts = []
        for lag in (0, 8):
            detector = EarlyWarningDetector(DetectorConfig(signals={"loss": "both"}, turn_lag=lag))
            steps = [a.step for i, v in enumerate(series) for a in detector.update(2 * i, {"update/turn": v})]
            firsts.append(steps[0] if steps else None)
        assert firsts == [expect, expect]


def _signals(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """``update/size`` quiet; ``update/turn`` rising ×3 over 24 steps from the fault on in ``grad_ascent`` runs."""
    level = 0.3
    if spec.scenario == "grad_ascent" and step > FAULT:
        level *= 1.0 + 2.0 * min(1.0, (step - FAULT) / 24)
    return {"update/size": 1e-3 * math.exp(rng.gauss(0, 0.05)), "update/turn": level * math.exp(rng.gauss(0, 0.03))}


def test_calibration_replay_and_evaluate_score_the_second_lag(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="T13-healthy"):
        study13.evaluate(tmp_path)
    for seed, model in ((10, "M3"), (11, "G2")):
        write_run(tmp_path, RunSpec("healthy", seed, 2 * PROBES, model=model, part="T13-healthy"), PROBES, 10**9,
                  False, _signals)
    spec = RunSpec("grad_ascent", 20, 2 * PROBES, fault_step=FAULT, model="M1", part="T13-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, _signals)
    replay = study13.calibration_replay(load_set(tmp_path, ("T13-healthy", "T13-faults")))
    assert replay[study13.STUDY12]["in_time"] == 0 and replay[study13.SHIPPED]["in_time"] == 1
    assert replay[study13.SHIPPED]["healthy_alarmed"] == [] and list(replay["first_alarm_differs"]) == [spec.name]
    table = study13.calibration_table(replay)
    assert f"| {study13.SHIPPED} | 0/2 | 1/1 |" in table and f"{spec.name} (None → " in table
    results = study13.evaluate(tmp_path)
    ours = results["detectors"][f"spinal: {study13.SHIPPED}"]
    assert ours["grad_ascent"]["detected_in_time"] == 1 and ours["healthy"]["runs_with_false_alarm"] == 0
    assert results["detectors"][f"spinal: {study13.STUDY12}"]["grad_ascent"]["detected_in_time"] == 0
