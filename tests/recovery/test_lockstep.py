"""Ranks in lockstep: two in-process "ranks" (threads) run the guard's collectives against each other.

Every snapshot and restore must call the same collectives in the same order on every rank whatever failed
where (a rank skipping one makes the other time out here, and hang under torch.distributed), and leave the
ranks with identical snapshot indexes and weights.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spinal_callback.recovery.guard import AlertGuard, GuardOutcome
from spinal_callback.recovery.rollback import RollbackManager
from spinal_callback.recovery.sync import RankSync

from .helpers import SNAPSHOT, alert_decision, make_guard, make_handles, same, train_step, weights


class _Exchange:
    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world, timeout=20)
        self.slots: list[Any] = [None] * world


class ThreadSync:
    """:class:`RankSync` between threads; records the collectives it was asked for."""

    def __init__(self, rank: int, exchange: _Exchange) -> None:
        self.rank, self.exchange = rank, exchange
        self.calls: list[str] = []

    def _gather(self, value: Any) -> list[Any]:
        self.exchange.slots[self.rank] = value
        self.exchange.barrier.wait()
        values = list(self.exchange.slots)
        self.exchange.barrier.wait()
        return values

    def broadcast(self, obj: Any) -> Any:
        self.calls.append("broadcast")
        return self._gather(obj)[0]

    def all_ok(self, ok: bool) -> bool:
        self.calls.append("all_ok")
        return all(self._gather(bool(ok)))


def run_ranks(fn: Callable[[int, ThreadSync], Any], world: int = 2) -> list[Any]:
    """Run ``fn(rank, sync)`` on ``world`` threads; re-raise the first error."""
    exchange = _Exchange(world)
    syncs = [ThreadSync(rank, exchange) for rank in range(world)]
    results: list[Any] = [None] * world
    errors: list[BaseException] = []

    def target(rank: int) -> None:
        try:
            results[rank] = fn(rank, syncs[rank])
        except BaseException as exc:
            errors.append(exc)
            exchange.barrier.abort()

    threads = [threading.Thread(target=target, args=(rank,)) for rank in range(world)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a rank hung"
    if errors:
        raise errors[0]
    assert syncs[0].calls == syncs[1].calls  # the same collectives, in the same order
    return results


def _ranks(tmp_path: Path, keep: int = 2) -> list[tuple[AlertGuard, Any]]:
    """Rank 0 keeps disk snapshots, rank 1 memory ones (as the monitor sets them up); same start."""
    guards = [make_guard(storage="disk", snapshot_dir=str(tmp_path / "snaps"), keep=keep), make_guard(keep=keep)]
    return [(guard, make_handles()) for guard in guards]


def _steps(guard: AlertGuard) -> list[int]:
    assert guard.rollback is not None
    return guard.rollback.store.steps()


def test_a_snapshot_failing_on_rank_zero_is_dropped_on_every_rank(tmp_path: Path) -> None:
    ranks = _ranks(tmp_path)
    directory = tmp_path / "snaps"

    def rank_run(rank: int, sync: RankSync) -> dict:
        guard, handles = ranks[rank]
        out: dict = {"outcomes": {}}
        for step in range(8):
            if step == 4 and rank == 0:  # rank 0's snapshot folder is replaced by a file
                directory.rename(tmp_path / "aside")
                directory.write_text("a file")
            if step == 5 and rank == 0:
                directory.unlink()
                (tmp_path / "aside").rename(directory)
            if guard.wants_snapshot(step):
                out["outcomes"][step] = guard.act(step, SNAPSHOT, handles, sync)
                out.setdefault("steps", {})[step] = _steps(guard)
            train_step(handles, step)
        out["rollback"] = guard.act(8, alert_decision(8, onset=8), handles, sync)
        out["weights"] = weights(handles)
        return out

    results = run_ranks(rank_run)
    for rank, result in enumerate(results):
        failed: GuardOutcome = result["outcomes"][4]
        assert not failed.snapshot and failed.failure is not None, rank
        assert result["steps"] == {0: [0], 2: [0, 2], 4: [0, 2], 6: [2, 6]}, rank  # keep=2: no eviction at 4
        assert ranks[rank][0].failures == 1
        assert result["rollback"].rollback.to_step == 6
    assert "SnapshotWriteError" in results[0]["outcomes"][4].failure
    assert "it failed on another rank" in results[1]["outcomes"][4].failure
    assert same(results[0]["weights"], results[1]["weights"])
    assert _steps(ranks[0][0]) == _steps(ranks[1][0]) == [2, 6]


def test_rank_zero_cannot_read_its_newest_snapshot_and_every_rank_restores_the_older_one(tmp_path: Path) -> None:
    ranks = _ranks(tmp_path, keep=3)

    def rank_run(rank: int, sync: RankSync) -> tuple[GuardOutcome, bool]:
        guard, handles = ranks[rank]
        taken = {}
        for step in range(6):
            if guard.wants_snapshot(step):
                assert guard.act(step, SNAPSHOT, handles, sync).snapshot
                taken[step] = weights(handles)
            train_step(handles, step)
        if rank == 0:
            assert guard.rollback is not None
            path = guard.rollback.store.path(4)
            assert path is not None
            Path(path).write_bytes(b"corrupted by something else")
        outcome = guard.act(6, alert_decision(6, onset=6), handles, sync)
        return outcome, same(weights(handles), taken[2])

    results = run_ranks(rank_run)
    for rank, (outcome, restored_two) in enumerate(results):
        assert outcome.rollback is not None and outcome.rollback.to_step == 2 and restored_two
        assert outcome.failure is not None and ranks[rank][0].failures == 1  # the lost snapshot is reported
        assert "reading back the snapshot(s) of step(s) [4] at step 6 failed (step 4: " in outcome.failure
    assert _steps(ranks[0][0]) == _steps(ranks[1][0]) == [0, 2]


@pytest.mark.parametrize("phase", ["prepare", "apply"])
def test_a_restore_failing_on_one_rank_restores_nothing_anywhere(tmp_path: Path, monkeypatch, phase: str) -> None:
    ranks = _ranks(tmp_path)
    manager = ranks[1][0].rollback
    assert manager is not None
    original = getattr(RollbackManager, f"{phase}_rollback")

    def fail_on_rank_one(self: RollbackManager, *args: Any, **kwargs: Any) -> Any:
        if self is manager:
            raise OSError("snapshot unreadable on rank 1")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RollbackManager, f"{phase}_rollback", fail_on_rank_one)

    def rank_run(rank: int, sync: RankSync) -> tuple[GuardOutcome, bool]:
        guard, handles = ranks[rank]
        for step in range(4):
            if guard.wants_snapshot(step):
                guard.act(step, SNAPSHOT, handles, sync)
            train_step(handles, step)
        before = weights(handles)
        return guard.act(4, alert_decision(4, onset=4), handles, sync), same(weights(handles), before)

    results = run_ranks(rank_run)
    for rank, (outcome, unchanged) in enumerate(results):
        guard = ranks[rank][0]
        assert guard.rollback is not None
        assert outcome.rollback is None and outcome.failure is not None
        assert guard.failures == 1 and guard.rollback.rollbacks == 0 and _steps(guard) == [0, 2]
        if phase == "prepare":  # nobody touched anything
            assert unchanged and not outcome.stop
        elif rank == 0:  # rank 0 restored, rank 1 did not: the replicas may differ, so training stops
            assert outcome.stop and "applied on some ranks only" in outcome.message
            assert "training stops" in outcome.failure
    assert "OSError: snapshot unreadable on rank 1" in results[1][0].failure
    assert "it failed on another rank" in results[0][0].failure


def test_rank_zero_failing_to_prepare_tells_every_rank_why(tmp_path: Path) -> None:
    ranks = _ranks(tmp_path)
    other = make_handles(hidden=9)  # rank 0 restores into a model its snapshots do not fit

    def rank_run(rank: int, sync: RankSync) -> GuardOutcome:
        guard, handles = ranks[rank]
        for step in range(4):
            if guard.wants_snapshot(step):
                guard.act(step, SNAPSHOT, handles, sync)
            train_step(handles, step)
        return guard.act(4, alert_decision(4, onset=4), other if rank == 0 else handles, sync)

    results = run_ranks(rank_run)
    assert all(o.rollback is None and o.failure is not None for o in results)
    assert "it failed on rank 0: SnapshotMismatchError" in results[1].failure
    assert ranks[0][0].failures == ranks[1][0].failures == 1


def test_rank_zero_lost_its_snapshot_files_and_every_rank_drops_them(tmp_path: Path) -> None:
    ranks = _ranks(tmp_path, keep=3)

    def rank_run(rank: int, sync: RankSync) -> GuardOutcome:
        guard, handles = ranks[rank]
        for step in range(6):
            if guard.wants_snapshot(step):
                guard.act(step, SNAPSHOT, handles, sync)
            train_step(handles, step)
        if rank == 0:
            for path in (tmp_path / "snaps").iterdir():
                path.write_bytes(b"")  # truncated by something else
        return guard.act(6, alert_decision(6, onset=6), handles, sync)

    results = run_ranks(rank_run)
    for rank, outcome in enumerate(results):
        assert outcome.rollback is None and ranks[rank][0].failures == 1
        assert outcome.failure is not None and "step(s) [0, 2, 4] at step 6 failed (step 0: EOFError" in outcome.failure
    assert _steps(ranks[0][0]) == _steps(ranks[1][0]) == []  # rank 0's decision: nothing to restore
