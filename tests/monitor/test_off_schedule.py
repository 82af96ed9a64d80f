"""Steps off the schedule cost nothing in either adapter: no device sync, no hook, no forward; steps with a reading
but no probe run no forward and no hook."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

pytest.importorskip("lightning.pytorch")
pytest.importorskip("trl")

from spinal_callback import SpinalConfig, SpinalLightningCallback, SpinalTrainerCallback
from tests.integrations.test_lightning import TinyPolicyModule, _fit
from tests.integrations.test_transformers import _trainer


@contextlib.contextmanager
def _counting() -> Iterator[dict[str, int]]:
    """Count ``Tensor.item`` / ``Tensor.tolist`` (host syncs), forward-hook registrations and module
    calls made inside the block."""
    counts = {"sync": 0, "hooks": 0, "forwards": 0}
    originals = {
        "item": torch.Tensor.item, "tolist": torch.Tensor.tolist,
        "hook": nn.Module.register_forward_hook, "call": nn.Module.__call__,
    }

    def counted(key: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    torch.Tensor.item = counted("sync", originals["item"])  # type: ignore[method-assign]
    torch.Tensor.tolist = counted("sync", originals["tolist"])  # type: ignore[method-assign]
    nn.Module.register_forward_hook = counted("hooks", originals["hook"])  # type: ignore[method-assign]
    nn.Module.__call__ = counted("forwards", originals["call"])  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        torch.Tensor.item = originals["item"]  # type: ignore[method-assign]
        torch.Tensor.tolist = originals["tolist"]  # type: ignore[method-assign]
        nn.Module.register_forward_hook = originals["hook"]  # type: ignore[method-assign]
        nn.Module.__call__ = originals["call"]  # type: ignore[method-assign]


class LoggingModule(TinyPolicyModule):
    """Logs its loss, so ``trainer.callback_metrics`` holds a tensor a careless callback would ``.item()``."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.log("train/loss", loss)
        return loss


class CountingLightning(SpinalLightningCallback):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.work: list[tuple[int, dict[str, int]]] = []

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        with _counting() as counts:
            super().on_train_batch_end(trainer, *args)
        self.work.append((trainer.global_step, counts))


class CountingTrainer(SpinalTrainerCallback):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.work: list[tuple[int, dict[str, int]]] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        with _counting() as counts:
            super().on_step_end(args, state, control, **kwargs)
        self.work.append((state.global_step, counts))

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        # a step the trainer logs is read at its log: its work counts for that step
        with _counting() as counts:
            super().on_log(args, state, control, logs, **kwargs)
        step, before = self.work[-1]
        assert step == state.global_step
        self.work[-1] = (step, {key: before[key] + counts[key] for key in before})


def _split(work: list[tuple[int, dict[str, int]]], interval: int) -> tuple[list[dict], list[dict]]:
    on = [c for step, c in work if step % interval == 0]
    off = [c for step, c in work if step % interval != 0]
    return on, off


def test_lightning_does_nothing_off_schedule(tmp_path: Path) -> None:
    callback = CountingLightning(SpinalConfig(interval=4, signal_interval=4, num_probe_pairs=2))
    _fit(tmp_path, callback, LoggingModule(), max_steps=9, enable_checkpointing=False)
    on, off = _split(callback.work, 4)
    assert len(off) == 7 and len(on) == 2
    assert off == [{"sync": 0, "hooks": 0, "forwards": 0}] * 7
    assert all(c["forwards"] > 0 and c["hooks"] > 0 and c["sync"] > 0 for c in on)  # the counters see a probe


def test_lightning_readings_between_probes_run_no_forward(tmp_path: Path) -> None:
    callback = CountingLightning(SpinalConfig(interval=4, num_probe_pairs=2))  # readings every 2 steps by default
    _fit(tmp_path, callback, LoggingModule(), max_steps=9, enable_checkpointing=False)
    by_step = dict(callback.work)
    assert [s for s in by_step if s % 2] and all(by_step[s] == {"sync": 0, "hooks": 0, "forwards": 0}
                                                 for s in by_step if s % 2)
    readings = [by_step[s] for s in by_step if s % 4 == 2]
    assert len(readings) == 2
    assert all(c["forwards"] == 0 and c["hooks"] == 0 and c["sync"] > 0 for c in readings)  # update/size, metrics
    assert all(by_step[s]["forwards"] > 0 for s in by_step if s % 4 == 0)


def test_lightning_with_rollback_reads_nothing_between_snapshots(tmp_path: Path) -> None:
    config = SpinalConfig(interval=4, signal_interval=4, num_probe_pairs=2, on_alert=("log", "rollback"),
                          rollback={"snapshot_interval": 4})
    callback = CountingLightning(config)
    _fit(tmp_path, callback, LoggingModule(), max_steps=9, enable_checkpointing=False)
    _, off = _split(callback.work, 4)
    assert off == [{"sync": 0, "hooks": 0, "forwards": 0}] * 7


def test_trainer_callback_does_nothing_off_schedule(tmp_path: Path) -> None:
    callback = CountingTrainer(SpinalConfig(interval=3, num_probe_pairs=2))
    _trainer(tmp_path, callback, max_steps=7).train()
    on, off = _split(callback.work, 3)
    assert len(off) == 5 and len(on) == 2
    assert off == [{"sync": 0, "hooks": 0, "forwards": 0}] * 5
    assert all(c["forwards"] > 0 and c["hooks"] > 0 for c in on)
