"""Snapshot and restore in lockstep across ranks, every failure caught and agreed on.

Each function runs on every rank with the same arguments (rank 0's broadcast decision) and calls the
:class:`~spinal_callback.recovery.sync.RankSync` collectives in the same order on every rank, whatever
happened locally, so no rank waits for a collective another rank skipped:

- **Snapshot**: every rank stages its snapshot (rank 0 on disk, the others in memory), then
  ``all_ok``; the snapshot is kept only if every rank stored it, otherwise every rank discards it, so the
  snapshot indexes stay identical.
- **Rollback**, two phases: (a) every rank chooses, loads and checks the snapshot to restore without
  touching live state; rank 0's choice is broadcast (with the steps whose files it could not read back,
  which every rank then drops), and a rank whose own index pointed elsewhere loads rank 0's step instead;
  ``all_ok`` tells whether every rank is ready at that step. (b) Only then does every rank restore; a
  second ``all_ok`` books the rollback everywhere or nowhere. Rank 0's ``RollbackLimitReached`` and
  ``NoSnapshotError`` are decided for every rank through the same broadcast.

The caller (:class:`~spinal_callback.recovery.guard.AlertGuard`) turns a returned :class:`Failure` into a
warning and a counter.
"""

from __future__ import annotations

from dataclasses import dataclass

from spinal_callback.recovery.records import PreparedRollback, RollbackRecord, TrainingHandles
from spinal_callback.recovery.rollback import NoSnapshotError, RollbackLimitReached, RollbackManager
from spinal_callback.recovery.sync import RankSync

__all__ = ["Failure", "LockstepRollback", "rollback_in_lockstep", "snapshot_in_lockstep"]

_ELSEWHERE = "it failed on another rank"


@dataclass(frozen=True)
class Failure:
    """A snapshot or restore that failed on this rank or another one.

    Attributes:
        what: What failed (``"snapshot"``, ``"rollback to the snapshot of step 40"``).
        step: The optimizer step it was attempted at.
        why: This rank's exception, or that it failed on another rank.
        consequence: What state the run is in now.
        advice: What the user can do.
        error: This rank's exception (re-raised with ``strict``), ``None`` when it failed elsewhere.
        goes_on: Training continues (``False``: the guard stops it).
    """

    what: str
    step: int
    why: str
    consequence: str
    advice: str
    error: Exception | None = None
    goes_on: bool = True

    def message(self, count: int, strict: bool = False) -> str:
        """The warning text; ``count`` failures so far, this one included."""
        text = f"spinal: {self.what} at step {self.step} failed ({self.why}); {self.consequence}"
        if strict:
            return f"{text}. {self.advice}"
        going = "training goes on" if self.goes_on else "training stops"
        return (f"{text}; {going} ({count} failure(s) so far). {self.advice} "
                "Set SpinalConfig(strict=True) to raise instead.")


@dataclass
class LockstepRollback:
    """What :func:`rollback_in_lockstep` did; the same on every rank (only ``failure.why`` may differ).

    Attributes:
        record: The rollback made (every rank restored the same snapshot), or ``None``.
        stop: Why training must stop (the rollback limit, or ranks left out of step), or ``None``.
        no_snapshot: The ``NoSnapshotError`` message when rank 0 had nothing to restore, or ``None``.
        failure: Why nothing (or not everything) was restored, or ``None``.
        unreadable: Snapshot files rank 0 could not read back (every rank dropped them; an older snapshot
            was used if there was one), or ``None``.
    """

    record: RollbackRecord | None = None
    stop: str | None = None
    no_snapshot: str | None = None
    failure: Failure | None = None
    unreadable: Failure | None = None


def _why(error: Exception | None, elsewhere: str = _ELSEWHERE) -> str:
    return elsewhere if error is None else f"{type(error).__name__}: {error}"


def snapshot_in_lockstep(manager: RollbackManager, step: int, handles: TrainingHandles,
                         sync: RankSync) -> Failure | None:
    """Take the snapshot of ``step`` on every rank, or on none; ``None`` when it was kept."""
    error: Exception | None = None
    try:
        manager.stage_snapshot(step, handles.model, handles.optimizer, handles.scheduler, handles.scaler)
    except Exception as exc:
        error = exc
    if sync.all_ok(error is None):
        manager.commit_snapshot()
        return None
    manager.discard_snapshot(step)
    store = manager.store
    if error is None:
        advice = "The warning of the failing rank says why."
    elif store.storage == "disk":
        advice = (f"Check the free disk space and that `snapshot_dir` ({store.directory}) is still a writable "
                  "folder.")
    else:
        advice = "Check the free CPU memory (or use storage='disk')."
    return Failure(
        "snapshot", step, _why(error),
        f"no rank keeps it; the snapshots of steps {store.steps()} stay usable", advice, error,
    )


