"""Automatic rollback to a known-good snapshot when the early-warning detector raises an alert.

:class:`RollbackManager` takes a snapshot (:func:`~spinal_callback.training_state.capture_state`) every
``snapshot_interval`` steps while no alert episode is open, keeps the newest ``keep`` of them
(:class:`~spinal_callback.snapshots.SnapshotStore`, CPU memory or disk) and, on an alert, restores the
newest one taken strictly before the estimated onset, scales the learning rate, and counts. Typical use
by the monitor (framework-neutral; the callbacks pass the live objects)::

    manager = RollbackManager(RollbackConfig(snapshot_interval=100, lr_scale=0.5))
    # after each optimizer step, once the detector has seen this step's probe (if any):
    if manager.should_snapshot(step, episode_open=not detector.quiet):
        manager.snapshot(step, model, optimizer, scheduler, scaler)
    # on an alert:
    record = manager.rollback(alert.restore_before, model, optimizer, scheduler, scaler, step=step)
    detector.reset(keep_baseline=True, since_step=alert.onset_step)

The learning-rate scale compounds over rollbacks: after n rollbacks the run trains at ``lr_scale**n`` of
its original schedule, whichever snapshot was restored (each snapshot records the factor in force when it
was taken).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from .snapshots import SnapshotStore, SnapshotWriteError, check_snapshot_dir
from .training_state import SnapshotMismatchError, capture_state, restore_state
from .validation import check_int

__all__ = [
    "NoSnapshotError",
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


@dataclass
class RollbackConfig:
    """Settings of :class:`RollbackManager`; validated on construction (``ValueError`` naming the field, the
    allowed values and the value received)."""

    enabled: bool = field(
        default=True,
        metadata={"help": "Take snapshots (and allow rollbacks). False: should_snapshot() is always False."},
    )
    snapshot_interval: int = field(
        default=100,
        metadata={"help": "Take a known-good snapshot every N optimizer steps (steps divisible by N, step 0 "
                  "included), skipped while an alert episode is open. Use a multiple of the probe interval "
                  "so that every snapshot follows a probe that found the geometry quiet."},
    )
    keep: int = field(
        default=3,
        metadata={"help": "Number of snapshots retained (the oldest is dropped first). A rollback reaches back "
                  "at most keep × snapshot_interval steps."},
    )
    storage: Literal["memory", "disk"] = field(
        default="memory",
        metadata={"help": "'memory': snapshots in CPU memory (fast; lost on restart; each holds the trainable "
                  "weights plus optimizer state, e.g. 3× the weights for AdamW). 'disk': one file per "
                  "snapshot in `snapshot_dir`, written atomically, surviving restarts."},
    )
    snapshot_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of disk snapshots (required with storage='disk'; created if needed). Must not "
                  "be inside a 'checkpoint-<N>' folder, which the trainer's checkpoint rotation deletes; "
                  "e.g. <output_dir>/spinal_snapshots."},
    )
    lr_scale: float = field(
        default=0.5,
        metadata={"help": "Learning-rate factor applied at each rollback, in (0, 1]; compounds (×0.25 after two "
                  "rollbacks). Scales every param group's lr and the scheduler's base_lrs."},
    )
    max_rollbacks: int = field(
        default=3,
        metadata={"help": "Rollbacks allowed per run; one more alert after that raises RollbackLimitReached "
                  "(the monitor stops training with its message)."},
    )
    trainable_only: bool = field(
        default=True,
        metadata={"help": "Snapshot only parameters with requires_grad (the adapter under PEFT). False: every "
                  "parameter and buffer."},
    )

    def __post_init__(self) -> None:
        for name in ("enabled", "trainable_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}")
        check_int("snapshot_interval", self.snapshot_interval, 1)
        check_int("keep", self.keep, 1)
        check_int("max_rollbacks", self.max_rollbacks, 1)
        if self.storage not in ("memory", "disk"):
            raise ValueError(f"`storage` must be one of memory, disk, got {self.storage!r}")
        lr = self.lr_scale
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not 0.0 < lr <= 1.0:
            raise ValueError(f"`lr_scale` must be a number in (0, 1], got {lr!r}")
        self.lr_scale = float(lr)
        if self.storage == "disk":
            if self.snapshot_dir is None:
                raise ValueError("`snapshot_dir` must be given when storage='disk', got None")
            self.snapshot_dir = check_snapshot_dir("snapshot_dir", self.snapshot_dir)
        elif self.snapshot_dir is not None:
            raise ValueError(f"`snapshot_dir` is only used with storage='disk' (storage is 'memory'), "
                             f"got {self.snapshot_dir!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view."""
        return asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text (used by the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass(frozen=True)
class RollbackRecord:
    """What one rollback did.

    Attributes:
        from_step: Optimizer step at which the rollback happened (``None`` if not given).
        to_step: Step of the snapshot that was restored.
        onset_step: The onset bound the snapshot had to predate (strictly).
        lr_scale: Factor applied to the snapshot's learning rate now.
        lr_factor: Learning rate relative to the original schedule after this rollback.
        rollbacks: Rollbacks so far, this one included.
        max_rollbacks: The configured limit.
        dropped_steps: Snapshots discarded because they were taken after ``to_step``.
        message: Human-readable summary.
    """

    from_step: int | None
    to_step: int
    onset_step: int
    lr_scale: float
    lr_factor: float
    rollbacks: int
    max_rollbacks: int
    dropped_steps: tuple[int, ...]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (``dropped_steps`` as a list)."""
        data = asdict(self)
        data["dropped_steps"] = list(self.dropped_steps)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RollbackRecord:
        """Inverse of :meth:`to_dict`."""
        from_step = data.get("from_step")
        return cls(
            from_step=None if from_step is None else int(from_step),
            to_step=int(data["to_step"]),
            onset_step=int(data["onset_step"]),
            lr_scale=float(data.get("lr_scale", 1.0)),
            lr_factor=float(data.get("lr_factor", 1.0)),
            rollbacks=int(data.get("rollbacks", 0)),
            max_rollbacks=int(data.get("max_rollbacks", 0)),
            dropped_steps=tuple(int(s) for s in data.get("dropped_steps", ())),
            message=str(data.get("message", "")),
        )


class RollbackManager:
    """Snapshots, rollback decisions and the rollback count of one run.

    Args:
        config: Settings; ``RollbackConfig()`` by default.

    Attributes:
        store: The :class:`SnapshotStore`.
        rollbacks: Rollbacks made so far.
        lr_factor: Learning rate relative to the original schedule (``lr_scale ** rollbacks``).
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

    def snapshot(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any | None = None,
        scaler: Any | None = None,
    ) -> None:
        """Capture the training state and retain it as the snapshot of ``step``.

        Raises:
            SnapshotWriteError: Disk storage and the write failed; earlier snapshots stay usable.
        """
        state = capture_state(model, optimizer, scheduler, scaler, trainable_only=self.config.trainable_only)
        state["meta"] = {"step": int(step), "lr_factor": self.lr_factor}
        self.store.save(step, state)
        self.last_snapshot_step = int(step)

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
        """Restore the newest snapshot taken strictly before ``onset_step`` and scale the learning rate.

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
        cfg = self.config
        if self.rollbacks >= cfg.max_rollbacks:
            raise RollbackLimitReached(
                f"spinal-callback: training has already been rolled back {self.rollbacks} time(s) "
                f"(max_rollbacks={cfg.max_rollbacks}) and destabilised again (onset before step {onset_step}), "
                f"at {self.lr_factor:g}× the original learning rate. Stopping: the run does not recover by "
                "itself. Lower the learning rate or raise β (DPO beta), check the data around that step, or "
                "raise `max_rollbacks`."
            )
        found = self.store.latest_before(onset_step)
        if found is None:
            raise NoSnapshotError(
                f"spinal-callback: no snapshot was taken before step {onset_step} (retained snapshots: "
                f"{self.store.steps() or 'none'}), so there is no known-good state to roll back to. Take "
                "snapshots more often (`snapshot_interval`) or keep more of them (`keep`)."
            )
        to_step, state = found
        snapshot_factor = float(state.get("meta", {}).get("lr_factor", 1.0))
        new_factor = self.lr_factor * cfg.lr_scale
        applied = new_factor / snapshot_factor
        restore_state(state, model, optimizer, scheduler, scaler, lr_scale=applied)
        dropped = tuple(self.store.drop_after(to_step))
        self.rollbacks += 1
        self.lr_factor = new_factor
        self.last_snapshot_step = to_step
        origin = f"from step {step} " if step is not None else ""
        message = (
            f"Rolled back {origin}to the snapshot of step {to_step} (instability onset at step {onset_step} or "
            f"later); learning rate ×{applied:g} (now {new_factor:g}× the original schedule); rollback "
            f"{self.rollbacks} of at most {cfg.max_rollbacks}."
        )
        record = RollbackRecord(step, to_step, int(onset_step), applied, new_factor, self.rollbacks,
                                cfg.max_rollbacks, dropped, message)
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
