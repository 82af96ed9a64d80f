"""Recovery: training-state snapshots, their store, rollback, and the guard that acts on alerts.

The guard (:class:`AlertGuard`) is the one failure-isolation boundary of alert handling: a failing
snapshot write or restore becomes a warning and a counter, never a crashed or hung run.
"""

from spinal_callback.recovery.guard import AlertGuard, GuardOutcome, TrainingHandles
from spinal_callback.recovery.rollback import (
    NoSnapshotError,
    RollbackLimitReached,
    RollbackManager,
    RollbackRecord,
)
from spinal_callback.recovery.snapshots import SnapshotStore, SnapshotWriteError
from spinal_callback.recovery.training_state import SnapshotMismatchError, capture_state, restore_state

__all__ = [
    "AlertGuard",
    "GuardOutcome",
    "NoSnapshotError",
    "RollbackLimitReached",
    "RollbackManager",
    "RollbackRecord",
    "SnapshotMismatchError",
    "SnapshotStore",
    "SnapshotWriteError",
    "TrainingHandles",
    "capture_state",
    "restore_state",
]
