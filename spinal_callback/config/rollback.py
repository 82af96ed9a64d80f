"""``RollbackConfig``: snapshot and rollback settings, read by
:class:`~spinal_callback.recovery.rollback.RollbackManager`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from spinal_callback.config.validation import check_float, check_int, check_snapshot_dir, fields_of, read_json_object

__all__ = ["RollbackConfig"]


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
                  "included), skipped while an alert episode is open. Use a multiple of the reading interval "
                  "(SpinalConfig.signal_interval, 2 by default) so that every snapshot follows a reading that found "
                  "the detector quiet."},
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
        self.lr_scale = check_float("lr_scale", self.lr_scale, 0.0, 1.0, open_low=True)
        if self.storage == "disk":
            if self.snapshot_dir is None:
                raise ValueError("`snapshot_dir` must be given when storage='disk', got None")
            self.snapshot_dir = check_snapshot_dir("snapshot_dir", self.snapshot_dir)
        elif self.snapshot_dir is not None:
            raise ValueError(f"`snapshot_dir` is only used with storage='disk' (storage is 'memory'), "
                             f"got {self.snapshot_dir!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view (the inverse of :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RollbackConfig:
        """Build from a dict of fields; unknown keys are refused with their names."""
        return fields_of(cls, data)  # type: ignore[no-any-return]

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> RollbackConfig:
        """Read a JSON object of fields (e.g. written from :meth:`to_dict`)."""
        return cls.from_dict(read_json_object(path, "RollbackConfig fields"))

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text (used by the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
