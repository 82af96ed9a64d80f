"""SpinalMonitor without a framework: typed probe results, failures on any torch, the schedule, the session."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")

from spinal_callback import SpinalConfig, SpinalMonitor
from spinal_callback.monitor.probing import NonFiniteActivations, is_out_of_memory
from spinal_callback.monitor.schedule import ProbeSchedule
from spinal_callback.monitor.session import MonitorSession
from tests.conftest import tiny_causal_lm

PAIRS = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 10], "rejected_ids": [11, 12, 13]} for _ in range(3)]


def _monitor(**config: object) -> tuple[SpinalMonitor, torch.nn.Module]:
    model = tiny_causal_lm(num_layers=4)
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, **config))  # type: ignore[arg-type]
    monitor.setup(model, records=PAIRS)
    return monitor, model


def test_probe_returns_a_typed_result() -> None:
    monitor, model = _monitor()
    result = monitor.probe(0, model)
    assert result.failure is None and result.trace is not None and result.step == 0
    assert result.trace.num_layers == 4 and result.seconds > 0
    assert monitor.last_trace is result.trace and monitor.probes_done == 1


def test_non_finite_activations_are_a_typed_failure_and_a_detector_signal() -> None:
    monitor, model = _monitor(interval=1, trace_interval=0)
    monitor.on_step(0, model)  # a finite baseline
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match="NonFiniteActivations"):
        result = monitor.probe(1, model)
    assert result.trace is None and result.failure is not None and result.failure.non_finite
    assert isinstance(result.failure.error, NonFiniteActivations) and result.failure.error.layers == [2, 3, 4]
    with pytest.warns(RuntimeWarning):
        outcome = monitor.on_step(2, model)
    assert outcome is not None and [a.reason.value for a in outcome.alerts][:1] == ["non_finite"]


def test_out_of_memory_is_recognised_without_torch_out_of_memory_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch < 2.5 has no ``torch.OutOfMemoryError``: the failure path must not raise inside itself."""
    monitor, model = _monitor()
    monkeypatch.delattr(torch, "OutOfMemoryError", raising=False)
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(ValueError("bad shape"))

    def oom(policy: torch.nn.Module) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monitor._measure = oom  # type: ignore[method-assign,assignment]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = monitor.probe(5, model)
    assert result.failure is not None and result.failure.out_of_memory
    assert monitor.failures == 1 and any("probe at step 5 failed" in str(w.message) for w in caught)


def test_strict_failure_raises() -> None:
    monitor, model = _monitor(strict=True)

    def boom(policy: torch.nn.Module) -> None:
        raise RuntimeError("boom")

    monitor._measure = boom  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError, match="boom"):
        monitor.probe(0, model)


def test_schedule_probes_each_step_once_and_round_trips() -> None:
    schedule = ProbeSchedule(interval=3, patch_interval=4)
    assert [s for s in range(10) if schedule.probe_due(s)] == [0, 3, 6, 9]
    assert [s for s in range(10) if schedule.patch_due(s)] == [4, 8]
    schedule.last_probe_step, schedule.last_patch_step = 6, 8
    assert not schedule.probe_due(6) and not schedule.patch_due(8) and schedule.probe_due(9)
    again = ProbeSchedule(interval=3, patch_interval=4)
    again.load_state_dict(schedule.state_dict())
    assert again.state_dict() == {"last_probe_step": 6, "last_reading_step": -1, "last_patch_step": 8}
    assert not ProbeSchedule(interval=2, probe_at_start=False).probe_due(0)


def test_readings_fall_between_probes_and_old_states_resume_at_the_last_probe() -> None:
    schedule = ProbeSchedule(interval=6, reading_interval=2, probe_at_start=False)
    assert [s for s in range(13) if schedule.reading_due(s)] == [2, 4, 6, 8, 10, 12]
    assert [s for s in range(13) if schedule.probe_due(s)] == [6, 12]
    schedule.last_reading_step = 4
    assert not schedule.reading_due(4) and schedule.reading_due(6)
    old = ProbeSchedule(interval=6, reading_interval=2)
    old.load_state_dict({"last_probe_step": 6, "last_patch_step": 0})  # saved before readings existed
    assert old.last_reading_step == 6 and not old.reading_due(6) and old.reading_due(8)
    with pytest.raises(ValueError, match="multiple of the reading interval"):
        ProbeSchedule(interval=5, reading_interval=2)


def test_session_closes_what_it_opened_when_setup_fails(tmp_path: Path) -> None:
    session = MonitorSession(SpinalConfig(num_probe_pairs=2))
    with pytest.raises(ValueError, match="probe pairs"):
        session.start(tiny_causal_lm(), rank_zero=True, log_dir=str(tmp_path / "tb"), records=None)
    assert session.monitor.outputs.sink is None
    assert not session.started and not session.due(0)
    # the trace file was opened and closed again: nothing half-written stays open
    assert session.trace_path == str(tmp_path / "tb" / "spinal_trace.jsonl")


def test_session_step_reads_handles_and_metrics_only_when_due(tmp_path: Path) -> None:
    session = MonitorSession(SpinalConfig(interval=5, num_probe_pairs=3))
    model = tiny_causal_lm(num_layers=3)
    session.start(model, rank_zero=True, log_dir=str(tmp_path / "tb"), records=PAIRS)
    reads: list[int] = []

    def metrics() -> dict[str, float]:
        reads.append(1)
        return {"loss": 0.5}

    def handles() -> object:
        raise AssertionError("handles are only built when something is due")

    assert session.step(3, model, handles, metrics=metrics) is False  # type: ignore[arg-type]
    assert reads == []
    from spinal_callback.recovery.guard import TrainingHandles

    assert session.step(5, model, lambda: TrainingHandles(model=model), metrics=metrics) is False
    assert reads == [1] and session.monitor.schedule.last_probe_step == 5
    session.close()
    records = (tmp_path / "tb" / "spinal_trace.jsonl").read_text().splitlines()
    assert len(records) == 1 and '"step": 5' in records[0]
    assert math.isfinite(session.monitor.last_probe_seconds)