def _unreadable(entries: list, step: int) -> Failure | None:
    if not entries:
        return None
    entries = sorted(entries)
    steps = [s for s, _ in entries]
    return Failure(
        f"reading back the snapshot(s) of step(s) {steps}", step,
        "; ".join(f"step {s}: {why}" for s, why in entries),
        "every rank dropped them (an older snapshot is restored if there is one)",
        "Something else altered or deleted files in `snapshot_dir`: keep that folder for spinal-callback alone.",
    )


def _restore_advice(error: Exception | None) -> str:
    if error is None:
        return "The warning of the failing rank says why."
    return ("Check that `snapshot_dir` holds snapshots of this model and run (a snapshot of another model or "
            "optimizer does not fit) and that its files are readable.")


def rollback_in_lockstep(manager: RollbackManager, step: int, onset_step: int, handles: TrainingHandles,
                         sync: RankSync) -> LockstepRollback:
    """Restore, on every rank, the newest snapshot rank 0 has from before ``onset_step`` — or on none."""
    objects = (handles.model, handles.optimizer, handles.scheduler, handles.scaler)
    prepared: PreparedRollback | None = None
    error: Exception | None = None
    unreadable = len(manager.store.unreadable)
    plan: dict = {}
    try:  # phase (a): choose, load and check; nothing live is touched
        prepared = manager.prepare_rollback(onset_step, *objects)
        plan["to_step"] = prepared.to_step
    except RollbackLimitReached as exc:
        plan["stop"] = str(exc)
    except NoSnapshotError as exc:
        plan["no_snapshot"] = str(exc)
    except Exception as exc:
        error = exc
        plan["error"] = _why(exc)
    plan["unreadable"] = [[s, why] for s, why in manager.store.unreadable[unreadable:]]
    plan = sync.broadcast(plan)
    result = LockstepRollback(unreadable=_unreadable(plan["unreadable"], step))
    for skipped, _ in plan["unreadable"]:  # rank 0 could not read them back: no rank keeps them
        manager.discard_snapshot(skipped)
    if "stop" in plan:
        result.stop = plan["stop"]
        return result
    if "no_snapshot" in plan:
        result.no_snapshot = plan["no_snapshot"]
        return result
    target = plan.get("to_step")
    if target is not None and (prepared is None or prepared.to_step != target):
        prepared, error = None, None  # this rank's index pointed elsewhere: load rank 0's choice
        try:
            prepared = manager.prepare_rollback(onset_step, *objects, to_step=target)
        except Exception as exc:
            error = exc
    what = (f"rollback to the newest snapshot before step {onset_step}" if target is None
            else f"rollback to the snapshot of step {target}")
    ready = prepared is not None and prepared.to_step == target
    if not sync.all_ok(ready):
        elsewhere = f"it failed on rank 0: {plan['error']}" if "error" in plan else _ELSEWHERE
        result.failure = Failure(
            what, step, _why(error, elsewhere), "nothing was restored on any rank and the alert stands",
            _restore_advice(error), error,
        )
        return result
    assert prepared is not None
    error = None
    try:  # phase (b): every rank is ready at the same step
        manager.apply_rollback(prepared, *objects)
    except Exception as exc:
        error = exc
    if sync.all_ok(error is None):
        result.record = manager.commit_rollback(prepared, step=step)
    elif sync.all_ok(error is not None):  # failed everywhere (one process: here)
        result.failure = Failure(
            what, step, _why(error),
            "the restore stopped part-way, so the weights or the optimizer may be partly restored; the alert "
            "stands and no rollback was counted", _restore_advice(error), error,
        )
    else:
        result.stop = (f"spinal: the {what} at step {step} was applied on some ranks only ({_why(error)}); "
                       "their weights may no longer match, so training stops. Resume from the last checkpoint.")
        result.failure = Failure(
            what, step, _why(error), "some ranks restored it and others did not, so the replicas may differ",
            "Resume from the last checkpoint.", error, goes_on=False,
        )
    return result
