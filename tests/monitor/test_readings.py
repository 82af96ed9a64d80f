"""Readings between probes: the forward-free signals and the trainer's metrics every ``signal_interval`` steps,
the probe forward every ``interval``; what they write, what the detector sees, and that a trace file of
readings calibrates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from spinal_callback import SpinalConfig, SpinalMonitor
from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import AlertReason, EarlyWarningDetector
from spinal_callback.sinks.jsonl import TraceWriter, read_trace_file
from spinal_callback.tools.calibrate import observations_from_records
from tests.conftest import tiny_causal_lm

PAIRS = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 10], "rejected_ids": [11, 12, 13]} for _ in range(3)]


def test_reading_interval_defaults_and_validation() -> None:
    assert SpinalConfig().interval == 50 and SpinalConfig().reading_interval == 2
    assert SpinalConfig(interval=2).reading_interval == 2
    assert SpinalConfig(interval=5).reading_interval == 5  # odd: readings at the probes only
    assert SpinalConfig(interval=12, signal_interval=3).reading_interval == 3
    with pytest.raises(ValueError, match=r"`interval` \(5\) must be a multiple of `signal_interval` \(2\)"):
        SpinalConfig(interval=5, signal_interval=2)
    with pytest.raises(ValueError, match="`signal_interval` must be an integer >= 1"):
        SpinalConfig(signal_interval=0)


def _spied(tmp_path: Path, **config: object) -> tuple[torch.nn.Module, SpinalMonitor, Path, list[tuple[int, dict]]]:
    """A tiny model and its monitor writing ``tmp_path/trace.jsonl``, with every detector input recorded."""
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, **config))  # type: ignore[arg-type]
    path = tmp_path / "trace.jsonl"
    monitor.setup(model, records=PAIRS, trace_writer=TraceWriter(path))
    fed: list[tuple[int, dict]] = []
    decide = monitor.guard.decide

    def spy(step: int, signals: dict, *args: object) -> object:
        fed.append((step, dict(signals)))
        return decide(step, signals, *args)

    monitor.guard.decide = spy  # type: ignore[method-assign]
    return model, monitor, path, fed


def _run(tmp_path: Path, steps: int, metrics: dict[str, float] | None = None,
         **config: object) -> tuple[SpinalMonitor, list[dict], list[tuple[int, dict]]]:
    model, monitor, path, fed = _spied(tmp_path, **config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ids = torch.randint(0, 32, (2, 8))
    for step in range(steps + 1):
        if step:
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if metrics is not None and monitor.due(step):
            monitor.observe_metrics({k: v + step for k, v in metrics.items()})
        monitor.on_step(step, model)
    monitor.close()
    return monitor, read_trace_file(path), fed


def test_readings_between_probes_feed_update_signals_and_metrics_without_a_forward(tmp_path: Path) -> None:
    monitor, records, fed = _run(tmp_path, 12, {"logps/chosen": -3.0}, interval=6)
    kinds = [(r["type"], r["step"]) for r in records]
    assert kinds == [("trace", 0), ("signals", 2), ("signals", 4), ("trace", 6), ("signals", 8), ("signals", 10),
                     ("trace", 12)]
    assert monitor.probes_done == 3
    readings = [r for r in records if r["type"] == "signals"]
    assert all(set(r["signals"]) == {"update/size", "update/turn"} or set(r["signals"]) == {"update/size"}
               for r in readings)
    assert all(math.isfinite(r["signals"]["update/size"]) for r in readings)
    assert [r["metrics"] for r in readings] == [{"logps/chosen": -3.0 + s} for s in (2, 4, 8, 10)]
    assert [step for step, _ in fed] == [0, 2, 4, 6, 8, 10, 12]
    assert all(not any(k.startswith(("pairs/", "head/", "band/")) for k in signals)
               for step, signals in fed if step % 6)
    assert all("pairs/logp_chosen" in signals for step, signals in fed if step % 6 == 0)
    # what the trace file says is what the detector was fed
    replayed = observations_from_records(records)
    assert [(step, signals) for step, signals, _, _ in replayed] == fed


def test_interval_equal_to_the_reading_interval_writes_only_traces(tmp_path: Path) -> None:
    _, records, fed = _run(tmp_path, 4, interval=2)
    assert [(r["type"], r["step"]) for r in records] == [("trace", 0), ("trace", 2), ("trace", 4)]
    assert [step for step, _ in fed] == [0, 2, 4]


def test_a_probe_that_meets_non_finite_activations_alerts_under_the_default_detector(tmp_path: Path) -> None:
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=2))
    monitor.setup(model, records=PAIRS)
    assert "pairs/logp_chosen" not in monitor.config.detector.signals  # not watched since study 12
    monitor.on_step(0, model)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match="NonFiniteActivations"):
        outcome = monitor.on_step(2, model)
    assert outcome is not None and outcome.alerts
    assert {a.reason for a in outcome.alerts} == {AlertReason.NON_FINITE}
    assert {a.signal for a in outcome.alerts} >= {"pairs/logp_chosen", "head/log_z"}


def test_finite_signals_get_no_other_test_and_their_state_round_trips() -> None:
    config = DetectorConfig(signals={"logps/chosen": "both"}, warmup=3)
    det = EarlyWarningDetector(config)
    for step in range(40):  # a huge jump on a finite-only signal: no trend break
        assert det.update(step, {"pairs/margin": 1.0 if step < 30 else 1e6, "logps/chosen": -1.0 - 0.01 * step}) == []
    again = EarlyWarningDetector(config)
    again.load_state_dict(json.loads(json.dumps(det.state_dict())))
    alerts = again.update(40, {"pairs/margin": math.nan})
    assert [(a.reason, a.signal) for a in alerts] == [(AlertReason.NON_FINITE, "pairs/margin")]
    assert again.update(41, {"pairs/margin": math.inf}) == []  # once per episode
    quiet = EarlyWarningDetector(DetectorConfig(signals={"logps/chosen": "both"}, finite_signals=()))
    quiet.update(0, {"pairs/margin": 1.0})
    assert quiet.update(1, {"pairs/margin": math.nan}) == []


class _Recorder:
    """A stand-in TensorBoard sink that records every scalar write."""

    def __init__(self) -> None:
        from spinal_callback.sinks.tensorboard import TensorBoardSink

        self.writes: list[tuple[int, dict[str, float]]] = []
        self._sink = TensorBoardSink(None, log_scalars=lambda values, step: self.writes.append((step, dict(values))))

    def __getattr__(self, name: str) -> object:
        return getattr(self._sink, name)


def test_a_reading_is_one_scalar_write_with_its_scores_and_markers(tmp_path: Path) -> None:
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=4))
    sink = _Recorder()
    monitor.setup(model, records=PAIRS, sink=sink)  # type: ignore[arg-type]
    for step in range(3):
        monitor.on_step(step, model)
    at_2 = [values for step, values in sink.writes if step == 2]
    assert len(at_2) == 1
    assert {"spinal/update/size", "spinal/alerts/marker", "spinal/rollbacks/marker"} <= set(at_2[0])
    monitor.read(3, model, defer_scalars=True)  # held for a guard outcome that never comes: close writes it
    assert not [values for step, values in sink.writes if step == 3]
    monitor.close()
    written = [values for step, values in sink.writes if step == 3]
    assert len(written) == 1 and "spinal/update/size" in written[0]


def test_a_failed_probe_still_feeds_and_records_the_reading(tmp_path: Path) -> None:
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=4))
    path = tmp_path / "trace.jsonl"
    monitor.setup(model, records=PAIRS, trace_writer=TraceWriter(path))
    fed: list[tuple[int, dict]] = []
    decide = monitor.guard.decide
    monitor.guard.decide = lambda step, signals, *a: fed.append((step, dict(signals))) or decide(step, signals, *a)

    def oom(policy: torch.nn.Module) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    for step in (0, 2):
        monitor.on_step(step, model)
    monitor._measure = oom  # type: ignore[method-assign,assignment]
    monitor.observe_metrics({"logps/chosen": -2.0})
    with pytest.warns(RuntimeWarning, match="probe at step 4 failed"):
        monitor.on_step(4, model)
    monitor.close()
    assert fed[-1][0] == 4 and fed[-1][1]["logps/chosen"] == -2.0 and "update/size" in fed[-1][1]
    last = read_trace_file(path)[-1]
    assert (last["type"], last["step"], last["metrics"]) == ("signals", 4, {"logps/chosen": -2.0})


def _logged_every_step(tmp_path: Path, steps: int,
                       **config: object) -> tuple[SpinalMonitor, list[dict], list[tuple[int, dict]], list]:
    """A trainer that logs every step, in HF's order: the step's reading (if due) then its log (``on_log``)."""
    model, monitor, path, fed = _spied(tmp_path, interval=4, **config)
    outcomes = []
    for step in range(steps + 1):
        if step:
            monitor.observe_metrics({"logps/chosen": -1.0 - step, "loss": 0.7})
        monitor.on_step(step, model)
        outcomes.append(monitor.on_log(step))
    monitor.close()
    return monitor, read_trace_file(path), fed, outcomes


def test_read_every_log_feeds_each_log_at_its_own_step_once(tmp_path: Path) -> None:
    assert SpinalConfig().read_every_log  # the default since study 15
    monitor, records, fed, outcomes = _logged_every_step(tmp_path, 6)
    assert [step for step, _ in fed] == [0, 1, 2, 3, 4, 5, 6]
    assert all(signals.get("logps/chosen") == -1.0 - step for step, signals in fed if step)  # its own log, once
    assert all(set(signals) == {"logps/chosen", "loss"} for step, signals in fed if step % 2)  # metrics alone
    assert [outcome is not None for outcome in outcomes] == [False, True, False, True, False, True, False]
    only = [r for r in records if r["type"] == "signals" and not r["signals"]]
    assert [(r["step"], r["metrics"]["logps/chosen"]) for r in only] == [(1, -2.0), (3, -4.0), (5, -6.0)]
    state = monitor.guard.detector.state_dict()["signals"]["logps/chosen"]
    assert len(state["history"]) == 6  # every logged value observed
    replayed = observations_from_records(records)  # the trace file is what the detector was fed
    assert [(step, signals.get("logps/chosen")) for step, signals, _, _ in replayed] == [
        (step, signals.get("logps/chosen")) for step, signals in fed]


def test_without_read_every_log_a_log_waits_for_the_next_reading(tmp_path: Path) -> None:
    _, records, fed, outcomes = _logged_every_step(tmp_path, 6, read_every_log=False)  # as up to study 14
    assert [step for step, _ in fed] == [0, 2, 4, 6] and outcomes == [None] * 7
    assert [signals["logps/chosen"] for step, signals in fed if step] == [-3.0, -5.0, -7.0]  # the latest log wins
    assert not [r for r in records if r["type"] == "signals" and not r["signals"]]


def test_a_log_the_detector_does_not_watch_is_no_observation(tmp_path: Path) -> None:
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=4, read_every_log=True))
    monitor.setup(model, records=PAIRS)
    monitor.on_step(0, model)
    monitor.observe_metrics({"eval_loss": 0.5, "train_runtime": 12.0})
    assert monitor.on_log(1) is None
    monitor.observe_metrics({"rewards/margins": 0.1})
    assert monitor.on_log(1) is not None
    with pytest.raises(ValueError, match="`read_every_log` must be True or False"):
        SpinalConfig(read_every_log="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("signal_interval", "size_from", "turn_from"), [(2, 50, 90), (5, 125, 225)])
def test_the_update_tests_arm_after_the_readings_the_warm_up_counts(tmp_path: Path, signal_interval: int,
                                                                     size_from: int, turn_from: int) -> None:
    # the steps docs/usage.md and the signal_interval help give (a reading at step 0, as the callbacks make): the
    # warm-up (24 observations) counts readings, the size needs one reading before it, the turn TURN_WINDOW + 1
    model, monitor, _, _ = _spied(tmp_path, signal_interval=signal_interval, update_coordinates=256)
    detector, warmup = monitor.guard.detector, monitor.guard.detector.config.warmup
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ids = torch.randint(0, 32, (2, 8))
    armed: dict[str, int] = {}
    for step in range(turn_from + 1):
        if step:
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        monitor.on_step(step, model)
        if step % signal_interval == 0:
            counts = {name: state["count"] for name, state in detector.state_dict()["signals"].items()}
            armed.update({name: step for name, count in counts.items() if count > warmup and name not in armed})
    monitor.close()
    assert armed == {"update/size": size_from, "update/turn": turn_from}
