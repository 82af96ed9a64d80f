"""Study 14's run list and pinned detector, the reading at the log in the replay, and the calibration replay and the
evaluation end to end on small synthetic run folders (no training)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from studies import scenarios, study13, study14
from studies.replay import load, observations
from studies.scenarios import RunSpec
from studies.study2 import load_set
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 90
FAULT = 120  # a reading step: the flipped batch is logged at 120 and read with it since study 14
ONSET = 150


def test_t14_is_the_protocols_and_new() -> None:
    test = scenarios.study14_test_set()
    healthy = [r for r in test if not r.is_fault]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T14-healthy", scenarios.STUDY11_MODELS)
                       for s in range(2800, 2832)]
    faults = [r for r in test if r.is_fault]
    assert [r.scenario for r in faults] == [f for f in ("label_flip", "label_noise_ramp", "lr_ramp") for _ in range(8)]
    assert [r.seed for r in faults] == [*range(2900, 2908), *range(2910, 2918), *range(2920, 2928)]
    assert all(130 <= r.fault_step <= 160 and r.part == "T14-faults" for r in faults)
    earlier = [*scenarios.study11_test_set(), *scenarios.study12_test_set(), *scenarios.study12_rollback_set(),
               *scenarios.study13_test_set()]
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    script = study_script(14)
    assert script.specs_of("train-test") == test
    assert [(r.scenario, r.max_steps) for r in script.specs_of("train-test", quick=True)] == [
        ("healthy", 30), *((family, 30) for family in scenarios.STUDY14_FAULTS)]


def test_t14_runs_the_librarys_defaults() -> None:
    assert study14.study14_detector() == DetectorConfig() == SpinalConfig().detector
    assert study14.study14_detector().decisive_factor == study14.DECISIVE_FACTOR > 0
    assert study13.study13_detector().decisive_factor == 0.0  # pinned as it ran
    settings = study14.settings_of(scenarios.study14_test_set()[0])
    assert settings.interval == SpinalConfig().interval and not settings.watch_probe_pairs
    assert settings.eval_every == 0 and study14.settings_of(scenarios.study14_test_set()[-1]).eval_every == 2


def _flip_log(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """TRL's chosen log-prob: quiet at −1, −8 from the fault step on in ``label_flip`` runs (swapped pairs)."""
    flipped = spec.scenario == "label_flip" and step >= FAULT
    return {"logps/chosen": (-8.0 if flipped else -1.0) + rng.gauss(0, 0.05)}


def test_the_replay_reads_a_step_with_its_own_log_in_runs_recorded_so(tmp_path: Path) -> None:
    spec = RunSpec("label_flip", 30, 2 * PROBES, fault_step=FAULT, model="M1", part="T14-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, update_signals, _flip_log, metrics_at_step=True)
    run = load(tmp_path / spec.name)
    assert run.metrics_at_step
    fed = {step: signals["logps/chosen"] for step, signals, _ in observations(run) if "logps/chosen" in signals}
    logged = {int(r["step"]): r["logps/chosen"] for r in run.logs}
    assert fed[FAULT] == logged[FAULT]  # the reading at the fault step sees that step's log
    assert {step: fed[step] for step in fed} == {step: logged[step] for step in fed}
    before = {step: s["logps/chosen"] for step, s, _ in observations(replace(run, metrics_at_step=False))
              if "logps/chosen" in s}
    assert before[FAULT] == logged[FAULT - 1]  # the callback before study 14: the step before's log


def test_calibration_replay_and_evaluate_answer_a_flip_at_its_first_reading(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="T14-healthy"):
        study14.evaluate(tmp_path)
    for seed, model in ((10, "M3"), (11, "G2")):
        write_run(tmp_path, RunSpec("healthy", seed, 2 * PROBES, model=model, part="T14-healthy"), PROBES, 10**9,
                  False, update_signals, _flip_log, metrics_at_step=True)
    spec = RunSpec("label_flip", 20, 2 * PROBES, fault_step=FAULT, model="M1", part="T14-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, update_signals, _flip_log, metrics_at_step=True)
    replay = study14.calibration_replay(load_set(tmp_path, ("T14-healthy", "T14-faults")))
    # study 13 as it ran: the flip read one step late (122, 124: two exceedances) → 124; at the log → 122; decisive: 120
    assert replay[study14.STUDY13]["first_alarm"] == {spec.name: FAULT + 4}
    assert replay[study14.AT_LOG]["first_alarm"] == {spec.name: FAULT + 2}
    assert replay[f"{study14.AT_LOG}, decisive factor 2"]["first_alarm"] == {spec.name: FAULT}
    assert all(replay[name]["healthy_alarmed"] == [] for name in replay
               if name not in ("onsets", "families", study14.LARGEST))
    largest = replay[study14.LARGEST]  # the fault-free runs stay below every threshold, single or two in a row
    assert set(largest) == {f"{t}, {k}" for t in ("trend_break", "variance_burst") for k in ("single", "two in a row")}
    assert all(value is not None and 0.0 <= value < 1.0 for value in largest.values())
    assert largest["trend_break, single"] >= largest["trend_break, two in a row"]
    table = study14.calibration_table(replay)
    assert f"{study14.LARGEST} (fraction of the threshold): trend_break, single " in table
    assert f"| {study14.STUDY13} | 0/2 | 1/1 | 1/1 · {ONSET - FAULT - 4} |" in table
    results = study14.evaluate(tmp_path)
    ours, old = (results["detectors"][f"spinal: {name}"] for name in (study14.SHIPPED, study14.STUDY13))
    assert ours["label_flip"]["detected_in_time"] == 1 and ours["healthy"]["runs_with_false_alarm"] == 0
    assert ours["label_flip"]["median_in_time_lead"] == ONSET - FAULT
    assert old["label_flip"]["median_in_time_lead"] == ONSET - FAULT - 4
