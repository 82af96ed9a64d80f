"""Study 15's run list, the replay that feeds every logged value at its own step, and the evaluation end to end on
small synthetic run folders (no training)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("scipy")

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from studies import scenarios, study14, study15
from studies.replay import load, observations
from studies.scenarios import RunSpec
from tests.studies.drivers import study_script
from tests.studies.synthetic_runs import update_signals, write_run

PROBES = 90
FAULT = 121  # an odd step: read every 2 steps, the flipped batch's log is never read with a reading of its own
ONSET = 150


def test_t15_is_the_protocols_and_new() -> None:
    test = scenarios.study15_test_set()
    healthy = [r for r in test if not r.is_fault]
    assert healthy == [scenarios.healthy_test_spec(s, 240, "T15-healthy", scenarios.STUDY11_MODELS)
                       for s in range(3000, 3032)]
    faults = [r for r in test if r.is_fault]
    assert [r.scenario for r in faults] == [f for f in ("label_flip", "label_noise_ramp", "lr_ramp") for _ in range(8)]
    assert [r.seed for r in faults] == [*range(3100, 3108), *range(3110, 3118), *range(3120, 3128)]
    assert all(130 <= r.fault_step <= 160 and r.part == "T15-faults" for r in faults)
    earlier = [*scenarios.study11_test_set(), *scenarios.study12_test_set(), *scenarios.study12_rollback_set(),
               *scenarios.study13_test_set(), *scenarios.study14_test_set()]
    assert not {r.seed for r in earlier} & {r.seed for r in test}
    script = study_script(15)
    assert script.specs_of("train-test") == test
    with pytest.raises(ValueError, match="trains nothing"):
        script.specs_of("evaluate")


def test_t15_trains_with_the_librarys_defaults() -> None:
    assert study14.study14_detector() == DetectorConfig() == SpinalConfig().detector
    assert study15.settings_of(scenarios.study15_test_set()[0]) == study14.settings_of(scenarios.study15_test_set()[0])
    assert study15.settings_of(scenarios.study15_test_set()[-1]).eval_every == 2


def _flip_log(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """TRL's chosen log-prob: quiet at −1, −8 from the fault step on in ``label_flip`` runs (swapped pairs)."""
    flipped = spec.scenario == "label_flip" and step >= FAULT
    return {"logps/chosen": (-8.0 if flipped else -1.0) + rng.gauss(0, 0.05)}


