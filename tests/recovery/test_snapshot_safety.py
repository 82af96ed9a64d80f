"""Snapshot files are read with ``torch.load(weights_only=True)`` only: every snapshot ``capture_state`` writes
loads that way, and a crafted file is refused — never unpickled — and skipped by the rollback."""

from __future__ import annotations

import pathlib
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

from spinal_callback.recovery.rollback import NoSnapshotError, RollbackConfig, RollbackManager
from spinal_callback.recovery.snapshots import SnapshotStore, UnsafeSnapshotError
from spinal_callback.recovery.training_state import capture_state, restore_state


class TouchOnUnpickle:
    """Unpickling it creates ``marker``: what a crafted file does instead of something worse."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return pathlib.Path(self.marker).touch, ()


def _run(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optimizer, lr_scheduler.LambdaLR(optimizer, lambda step: 0.9**step)


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: object | None = None) -> None:
    optimizer.zero_grad()
    model(torch.randn(3, 4)).square().sum().backward()
    optimizer.step()
    if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
        scheduler.step(1.0)
    elif scheduler is not None:
        scheduler.step()  # type: ignore[attr-defined]


def _crafted_snapshot(store: SnapshotStore, step: int, marker: Path) -> None:
    """A file under a snapshot name whose unpickling would create ``marker``."""
    model, optimizer, scheduler = _run()
    state = {**capture_state(model, optimizer, scheduler), "meta": {"payload": TouchOnUnpickle(marker)}}
    assert store.directory is not None
    torch.save(state, Path(store.directory) / f"spinal-snapshot-step{step:012d}.pt")


def test_crafted_snapshot_is_refused_and_never_run(tmp_path) -> None:
    marker = tmp_path / "marker"
    store = SnapshotStore("disk", str(tmp_path / "snaps"))
    _crafted_snapshot(store, 100, marker)
    reopened = SnapshotStore("disk", str(tmp_path / "snaps"))
    with pytest.raises(UnsafeSnapshotError, match=r"GLOBAL getattr.*weights_only=False") as caught:
        reopened.load(100)
    assert isinstance(caught.value, pickle.UnpicklingError)  # what callers of load already handle
    assert "step 100" in str(caught.value) and not marker.exists()
    assert reopened.latest_before(200) is None
    assert [step for step, _ in reopened.unreadable] == [100] and "UnsafeSnapshotError" in reopened.unreadable[0][1]
    assert not marker.exists()


def test_rollback_skips_a_crafted_snapshot_for_an_older_good_one(tmp_path) -> None:
    marker = tmp_path / "marker"
    cfg = RollbackConfig(snapshot_interval=1, storage="disk", snapshot_dir=str(tmp_path / "snaps"))
    manager = RollbackManager(cfg)
    model, optimizer, scheduler = _run()
    manager.snapshot(10, model, optimizer, scheduler)
    good = {name: p.detach().clone() for name, p in model.named_parameters()}
    _step(model, optimizer, scheduler)
    manager.snapshot(20, model, optimizer, scheduler)
    _crafted_snapshot(manager.store, 20, marker)  # replaces the file of step 20
    _step(model, optimizer, scheduler)

    record = manager.rollback(25, model, optimizer, scheduler)
    assert record.to_step == 10 and not marker.exists()
    assert all(torch.equal(p, good[name]) for name, p in model.named_parameters())

    only_crafted = RollbackManager(RollbackConfig(snapshot_interval=1, storage="disk",
                                                  snapshot_dir=str(tmp_path / "other")))
    _crafted_snapshot(only_crafted.store, 5, marker)
    only_crafted.store.load_state_dict({"steps": [5]})
    with pytest.raises(NoSnapshotError):  # the guard turns this into a warning
        only_crafted.rollback(8, model, optimizer, scheduler)
    assert not marker.exists()


SCHEDULERS = {
    "lambda": lambda opt: lr_scheduler.LambdaLR(opt, lambda step: 0.9**step),
    "one_cycle": lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20),
    "cyclic": lambda opt: lr_scheduler.CyclicLR(opt, 1e-3, 1e-2, mode="exp_range"),
    "plateau": lambda opt: lr_scheduler.ReduceLROnPlateau(opt),
    "sequential": lambda opt: lr_scheduler.SequentialLR(
        opt, [lr_scheduler.LinearLR(opt), lr_scheduler.CosineAnnealingLR(opt, 10)], milestones=[2]),
    "warm_restarts": lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, 3),
}


@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, torch.optim.SGD, torch.optim.RMSprop])
@pytest.mark.parametrize("scheduler_name", list(SCHEDULERS))
def test_every_captured_snapshot_loads_weights_only(tmp_path, optimizer_cls, scheduler_name) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    kwargs = {"momentum": 0.9} if optimizer_cls is not torch.optim.AdamW else {}
    optimizer = optimizer_cls(model.parameters(), lr=1e-2, **kwargs)
    scheduler = SCHEDULERS[scheduler_name](optimizer)
    scaler = torch.amp.GradScaler("cpu")
    for _ in range(3):
        _step(model, optimizer, scheduler)
    store = SnapshotStore("disk", str(tmp_path / "snaps"))
    store.save(3, capture_state(model, optimizer, scheduler, scaler))
    path = store.path(3)
    assert path is not None
    torch.load(path, weights_only=True)  # plain types only: no allow-list needed

    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    _step(model, optimizer, scheduler)
    restore_state(SnapshotStore("disk", str(tmp_path / "snaps")).load(3), model, optimizer, scheduler, scaler)
    assert all(torch.equal(p, saved[name]) for name, p in model.named_parameters())
