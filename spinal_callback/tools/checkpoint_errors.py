"""What can go wrong with a checkpoint argument, as exception and warning types.

:class:`CheckpointInputError` is what the caller got wrong (a missing path or flag); :class:`CheckpointLoadError`
is what failed while loading, with :class:`UntrustedCheckpointError` for a file that would run code when read.
:class:`UnsafeCheckpointWarning` marks a file read with ``torch.load(weights_only=False)`` because the caller
trusts it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointInputError",
    "CheckpointLoadError",
    "UnsafeCheckpointWarning",
    "UntrustedCheckpointError",
]


class CheckpointInputError(ValueError):
    """A checkpoint argument that cannot work as given: a missing path, an unknown directory layout, a
    Lightning file without a base model. ``spinal audit`` exits with status 2."""


class CheckpointLoadError(RuntimeError):
    """A checkpoint (or its tokenizer) that failed to load or does not fit: unreadable weights, no matching
    key prefix, another vocabulary. ``spinal audit`` exits with status 1."""


class UntrustedCheckpointError(CheckpointLoadError):
    """A checkpoint file holds objects that ``torch.load(weights_only=True)`` refuses, so reading it could run
    code from it; it was not read. The message gives the unpickler's complaint and the opt-in for a file the
    user trusts (``--trust-checkpoint``, ``trust_checkpoint=True``)."""


class UnsafeCheckpointWarning(UserWarning):
    """A checkpoint file was read with ``torch.load(weights_only=False)``, which can run code from it — only
    when the caller trusts it (``trust_checkpoint=True``)."""
