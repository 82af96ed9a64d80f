"""Argument checks shared by the configuration dataclasses: each raises ``ValueError`` naming the
argument, what is allowed and the value received."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

__all__ = ["check_float", "check_int", "check_snapshot_dir", "check_writable_dir", "fields_of", "read_json_object"]

_CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")


def check_int(name: str, value: object, minimum: int) -> None:
    """``value`` must be an ``int`` (not a ``bool``) and at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


def check_float(name: str, value: object, low: float, high: float = math.inf, *, open_low: bool = False,
                open_high: bool = False) -> float:
    """``value`` must be a finite number (not a ``bool``) in ``[low, high]`` (``open_low`` / ``open_high``: the bound
    itself excluded); returns it as a ``float``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if open_low else v >= low) and (v < high if open_high else v <= high) and math.isfinite(v)
    if not ok:
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high or high == math.inf else ']'}"
        raise ValueError(f"`{name}` must be a finite number in {bounds}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def check_writable_dir(name: str, directory: str) -> None:
    """Refuse a directory that cannot be created or written — without creating anything.

    The nearest existing ancestor must be a directory in which a file can be created.
    """
    probe = directory
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ValueError(f"`{name}` {directory!r} cannot be created: {probe!r} exists and is not a directory")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ValueError(f"`{name}` {directory!r} is not writable ({probe!r}: {exc.strerror})") from None


def check_snapshot_dir(name: str, directory: object) -> str:
    """Validate a snapshot directory without creating it; return it as an absolute path.

    Raises:
        ValueError: Not a path, inside a rotated ``checkpoint-<N>`` folder, or not creatable / writable.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a directory path (str or os.PathLike), got {directory!r}")
    path = os.path.abspath(os.path.expanduser(os.fspath(directory)))
    parts = path.split(os.sep)
    if any(_CHECKPOINT_RE.match(part) for part in parts):
        raise ValueError(
            f"`{name}` {path!r} lies inside a 'checkpoint-<N>' folder, which the trainer's checkpoint rotation "
            "deletes; put snapshots in a folder of their own (e.g. <output_dir>/spinal_snapshots)"
        )
    check_writable_dir(name, path)
    return path


def fields_of(cls: type, data: Mapping[str, Any]) -> Any:
    """``cls(**data)`` for a dataclass ``cls``; unknown keys are refused with their names and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return cls(**dict(data))


def read_json_object(path: str | os.PathLike[str], what: str) -> Mapping[str, Any]:
    """The JSON object in ``path``; anything else is refused, naming the file and ``what`` it must hold."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, Mapping):
        raise ValueError(f"{os.fspath(path)!r} must hold a JSON object of {what}")
    return data
