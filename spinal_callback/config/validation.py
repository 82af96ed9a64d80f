"""Argument checks shared by the configuration dataclasses: each raises ``ValueError`` naming the
argument, what is allowed and the value received."""

from __future__ import annotations

import os
import re
import tempfile

__all__ = ["check_int", "check_snapshot_dir", "check_writable_dir"]

_CHECKPOINT_RE = re.compile(r"^checkpoint-\d+$")


def check_int(name: str, value: object, minimum: int) -> None:
    """``value`` must be an ``int`` (not a ``bool``) and at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")


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