def test_every_log_feeds_each_logged_value_once_at_its_own_step(tmp_path: Path) -> None:
    spec = RunSpec("label_flip", 30, 2 * PROBES, fault_step=FAULT, model="M1", part="T15-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, update_signals, _flip_log, metrics_at_step=True)
    run = replace(load(tmp_path / spec.name), every_log=True)
    fed = observations(run)
    logged = {int(r["step"]): r for r in run.logs}
    reading_steps = {int(r["step"]) for r in run.traces}
    assert [step for step, _, _ in fed] == sorted(reading_steps | set(logged))  # one observation per step, in order
    for step, signals, vectors in fed:
        if step in logged:  # every logged value, at its own step, exactly as logged
            assert all(signals[k] == v for k, v in logged[step].items() if k != "step")
        else:
            assert "logps/chosen" not in signals  # a reading with no log of its own carries no older log
        assert ("update/size" in signals) == (step in reading_steps)  # update signals keep their reading cadence
        assert vectors == {} or step in reading_steps
    as_run = {step for step, signals, _ in observations(replace(run, every_log=False)) if "logps/chosen" in signals}
    assert FAULT not in as_run and FAULT + 1 in as_run  # as the callback runs: the fault's log is never read


def test_evaluate_answers_a_flip_on_an_odd_step_at_its_own_log(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="T15-healthy"):
        study15.evaluate(tmp_path)
    for seed, model in ((10, "M3"), (11, "G2")):
        write_run(tmp_path, RunSpec("healthy", seed, 2 * PROBES, model=model, part="T15-healthy"), PROBES, 10**9,
                  False, update_signals, _flip_log, metrics_at_step=True)
    spec = RunSpec("label_flip", 20, 2 * PROBES, fault_step=FAULT, model="M1", part="T15-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, update_signals, _flip_log, metrics_at_step=True)
    results = study15.evaluate(tmp_path)
    every, as_run = (results["detectors"][f"spinal: {name}"] for name in (study15.EVERY_LOG, study15.AS_RUN))
    assert every["label_flip"]["median_in_time_lead"] == ONSET - FAULT  # read at the fault's own log: decisive
    assert as_run["label_flip"]["median_in_time_lead"] == ONSET - FAULT - 1  # the next reading, a step later
    assert every["healthy"]["runs_with_false_alarm"] == as_run["healthy"]["runs_with_false_alarm"] == 0
    assert results["live"]["fault_runs"] == 1  # the live check is against the detector as it ran
    largest = results["largest_healthy"]
    assert all(value is not None and 0.0 <= value < 1.0 for value in largest.values())
    assert (tmp_path / "results.json").is_file()


def test_metrics_only_records_are_not_readings(tmp_path: Path) -> None:
    """A callback that reads every logged value writes a metrics-only ``"signals"`` record at each log between two
    readings; the replay takes those metrics from the logs, so the record is no reading of its own."""
    spec = RunSpec("healthy", 12, 2 * PROBES, model="M1", part="T15-healthy")
    write_run(tmp_path, spec, PROBES, 10**9, False, update_signals, metrics_at_step=True)
    trace = tmp_path / spec.name / "spinal_trace.jsonl"
    with open(trace, "a") as out:
        out.write('{"type": "signals", "step": 181, "signals": {}, "metrics": {"logps/chosen": -1.0}}\n')
    run = load(tmp_path / spec.name)
    assert len(run.traces) == PROBES and all(int(r["step"]) % 2 == 0 for r in run.traces)


def test_the_driver_says_what_is_missing_instead_of_a_traceback(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert study_script(15).main(["evaluate", "--out", str(tmp_path / "t15")]) == 1
    assert "0 finished T15-healthy and 0 T15-faults runs: train the test set first" in capsys.readouterr().err
    assert not (tmp_path / "t15" / "table.md").exists()


def test_the_live_check_compares_the_callbacks_own_alerts_with_the_every_log_replay(tmp_path: Path) -> None:
    spec = RunSpec("label_flip", 20, 2 * PROBES, fault_step=FAULT, model="M1", part="T15-faults")
    write_run(tmp_path, spec, PROBES, ONSET, True, update_signals, _flip_log, metrics_at_step=True)
    with pytest.raises(ValueError, match="without read_every_log"):
        study15.live_check(tmp_path)
    meta_path = tmp_path / spec.name / "run.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "settings": {"read_every_log": True}}))
    with open(tmp_path / spec.name / "spinal_trace.jsonl", "a") as trace:
        trace.write(json.dumps({"type": "alert", "step": FAULT, "reason": "trend_break", "signal": "logps/chosen"}))
    assert load(tmp_path / spec.name).every_log  # a run trained with the field on replays every log
    results = study15.live_check(tmp_path)
    assert results["per_run"] == {spec.name: {"live": FAULT, "replay": FAULT}}
    assert results["fault_runs_same_first_alert"] == results["fault_runs"] == 1
    assert "Same first alert in 1 of 1 runs." in study15.live_table(results)
    assert study15.live_settings_of(spec).read_every_log and not study15.settings_of(spec).read_every_log
    assert [s.seed for s in study_script(15).specs_of("train-live")] == list(range(3100, 3108))


def test_the_replay_feeds_a_sparse_log_once_as_the_monitor_does(tmp_path: Path) -> None:
    """A trainer that logs every 5 steps while the callback reads every 2: each logged value reaches the detector
    once — never again at the readings after it (a repeated value would look like a flat trend)."""
    spec = RunSpec("healthy", 13, 2 * PROBES, model="M1", part="T15-healthy")
    write_run(tmp_path, spec, PROBES, 10**9, False, update_signals, metrics_at_step=True)
    run = load(tmp_path / spec.name)
    run = replace(run, logs=[r for r in run.logs if r["step"] % 5 == 0])
    fed = {step: s["logps/chosen"] for step, s, _ in observations(run) if "logps/chosen" in s}
    logged = {int(r["step"]): r["logps/chosen"] for r in run.logs}
    assert sorted(fed) == sorted(step + step % 2 for step in logged)  # an odd step's log waits for the next reading
    assert all(fed[step + step % 2] == value for step, value in logged.items())
    every = {step: s["logps/chosen"] for step, s, _ in observations(replace(run, every_log=True))
             if "logps/chosen" in s}
    assert every == logged  # read on its own, at its own step
