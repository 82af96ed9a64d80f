"""The weights of a Lightning checkpoint: its state dict, read safely, and the key prefix it is stored under.

:func:`read_state_dict` reads a ``.ckpt`` (or bare ``torch.save``) file with ``torch.load(weights_only=True)``
and a short allow-list (:mod:`spinal_callback.tools.safe_load`), refusing anything else unless the caller
trusts the file. :func:`resolve_prefix` finds the LightningModule attribute (``policy.``, ``model.``, …) whose
keys hold the whole base model.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import torch

from spinal_callback.tools.checkpoint_errors import (
    CheckpointLoadError,
    UnsafeCheckpointWarning,
    UntrustedCheckpointError,
)
from spinal_callback.tools.safe_load import RefusedPickleError, load_trusted, load_weights_only

__all__ = ["PREFERRED_PREFIXES", "complete_prefixes", "read_state_dict", "resolve_prefix"]

#: LightningModule attributes tried first when several prefixes hold the whole model (the demo module
#: saves ``policy.`` and ``reference.``); ``""`` is a bare state dict.
PREFERRED_PREFIXES = ("policy.", "model.", "")


def read_state_dict(
    path: str | Path, *, trust_checkpoint: bool = False
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict saved with ``torch.save``).

    The file is read with ``torch.load(weights_only=True)``, which rebuilds tensors and plain values only,
    plus the containers Lightning stores hyper-parameters in
    (:data:`~spinal_callback.tools.safe_load.CHECKPOINT_SAFE_GLOBALS`). A file holding any other object is
    refused — unpickling it could run code from it — unless ``trust_checkpoint``: then it is read with
    ``weights_only=False``, with an :class:`UnsafeCheckpointWarning` and a note.

    Args:
        path: the file.
        trust_checkpoint: read a file the safe loader refuses with ``weights_only=False`` (runs code from it).

    Returns:
        The tensors by key and notes on how the file was read.

    Raises:
        UntrustedCheckpointError: the safe loader refused the file and ``trust_checkpoint`` is false.
        CheckpointLoadError: the file is not a PyTorch checkpoint or holds no state dict.
    """
    notes: list[str] = []
    try:
        try:
            data = load_weights_only(path)
        except RefusedPickleError as err:
            if not trust_checkpoint:
                raise UntrustedCheckpointError(
                    f"{str(path)!r} was not read: it holds an object that torch.load(weights_only=True) refuses "
                    f"({err.reason}), and unpickling it could run code from the file. If you trust this file, "
                    "read it with --trust-checkpoint (spinal audit) or trust_checkpoint=True"
                ) from None
            note = (
                f"{str(path)!r} holds an object that torch.load(weights_only=True) refuses ({err.reason}); as "
                "asked (trust_checkpoint), it was read with weights_only=False, which runs code from the file"
            )
            warnings.warn(note, UnsafeCheckpointWarning, stacklevel=2)
            notes.append(note)
            data = load_trusted(path)
    except CheckpointLoadError:
        raise
    except Exception as err:
        raise CheckpointLoadError(
            f"Could not read {str(path)!r} as a PyTorch/Lightning checkpoint ({type(err).__name__}: {err})"
        ) from err
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    elif not (isinstance(data, Mapping) and data and all(isinstance(v, torch.Tensor) for v in data.values())):
        keys = sorted(map(str, data))[:8] if isinstance(data, Mapping) else type(data).__name__
        raise CheckpointLoadError(f"{str(path)!r} holds no 'state_dict' (a Lightning checkpoint has one); found {keys}")
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}, notes


def _coverage(checkpoint_keys: Iterable[str], model_keys: Collection[str]) -> dict[str, set[str]]:
    """For every prefix ``P`` with ``P + k`` a checkpoint key and ``k`` a model key: the model keys found."""
    found: dict[str, set[str]] = {}
    for key in checkpoint_keys:
        parts = key.split(".")
        for i in range(len(parts)):
            suffix = ".".join(parts[i:])
            if suffix in model_keys:
                found.setdefault("".join(p + "." for p in parts[:i]), set()).add(suffix)
    return found


def resolve_prefix(checkpoint_keys: Collection[str], model_keys: Collection[str], prefix: str | None = None) -> str:
    """The key prefix under which a checkpoint holds every key of the model.

    With ``prefix`` given, it is checked. Otherwise the prefixes that hold all model keys are found;
    when several do (a DPO module saves ``policy.`` and ``reference.``), the first of
    :data:`PREFERRED_PREFIXES` among them is taken.

    Raises:
        CheckpointLoadError: ``prefix`` misses model keys, no prefix holds them all, or several do and
            none is preferred; the message lists the prefixes seen and how many model keys each holds.
    """
    model_keys = set(model_keys)
    coverage = _coverage(checkpoint_keys, model_keys)
    total = len(model_keys)
    ranked = sorted(coverage.items(), key=lambda item: (-len(item[1]), item[0]))
    seen = ", ".join(f"{p!r} ({len(k)}/{total})" for p, k in ranked[:6]) or "none"
    top_level = sorted({k.split(".", 1)[0] + "." if "." in k else "" for k in checkpoint_keys})
    context = (
        f"prefixes holding the base model's keys: {seen}; top-level prefixes in the checkpoint: "
        f"{', '.join(map(repr, top_level[:12]))}"
    )
    if prefix is not None:
        missing = sorted(model_keys - coverage.get(prefix, set()))
        if missing:
            raise CheckpointLoadError(
                f"--prefix {prefix!r} misses {len(missing)} of the base model's {total} keys (e.g. "
                f"{prefix + missing[0]!r}); {context}"
            )
        return prefix
    complete = [p for p, keys in ranked if len(keys) == total]
    if not complete:
        raise CheckpointLoadError(
            f"No key prefix of the checkpoint holds all {total} keys of the base model (is --base the right "
            f"architecture?); {context}. Give --prefix to choose one"
        )
    if len(complete) == 1:
        return complete[0]
    for preferred in PREFERRED_PREFIXES:
        if preferred in complete:
            return preferred
    raise CheckpointLoadError(
        f"Several key prefixes hold the whole base model: {', '.join(map(repr, complete))}; choose one with --prefix"
    )


def complete_prefixes(checkpoint_keys: Iterable[str], model_keys: Collection[str]) -> list[str]:
    """Every key prefix under which the checkpoint holds all of ``model_keys``, sorted."""
    model_keys = set(model_keys)
    return sorted(p for p, keys in _coverage(checkpoint_keys, model_keys).items() if len(keys) == len(model_keys))
