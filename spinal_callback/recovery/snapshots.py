"""``SnapshotStore``: the known-good training snapshots a rollback can return to, in memory or on disk.

Disk layout: one file per snapshot, ``<snapshot_dir>/spinal-snapshot-step<step, 12 digits>.pt``, written
atomically — ``torch.save`` to a hidden temporary file in the same directory
(``.spinal-snapshot-step….pt.<pid>.<random>.tmp``), ``fsync``, then ``os.replace`` onto the final name
(and a best-effort ``fsync`` of the directory). A crash or a full disk mid-write therefore never leaves a
half-written file under a snapshot name: earlier snapshots stay usable, and leftover temporary files of
dead processes are removed the next time a store opens the directory. The index of (step, path) is
rebuilt from the file names when a store is constructed, so it survives a restart.

The names never start with ``checkpoint-``, so Hugging Face's and Lightning's checkpoint rotation leave
them alone — as long as ``snapshot_dir`` is not itself *inside* a rotated ``checkpoint-<N>`` folder, which
is refused.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from typing import Any, Literal

import torch

from spinal_callback.config.validation import check_snapshot_dir

__all__ = ["SnapshotStore", "SnapshotWriteError", "UnsafeSnapshotError"]

_PREFIX = "spinal-snapshot-step"
_FILE_RE = re.compile(rf"^{_PREFIX}(\d+)\.pt$")
_TEMP_RE = re.compile(rf"^\.{_PREFIX}\d+\.pt\.(\d+)\..+\.tmp$")


class SnapshotWriteError(RuntimeError):
    """A snapshot could not be written; the snapshots saved before it are untouched."""


class UnsafeSnapshotError(pickle.UnpicklingError):
    """A snapshot file holds objects that ``torch.load(weights_only=True)`` refuses, so reading it could run code
    from it; it was not read. Snapshots are written with tensors and plain values only, so such a file was not
    written by this library (or was altered). An ``UnpicklingError``: :meth:`SnapshotStore.latest_before`
    skips it like any unreadable snapshot."""


def _refusal_reason(exc: pickle.UnpicklingError) -> str:
    """The weights-only unpickler's complaint in ``exc``, on one line (e.g. ``Unsupported global: GLOBAL io.open
    was not an allowed global by default``)."""
    match = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Please use `torch\.|Check the documentation|$)",
                      str(exc), re.DOTALL)
    return (" ".join(match.group(1).split()).rstrip(".") if match else "") or "no reason given"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SnapshotStore:
    """Bounded collection of snapshots keyed by optimizer step.

    Args:
        storage: ``"memory"`` (CPU memory, lost on restart) or ``"disk"`` (one file per snapshot).
        directory: Snapshot folder for ``"disk"`` (created if needed; validated writable).
        keep: How many snapshots to retain; saving one more deletes the oldest.

    Raises:
        ValueError: Bad ``storage`` / ``keep`` / ``directory``.
    """

    def __init__(self, storage: Literal["memory", "disk"] = "memory", directory: str | None = None,
                 keep: int = 3) -> None:
        if storage not in ("memory", "disk"):
            raise ValueError(f"`storage` must be one of memory, disk, got {storage!r}")
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"`keep` must be an integer >= 1, got {keep!r}")
        self.storage = storage
        self.keep = keep
        self.directory: str | None = None
        self._memory: dict[int, dict[str, Any]] = {}
        self._paths: dict[int, str] = {}
        #: ``(step, error)`` of snapshot files that could not be read back (skipped by ``latest_before``).
        self.unreadable: list[tuple[int, str]] = []
        if storage == "disk":
            if directory is None:
                raise ValueError("`snapshot_dir` must be given when storage='disk', got None")
            self.directory = check_snapshot_dir("snapshot_dir", directory)
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"`snapshot_dir` {self.directory!r} cannot be created: {exc}") from None
            self._remove_stale_temp_files()
            self._paths = self._scan()

    # ------------------------------------------------------------------------------------------ index
    def _scan(self) -> dict[int, str]:
        assert self.directory is not None
        found = {}
        for entry in os.listdir(self.directory):
            match = _FILE_RE.match(entry)
            if match and os.path.isfile(os.path.join(self.directory, entry)):
                found[int(match.group(1))] = os.path.join(self.directory, entry)
        return dict(sorted(found.items()))

    def _remove_stale_temp_files(self) -> None:
        assert self.directory is not None
        for entry in os.listdir(self.directory):
            match = _TEMP_RE.match(entry)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.directory, entry))

    def steps(self) -> list[int]:
        """Steps of the retained snapshots, oldest first."""
        return sorted(self._memory if self.storage == "memory" else self._paths)

    def __len__(self) -> int:
        return len(self.steps())

    def path(self, step: int) -> str | None:
        """File of the snapshot of ``step`` (disk storage), else ``None``."""
        return self._paths.get(step)

    # ------------------------------------------------------------------------------------------ write
    def save(self, step: int, state: Mapping[str, Any]) -> None:
        """Retain ``state`` as the snapshot of ``step`` (replacing one of the same step), then drop the
        oldest beyond ``keep``. In memory the dict is kept as given (pass a fresh :func:`capture_state`).

        Raises:
            SnapshotWriteError: Disk storage and the write failed (disk full, permissions, ...): no file
                was left behind and the snapshots saved before are untouched.
        """
        step = int(step)
        if self.storage == "memory":
            self._memory[step] = dict(state)
        else:
            self._paths[step] = self._write(step, state)
        for old in self.steps()[: max(0, len(self) - self.keep)]:
            self._forget(old)

    def _write(self, step: int, state: Mapping[str, Any]) -> str:
        assert self.directory is not None
        final = os.path.join(self.directory, f"{_PREFIX}{step:012d}.pt")
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{_PREFIX}{step:012d}.pt.{os.getpid()}.", suffix=".tmp",
                                       dir=self.directory)
            with os.fdopen(fd, "wb") as handle:
                torch.save(dict(state), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(exc, Exception):
                raise SnapshotWriteError(
                    f"could not write the snapshot of step {step} to {final!r}: {exc}. The snapshots of steps "
                    f"{self.steps()} are untouched; free disk space or choose another `snapshot_dir`."
                ) from exc
            raise
        with contextlib.suppress(OSError):  # make the rename durable (best effort)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return final

    def _forget(self, step: int) -> None:
        self._memory.pop(step, None)
        path = self._paths.pop(step, None)
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def drop_after(self, step: int) -> list[int]:
        """Delete the snapshots taken after ``step`` (after a rollback to ``step`` they describe an
        abandoned trajectory); return their steps."""
        dropped = [s for s in self.steps() if s > step]
        for s in dropped:
            self._forget(s)
        return dropped

    def add(self, step: int, state: Mapping[str, Any]) -> None:
        """Like :meth:`save` but without dropping the oldest beyond ``keep`` (call :meth:`prune` once the
        snapshot is confirmed, or :meth:`discard` to take it back without having lost an older one).

        Raises:
            SnapshotWriteError: Disk storage and the write failed; nothing was added.
        """
        step = int(step)
        if self.storage == "memory":
            self._memory[step] = dict(state)
        else:
            self._paths[step] = self._write(step, state)

    def prune(self) -> list[int]:
        """Drop the oldest snapshots beyond ``keep``; return their steps."""
        dropped = self.steps()[: max(0, len(self) - self.keep)]
        for s in dropped:
            self._forget(s)
        return dropped

    def discard(self, step: int) -> bool:
        """Delete the snapshot of ``step`` (its file too, on disk); return whether there was one."""
        step = int(step)
        present = step in self._memory or step in self._paths
        self._forget(step)
        return present

    # ------------------------------------------------------------------------------------------- read
    def load(self, step: int) -> dict[str, Any]:
        """The snapshot of ``step`` (read from disk for disk storage).

        A file is read with ``torch.load(weights_only=True)`` only — never with ``weights_only=False``, which
        runs code from the file.

        Raises:
            KeyError: No snapshot of that step.
            UnsafeSnapshotError: The file holds objects the weights-only loader refuses; nothing from it ran.
            OSError, EOFError, RuntimeError: The file is missing, truncated or corrupted.
        """
        if self.storage == "memory":
            return self._memory[step]
        path = self._paths[step]
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not str(exc).startswith("Weights only load failed"):
                raise
            raise UnsafeSnapshotError(
                f"the snapshot of step {step} ({path!r}) was not read: it holds an object that "
                f"torch.load(weights_only=True) refuses ({_refusal_reason(exc)}), and unpickling it could run code "
                "from the file. spinal-callback writes snapshots with tensors and plain values only, so this file "
                "was not written by it or has been altered. If you trust it, read it yourself with "
                "torch.load(path, weights_only=False)."
            ) from None

    def latest_before(self, step: int) -> tuple[int, dict[str, Any]] | None:
        """``(step, snapshot)`` of the newest snapshot taken strictly before ``step``, or ``None``.

        A file that cannot be read back (deleted or corrupted by something else) is skipped and recorded in
        :attr:`unreadable`; the next older snapshot is returned instead.
        """
        for candidate in reversed([s for s in self.steps() if s < step]):
            try:
                return candidate, self.load(candidate)
            except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, KeyError) as exc:
                self.unreadable.append((candidate, f"{type(exc).__name__}: {exc}"))
                self._paths.pop(candidate, None)
        return None

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The index only (plain types): storage, directory, keep and the retained steps."""
        return {"storage": self.storage, "directory": self.directory, "keep": self.keep, "steps": self.steps()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restrict the index to the steps recorded in ``state`` that still exist (e.g. when training
        resumes from a checkpoint, snapshots taken after it belong to an abandoned run; their files are
        left on disk but no longer used)."""
        wanted = {int(s) for s in state.get("steps", [])}
        if self.storage == "disk":
            self._paths = {s: p for s, p in self._scan().items() if s in wanted}
        else:
            self._memory = {s: v for s, v in self._memory.items() if s in wanted}
