"""The JSON-lines trace file: one record per probe step, reading, alert and rollback.

Every line is one JSON object with a ``"type"`` (``"trace"``, ``"signals"``, ``"patch"``, ``"alert"`` or
``"rollback"``) and the optimizer ``"step"``. ``"trace"`` records carry the shape of
:meth:`DepthTrace.to_dict` (``"layers"``, ``"bands"``, ``"num_tokens"``); ``"signals"`` records, written at
the reading steps between probes, carry only the forward-free ``"signals"`` and the trainer ``"metrics"``
the detector saw — with ``SpinalConfig.read_every_log``, also at each log no reading took, with empty
``"signals"``: the metrics alone were an observation. Non-finite floats are written as ``null``.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from spinal_callback.geometry.trace import DepthTrace

__all__ = ["RECORD_TYPES", "TraceWriter", "load_traces", "read_trace_file", "trace_record"]

#: The allowed values of a record's ``"type"``.
RECORD_TYPES = ("trace", "signals", "patch", "alert", "rollback")


def _plain(value: Any, where: str) -> Any:
    """Convert ``value`` to JSON-ready plain types (NaN/±inf → ``None``; numpy / torch → Python)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors (any device)
        return _plain(value.tolist(), where)
    if hasattr(value, "to_dict"):  # DepthTrace and similar
        return _plain(value.to_dict(), where)
    raise TypeError(f"Cannot write {where} of type {type(value).__name__} to a JSON-lines trace")


def _validate(record: Mapping[str, Any]) -> None:
    if not isinstance(record, Mapping):
        raise TypeError(f"A trace record must be a mapping, got {type(record).__name__}")
    kind = record.get("type")
    if kind not in RECORD_TYPES:
        raise ValueError(f"Record `type` must be one of {', '.join(RECORD_TYPES)}, got {kind!r}")
    step = record.get("step")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or int(step) < 0:
        raise ValueError(f"Record `step` must be a non-negative integer, got {step!r}")


class TraceWriter:
    """Appends records to a JSON-lines trace file, flushing after each one.

    The file is opened once, in append mode by default (a resumed run continues its file); a
    previous crash that left a partial last line is closed with a newline first, so new records
    never merge with it. Each record is flushed to the operating system as soon as it is written,
    so a crash of the training process loses nothing already written (no ``fsync``: a power cut
    may still lose the OS buffer).

    Args:
        path: the trace file; parent directories are created.
        mode: ``"a"`` to append (default) or ``"w"`` to start a new file.

    Raises:
        OSError: the file cannot be created or opened (the message names the path).
        ValueError: ``mode`` is not ``"a"`` or ``"w"``.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: Literal["a", "w"] = "a") -> None:
        if mode not in ("a", "w"):
            raise ValueError(f"`mode` must be 'a' or 'w', got {mode!r}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            needs_newline = mode == "a" and _ends_without_newline(self.path)
            self._file: IO[str] | None = open(self.path, mode, encoding="utf-8")
        except OSError as err:
            raise OSError(f"Cannot open trace file {str(self.path)!r} for writing: {err}") from err
        if needs_newline:
            self._file.write("\n")
            self._file.flush()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record as a JSON line and flush.

        Raises:
            ValueError: missing or invalid ``"type"`` / ``"step"``, or the writer is closed.
            TypeError: a value that cannot be represented in JSON.
        """
        _validate(record)
        if self._file is None:
            raise ValueError(f"Trace file {str(self.path)!r} is closed")
        line = json.dumps(_plain(record, "record"), allow_nan=False, ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _ends_without_newline(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def read_trace_file(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read every record of a trace file, in file order.

    A line that is not valid JSON — what a crash in the middle of a write leaves, at the end of
    the file or, once a resumed run appended to it, in the middle — is skipped with a warning
    naming its line number. Blank lines are ignored.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it).
        ValueError: a line holds valid JSON that is not an object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Trace file not found: {str(path)!r}")
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                warnings.warn(
                    f"{path}: skipping malformed line {number} (truncated by a crash?)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object: {line.strip()[:80]!r}")
            records.append(record)
    return records


def trace_record(step: int, trace: DepthTrace) -> dict[str, Any]:
    """``{"type": "trace", "step": step, **trace.to_dict()}``."""
    return {"type": "trace", "step": int(step), **trace.to_dict()}


def load_traces(records: list[dict[str, Any]]) -> list[tuple[int, DepthTrace]]:
    """The ``(step, DepthTrace)`` pairs of the ``"trace"`` records, sorted by step.

    When a step occurs more than once (a rollback re-ran it), the record written last wins.
    """
    by_step: dict[int, DepthTrace] = {}
    for record in records:
        if record.get("type") == "trace" and "layers" in record:
            by_step[int(record["step"])] = DepthTrace.from_dict(record)
    return sorted(by_step.items())
