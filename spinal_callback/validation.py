"""Argument checks shared by the configuration dataclasses: each raises ``ValueError`` naming the
argument, what is allowed and the value received."""

from __future__ import annotations

import os
import tempfile

__all__ = ["check_int", "check_writable_dir"]


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
