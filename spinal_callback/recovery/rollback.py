"""Automatic rollback to a known-good snapshot when the early-warning detector raises an alert.

:class:`RollbackManager` takes a snapshot (:func:`~spinal_callback.recovery.training_state.capture_state`) every
``snapshot_interval`` steps while no alert episode is open, keeps the newest ``keep`` of them
(:class:`~spinal_callback.recovery.snapshots.SnapshotStore`, CPU memory or disk) and, on an alert, restores the
newest one taken strictly before the estimated onset, scales the learning rate, and counts. Typical use
by the monitor (framework-neutral; the callbacks pass the live objects)::

    manager = RollbackManager(RollbackConfig(snapshot_interval=100, lr_scale=0.5))
    # after each optimizer step, once the detector has seen this step's probe (if any):
    if manager.should_snapshot(step, episode_open=not detector.quiet):
        manager.snapshot(step, model, optimizer, scheduler, scaler)
    # on an alert:
    record = manager.rollback(alert.restore_before, model, optimizer, scheduler, scaler, step=step)
    detector.reset(keep_baseline=True, since_step=alert.onset_step)

Under DDP/FSDP the two halves of each action are called separately so that the ranks can agree in between
(:class:`~spinal_callback.recovery.guard.AlertGuard` does): :meth:`RollbackManager.stage_snapshot`, then
:meth:`~RollbackManager.commit_snapshot` or :meth:`~RollbackManager.discard_snapshot`; and
:meth:`~RollbackManager.prepare_rollback` (load and check, nothing touched), then
:meth:`~RollbackManager.apply_rollback` and :meth:`~RollbackManager.commit_rollback`.

The learning-rate scale compounds over rollbacks: after n rollbacks the run trains at ``lr_scale**n`` of
its original schedule, whichever snapshot was restored (each snapshot records the factor in force when it
was taken).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from spinal_callback.config.rollback import RollbackConfig
from spinal_callback.recovery.records import PreparedRollback, RollbackRecord
from spinal_callback.recovery.snapshots import SnapshotStore, SnapshotWriteError
from spinal_callback.recovery.training_state import SnapshotMismatchError, capture_state, restore_state
from spinal_callback.recovery.training_state import _validate as validate_snapshot

__all__ = [
    "NoSnapshotError",
    "PreparedRollback",
    "RollbackConfig",
    "RollbackLimitReached",
    "RollbackManager",
    "RollbackRecord",
    "SnapshotMismatchError",
    "SnapshotStore",
    "SnapshotWriteError",
    "capture_state",
    "restore_state",
]


class RollbackLimitReached(RuntimeError):
    """``max_rollbacks`` rollbacks have been made and another one was asked for: training should stop."""


class NoSnapshotError(RuntimeError):
    """No snapshot was taken before the estimated onset of the instability."""


class RollbackManager:
    """Snapshots, rollback decisions and the rollback count of one run.

    Args:
        config: Settings; ``RollbackConfig()`` by default.

    Attributes:
        store: The :class:`SnapshotStore`.
        rollbacks: Rollbacks made so far.
        lr_factor: Learning rate relative to the original schedule (``lr_scale ** rollbacks``).
        last_snapshot_step: Step of the last snapshot attempt (or of the snapshot last restored).
        history: The :class:`RollbackRecord` of every rollback.
    """

    def __init__(self, config: RollbackConfig | None = None) -> None:
        self.config = config if config is not None else RollbackConfig()
        self.store = SnapshotStore(self.config.storage, self.config.snapshot_dir, self.config.keep)
        self.rollbacks = 0
        self.lr_factor = 1.0
        self.last_snapshot_step: int | None = None
        self.history: list[RollbackRecord] = []

    def should_snapshot(self, step: int, episode_open: bool) -> bool:
        """Whether to take a snapshot at ``step``: enabled, ``step`` divisible by ``snapshot_interval``,
        not already taken at this step, and no alert episode open (pass ``not detector.quiet`` to also
        skip while a test is in a run of exceedances)."""
        return (
            self.config.enabled
            and not episode_open
            and step % self.config.snapshot_interval == 0
            and step != self.last_snapshot_step
        )

    # ------------------------------------------------------------------------------------- snapshots
    def snapshot(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
    ) -> None:
        """Capture the training state and retain it as the snapshot of ``step``
        (:meth:`stage_snapshot` then :meth:`commit_snapshot`).

        Raises:
            SnapshotWriteError: Disk storage and the write failed; earlier snapshots stay usable.
        """
        self.stage_snapshot(step, model, optimizer, scheduler, scaler)
        self.commit_snapshot()

    def stage_snapshot(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
    ) -> None:
        """Capture the training state and add it to the store, keeping every older snapshot until
        :meth:`commit_snapshot` (or :meth:`discard_snapshot` takes it back).

        ``last_snapshot_step`` becomes ``step`` even when this fails, so the step is not retried and every
        rank of a distributed run answers :meth:`should_snapshot` alike.

        Raises:
            SnapshotWriteError: Disk storage and the write failed; nothing was added.
            Exception: Whatever capturing the state raised (nothing was added).
        """
        self.last_snapshot_step = int(step)
        state = capture_state(model, optimizer, scheduler, scaler, trainable_only=self.config.trainable_only)
        state["meta"] = {"step": int(step), "lr_factor": self.lr_factor}
        self.store.add(step, state)

    def commit_snapshot(self) -> list[int]:
        """Confirm the staged snapshot: drop the oldest beyond ``keep``; return their steps."""
        return self.store.prune()

    def discard_snapshot(self, step: int) -> bool:
        """Take back the (staged) snapshot of ``step``; return whether this store held one."""
        return self.store.discard(step)

    # -------------------------------------------------------------------------------------- rollback
    def rollback(
        self,
        onset_step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
        *,
        step: int | None = None,
    ) -> RollbackRecord:
        """Restore the newest snapshot taken strictly before ``onset_step`` and scale the learning rate
        (:meth:`prepare_rollback`, :meth:`apply_rollback`, :meth:`commit_rollback`).

        Args:
            onset_step: Snapshots at this step or later are not trusted; pass ``alert.restore_before``
                (the step after the last observation known to be good) or ``alert.onset_step``.
            model, optimizer, scheduler, scaler: The live training objects (same as for :meth:`snapshot`).
            step: The current optimizer step, for the record.

        Returns:
            What was done.

        Raises:
            RollbackLimitReached: ``max_rollbacks`` rollbacks were already made; nothing was restored.
            NoSnapshotError: No snapshot predates ``onset_step``; nothing was restored.
            SnapshotMismatchError: The snapshot does not fit the model / optimizer; nothing was restored.
        """
        prepared = self.prepare_rollback(onset_step, model, optimizer, scheduler, scaler)
        self.apply_rollback(prepared, model, optimizer, scheduler, scaler)
        return self.commit_rollback(prepared, step=step)

    def prepare_rollback(
        self,
        onset_step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
        *,
        to_step: int | None = None,
    ) -> PreparedRollback:
        """Choose, load and check the snapshot to restore, touching no live state and no counter.

        Args:
            onset_step: As for :meth:`rollback`.
            model, optimizer, scheduler, scaler: The live training objects the snapshot must fit.
            to_step: Load exactly this snapshot (another rank's choice) instead of the newest readable one
                before ``onset_step``.

        Raises:
            RollbackLimitReached: ``max_rollbacks`` rollbacks were already made.
            NoSnapshotError: No (readable) snapshot predates ``onset_step``, or ``to_step`` is not retained.
            SnapshotMismatchError: The snapshot does not fit the model / optimizer.
            Exception: Reading the snapshot of ``to_step`` failed (whatever the loader raised).
        """
        cfg = self.config
        if self.rollbacks >= cfg.max_rollbacks:
            raise RollbackLimitReached(
                f"spinal-callback: training has already been rolled back {self.rollbacks} time(s) "
                f"(max_rollbacks={cfg.max_rollbacks}) and destabilised again (onset before step {onset_step}), "
                f"at {self.lr_factor:g}× the original learning rate. Stopping: the run does not recover by "
                "itself. Lower the learning rate or raise β (DPO beta), check the data around that step, or "
                "raise `max_rollbacks`."
            )
        if to_step is None:
            found = self.store.latest_before(onset_step)
            if found is None:
                raise NoSnapshotError(
                    f"spinal-callback: no snapshot was taken before step {onset_step} (retained snapshots: "
                    f"{self.store.steps() or 'none'}), so there is no known-good state to roll back to. Take "
                    "snapshots more often (`snapshot_interval`) or keep more of them (`keep`)."
                )
            chosen, state = found
        else:
            chosen = int(to_step)
            if chosen not in self.store.steps():
                raise NoSnapshotError(
                    f"spinal-callback: the snapshot of step {chosen} is not retained here (retained snapshots: "
                    f"{self.store.steps() or 'none'})."
                )
            state = self.store.load(chosen)
        validate_snapshot(state, model, optimizer, scheduler, scaler)
        snapshot_factor = float(state.get("meta", {}).get("lr_factor", 1.0))
        new_factor = self.lr_factor * cfg.lr_scale
        return PreparedRollback(int(onset_step), chosen, state, new_factor / snapshot_factor, new_factor)

    def apply_rollback(
        self,
        prepared: PreparedRollback,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
    ) -> None:
        """Restore a prepared snapshot into the live objects (with its learning-rate scale); counts nothing.

        Raises:
            SnapshotMismatchError: The snapshot does not fit; nothing was restored.
            Exception: Loading a state failed after the weights were copied (e.g. the optimizer's
                ``load_state_dict``): the live state may be partly restored.
        """
        restore_state(prepared.state, model, optimizer, scheduler, scaler, lr_scale=prepared.lr_scale)

    def commit_rollback(self, prepared: PreparedRollback, *, step: int | None = None) -> RollbackRecord:
        """Book an applied rollback: drop the snapshots after it, count it, scale the LR factor, record it.

        Args:
            prepared: What :meth:`apply_rollback` restored.
            step: The current optimizer step, for the record.
        """
        cfg = self.config
        to_step = prepared.to_step
        dropped = tuple(self.store.drop_after(to_step))
        self.rollbacks += 1
        self.lr_factor = prepared.lr_factor
        self.last_snapshot_step = to_step
        origin = f"from step {step} " if step is not None else ""
        message = (
            f"Rolled back {origin}to the snapshot of step {to_step} (instability onset at step "
            f"{prepared.onset_step} or later); learning rate ×{prepared.lr_scale:g} (now {prepared.lr_factor:g}× "
            f"the original schedule); rollback {self.rollbacks} of at most {cfg.max_rollbacks}."
        )
        record = RollbackRecord(step, to_step, prepared.onset_step, prepared.lr_scale, prepared.lr_factor,
                                self.rollbacks, cfg.max_rollbacks, dropped, message)
        self.history.append(record)
        return record

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state: rollback count, LR factor, last snapshot step, history, store index."""
        return {
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "last_snapshot_step": self.last_snapshot_step,
            "history": [r.to_dict() for r in self.history],
            "store": self.store.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; missing keys take their defaults."""
        self.rollbacks = int(state.get("rollbacks", 0))
        self.lr_factor = float(state.get("lr_factor", 1.0))
        last = state.get("last_snapshot_step")
        self.last_snapshot_step = None if last is None else int(last)
        self.history = [RollbackRecord.from_dict(r) for r in state.get("history", [])]
        if "store" in state:
            self.store.load_state_dict(state["store"])
