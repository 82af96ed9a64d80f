"""Reading ``torch.save`` files without running code from them, unless the caller trusts the file.

``torch.load(weights_only=True)`` rebuilds tensors and plain Python values only; any other object in the
pickle is refused instead of being constructed — constructing it is how a crafted file runs code.
:func:`load_weights_only` adds, for the duration of one call (the
:class:`torch.serialization.safe_globals` context manager, so nothing leaks into the caller's process),
the few harmless containers that Lightning checkpoints really hold besides tensors
(:data:`CHECKPOINT_SAFE_GLOBALS`), and raises :class:`RefusedPickleError` — which says what the unpickler
refused — for anything else. :func:`load_trusted` is the explicit opt-in: ``weights_only=False``.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import re
from typing import Any

import torch

__all__ = ["CHECKPOINT_SAFE_GLOBALS", "RefusedPickleError", "load_trusted", "load_weights_only", "refusal_reason"]

_ATTRIBUTE_DICTS = (
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)
_PATHS = {"PosixPath": pathlib.PurePosixPath, "PurePosixPath": pathlib.PurePosixPath,
          "WindowsPath": pathlib.PureWindowsPath, "PureWindowsPath": pathlib.PureWindowsPath}

#: Globals, besides torch's own, that a checkpoint may name, as ``(what it is rebuilt as, the name in the
#: file)``. Lightning's hyper-parameter container ``AttributeDict`` (``hyper_parameters`` of Lightning 1.x
#: files; nested values of 2.x ones), under every module it has lived in, is rebuilt as a plain ``dict`` —
#: the weights-only unpickler fills only exact dicts, and the audit needs the ``state_dict`` only, so
#: neither Lightning nor its import time is needed. ``argparse.Namespace`` is what
#: ``save_hyperparameters()`` stores for a script's parsed arguments; ``pathlib`` paths (a ``data_dir``
#: hyper-parameter, say) are rebuilt as pure paths, which never touch the file system.
CHECKPOINT_SAFE_GLOBALS: tuple[tuple[Any, str], ...] = (
    *((dict, name) for name in _ATTRIBUTE_DICTS),
    (argparse.Namespace, "argparse.Namespace"),
    *((cls, f"{module}.{name}") for module in ("pathlib", "pathlib._local") for name, cls in _PATHS.items()),
)

_REASON = re.compile(
    r"WeightsUnpickler error:\s*(.*?)\s*(?:Please use `torch\.serialization|Check the documentation|$)", re.DOTALL
)


class RefusedPickleError(pickle.UnpicklingError):
    """``torch.load(weights_only=True)`` refused a file: it holds an object other than tensors, plain Python
    values and :data:`CHECKPOINT_SAFE_GLOBALS`. Nothing from the file was run.

    Attributes:
        path: the file.
        reason: the unpickler's complaint, e.g. ``"Unsupported global: GLOBAL io.open was not an allowed
            global by default"``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"torch.load(weights_only=True) refused {path!r}: {reason}")
        self.path = path
        self.reason = reason


def refusal_reason(error: BaseException) -> str | None:
    """The weights-only unpickler's complaint in ``error`` (one line), or ``None`` when ``error`` is not a
    weights-only refusal (a truncated archive, a missing file, ...)."""
    text = str(error)
    if not isinstance(error, pickle.UnpicklingError) or not text.startswith("Weights only load failed"):
        return None
    match = _REASON.search(text)
    reason = " ".join(match.group(1).split()).rstrip(".") if match else ""
    return reason or "the weights-only unpickler gave no reason"


def load_weights_only(path: str | os.PathLike[str], extra_globals: tuple[tuple[Any, str], ...] = ()) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with :data:`CHECKPOINT_SAFE_GLOBALS` (and
    ``extra_globals``) allowed during this call only.

    Raises:
        RefusedPickleError: the file holds another object; nothing from it was run.
        Exception: whatever ``torch.load`` raises for a file it cannot read (``OSError``, ``RuntimeError``
            for a broken archive, ...).
    """
    with torch.serialization.safe_globals([*CHECKPOINT_SAFE_GLOBALS, *extra_globals]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            reason = refusal_reason(err)
            if reason is None:
                raise
            raise RefusedPickleError(os.fspath(path), reason) from None


def load_trusted(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=False)``: runs whatever code the file's pickle
    names. Only for files the user said they trust."""
    return torch.load(path, map_location="cpu", weights_only=False)
