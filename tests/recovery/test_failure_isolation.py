"""The guard as a failure-isolation boundary: failing snapshots and restores warn and count, never crash."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from spinal_callback.recovery.guard import AlertGuard
from spinal_callback.recovery.rollback import SnapshotMismatchError, SnapshotWriteError

from .helpers import SNAPSHOT, alert_decision, make_guard, make_handles, same, train_step, weights


def _run(guard: AlertGuard, handles, steps: range, taken: dict[int, dict] | None = None) -> None:
    """Train ``steps``, snapshotting every second step through the guard."""
    for step in steps:
        if guard.wants_snapshot(step):
            outcome = guard.act(step, SNAPSHOT, handles)
            assert outcome.snapshot and outcome.failure is None
            if taken is not None:
                taken[step] = weights(handles)
        train_step(handles, step)


def _block_directory(directory: Path) -> Path:
    """Move the snapshot folder aside and put a plain file in its place; return where it went."""
    aside = directory.with_name(directory.name + ".aside")
    shutil.move(str(directory), str(aside))
    directory.write_text("not a folder any more")
    return aside


def test_snapshot_dir_replaced_by_a_file_warns_counts_and_keeps_earlier_snapshots(tmp_path, caplog) -> None:
    directory = tmp_path / "snaps"
    guard = make_guard(storage="disk", snapshot_dir=str(directory))
    handles = make_handles()
    taken: dict[int, dict] = {}
    _run(guard, handles, range(4), taken)
    assert guard.rollback is not None and guard.rollback.store.steps() == [0, 2]

    aside = _block_directory(directory)
    with pytest.warns(RuntimeWarning, match=r"snapshot at step 4 failed \(SnapshotWriteError: .*snapshot_dir"):
        with caplog.at_level(logging.WARNING, logger="spinal_callback"):
            outcome = guard.act(4, SNAPSHOT, handles)
    assert not outcome.snapshot and outcome.failure is not None
    assert "step 4" in outcome.failure and "[0, 2] stay usable" in outcome.failure
    assert "free disk space" in outcome.failure and "training goes on (1 failure(s)" in outcome.failure
    assert outcome.failure in caplog.text
    assert guard.failures == 1 and guard.rollback.store.steps() == [0, 2]
    assert not guard.wants_snapshot(4)  # not retried at the same step (e.g. the next accumulation batch)
    train_step(handles, 4)

    os.unlink(directory)  # the user fixes things: the folder comes back
    shutil.move(str(aside), str(directory))
    outcome = guard.act(5, alert_decision(5, onset=3), handles)
    assert outcome.rollback is not None and outcome.rollback.to_step == 2 and outcome.failure is None
    assert same(weights(handles), taken[2])
    assert guard.failures == 1


def test_snapshot_whose_capture_raises_leaves_the_memory_index_restorable(monkeypatch) -> None:
    guard = make_guard(keep=2)
    handles = make_handles()
    taken: dict[int, dict] = {}
    _run(guard, handles, range(4), taken)

    def out_of_memory() -> dict:
        raise MemoryError("cannot allocate the optimizer state copy")

    monkeypatch.setattr(handles.optimizer, "state_dict", out_of_memory)
    with pytest.warns(RuntimeWarning, match=r"snapshot at step 4 failed \(MemoryError: .*CPU memory"):
        outcome = guard.act(4, SNAPSHOT, handles)
    monkeypatch.undo()
    assert outcome.failure is not None and guard.failures == 1
    assert guard.rollback is not None and guard.rollback.store.steps() == [0, 2]  # keep=2: nothing evicted
    train_step(handles, 4)
    outcome = guard.act(5, alert_decision(5, onset=1), handles)
    assert outcome.rollback is not None and outcome.rollback.to_step == 0
    assert same(weights(handles), taken[0])


def _alien_snapshot(directory: Path) -> None:
    """A disk snapshot of step 0 taken from a wider model, in ``directory``."""
    writer = make_guard(storage="disk", snapshot_dir=str(directory))
    assert writer.act(0, SNAPSHOT, make_handles(hidden=9)).snapshot


def test_snapshot_of_a_different_model_is_refused_and_training_goes_on(tmp_path, caplog) -> None:
    directory = tmp_path / "snaps"
    _alien_snapshot(directory)
    guard = make_guard(storage="disk", snapshot_dir=str(directory))
    handles = make_handles()
    assert guard.rollback is not None and guard.rollback.store.steps() == [0]
    for step in range(3):
        train_step(handles, step)
    before = weights(handles)
    moments = [t.clone() for s in handles.optimizer.state.values() for t in s.values()]
    lr = [g["lr"] for g in handles.optimizer.param_groups]

    with pytest.warns(RuntimeWarning, match=r"rollback to the newest snapshot before step 2 at step 3 failed "
                      r"\(SnapshotMismatchError: .*shape mismatch"):
        with caplog.at_level(logging.WARNING, logger="spinal_callback"):
            outcome = guard.act(3, alert_decision(3, onset=2), handles)
    assert outcome.alerts and outcome.rollback is None and not outcome.stop  # the alert stays reported
    assert outcome.failure is not None and "nothing was restored" in outcome.failure
    assert "another model" in outcome.failure and outcome.failure in caplog.text
    assert (guard.failures, guard.alerts_total, guard.rollback.rollbacks, guard.rollback.history) == (1, 1, 0, [])
    assert guard.rollback.lr_factor == 1.0 and guard.rollback.store.steps() == [0]
    assert same(weights(handles), before)
    assert all(torch.equal(a, b) for a, b in zip(
        [t for s in handles.optimizer.state.values() for t in s.values()], moments))
    assert [g["lr"] for g in handles.optimizer.param_groups] == lr
    train_step(handles, 3)  # training goes on
    assert not same(weights(handles), before)


def test_strict_raises_the_restore_and_snapshot_errors(tmp_path) -> None:
    directory = tmp_path / "snaps"
    _alien_snapshot(directory)
    guard = make_guard(strict=True, storage="disk", snapshot_dir=str(directory))
    handles = make_handles()
    before = weights(handles)
    with pytest.raises(SnapshotMismatchError, match="shape mismatch"):
        guard.act(3, alert_decision(3, onset=2), handles)
    assert same(weights(handles), before) and guard.failures == 1

    _block_directory(directory)
    with pytest.raises(SnapshotWriteError, match="step 4"):
        guard.act(4, SNAPSHOT, handles)
    assert guard.failures == 2


def test_a_restore_that_fails_part_way_is_not_counted_as_a_rollback(monkeypatch) -> None:
    guard = make_guard()
    handles = make_handles()
    _run(guard, handles, range(4))
    assert guard.rollback is not None

    def refuse(state: Any) -> None:
        raise ValueError("loaded state dict contains a parameter group that doesn't match")

    monkeypatch.setattr(handles.optimizer, "load_state_dict", refuse)
    with pytest.warns(RuntimeWarning, match=r"rollback to the snapshot of step 2 at step 4 failed "
                      r"\(ValueError: .*partly restored"):
        outcome = guard.act(4, alert_decision(4, onset=3), handles)
    assert outcome.rollback is None and outcome.failure is not None and not outcome.stop
    assert (guard.failures, guard.rollback.rollbacks, guard.rollback.lr_factor) == (1, 0, 1.0)
    assert guard.rollback.store.steps() == [0, 2]


def test_no_snapshot_and_rollback_limit_are_handled_as_before() -> None:
    guard = make_guard(max_rollbacks=1)
    handles = make_handles()
    with pytest.warns(RuntimeWarning, match="no snapshot was taken before step 3"):
        outcome = guard.act(3, alert_decision(3, onset=3), handles)
    assert outcome.rollback is None and outcome.failure is None and guard.failures == 0
    _run(guard, handles, range(4, 7))
    assert guard.act(7, alert_decision(7, onset=5), handles).rollback is not None
    outcome = guard.act(8, alert_decision(8, onset=7), handles)
    assert outcome.stop and "max_rollbacks=1" in outcome.message and outcome.failure is None


def test_failure_count_round_trips_and_old_states_load() -> None:
    guard = make_guard()
    guard.failures = 3
    state = guard.state_dict()
    assert state["failures"] == 3
    fresh = make_guard()
    fresh.load_state_dict(state)
    assert fresh.failures == 3
    old = {k: v for k, v in state.items() if k != "failures"}  # saved before the counter existed
    older = make_guard()
    older.load_state_dict(old)
    assert older.failures == 0


def test_lightning_fit_survives_a_snapshot_dir_that_becomes_a_file(tmp_path) -> None:
    L = pytest.importorskip("lightning.pytorch")
    from spinal_callback import SpinalConfig, SpinalLightningCallback
    from tests.integrations.test_lightning import _fit

    directory = tmp_path / "snaps"

    class BlockAfterFirstSnapshot(L.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            if trainer.global_step == 1 and directory.is_dir():
                shutil.rmtree(directory)
                directory.write_text("a file where the snapshot folder was")

    config = SpinalConfig(
        interval=1, num_probe_pairs=4, on_alert=("log", "rollback"), detector={"warmup": 5},
        rollback={"snapshot_interval": 2, "keep": 4, "storage": "disk", "snapshot_dir": str(directory)},
    )
    callback = SpinalLightningCallback(config)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = _fit(tmp_path, callback, max_steps=7, enable_checkpointing=False,
                       callbacks=[BlockAfterFirstSnapshot()])
    assert trainer.global_step == 7  # the fit completed
    guard = callback.monitor.guard
    assert guard.rollback is not None and guard.failures == 3  # the snapshots of steps 2, 4 and 6
    assert guard.rollback.store.steps() == [0]
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert sum("snapshot at step" in m and "snapshot_dir" in m for m in messages) == 3
