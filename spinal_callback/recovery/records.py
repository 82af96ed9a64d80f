"""The records of recovery: the live objects a rollback restores (:class:`TrainingHandles`), what a rollback
did (:class:`RollbackRecord`) and what one is about to do (:class:`PreparedRollback`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

__all__ = ["PreparedRollback", "RollbackRecord", "TrainingHandles"]


@dataclass
class TrainingHandles:
    """The live training objects a rollback restores (the adapters fill them in)."""

    model: nn.Module
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None


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


@dataclass(frozen=True)
class PreparedRollback:
    """A snapshot loaded and checked against the live objects, not yet restored
    (:meth:`~spinal_callback.recovery.rollback.RollbackManager.prepare_rollback`).

    Attributes:
        onset_step: The onset bound the snapshot predates (strictly).
        to_step: Step of the snapshot to restore.
        state: The snapshot itself.
        lr_scale: Factor to apply to the snapshot's learning rate
            (``lr_factor`` over the factor in force when the snapshot was taken).
        lr_factor: Learning rate relative to the original schedule once restored.
    """

    onset_step: int
    to_step: int
    state: Mapping[str, Any] = field(repr=False)
    lr_scale: float
    lr_factor: float
