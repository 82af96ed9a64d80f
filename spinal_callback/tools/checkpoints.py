"""Saved checkpoints as models: Hugging Face directories, PEFT adapters, Lightning files, Hub names.

:func:`resolve_checkpoint` looks at a path (no loading) and says what it is and what it needs
(:mod:`spinal_callback.tools.checkpoint_spec`); :func:`load_checkpoint` turns it into a model;
:func:`load_tokenizer` finds the tokenizer the checkpoints share
(:mod:`spinal_callback.tools.checkpoint_tokenizer`). Two error types separate what the caller got wrong
(:class:`CheckpointInputError`, a missing path or flag) from what failed while loading
(:class:`CheckpointLoadError`; its subclass :class:`UntrustedCheckpointError` for a file that would run code
when read) — :mod:`spinal_callback.tools.checkpoint_errors`. transformers, PEFT and the checkpoint files are
read inside the functions only.

Nothing runs code from a file unless the caller says they trust it: a Lightning file is read with
``torch.load(weights_only=True)`` and a short allow-list (:mod:`spinal_callback.tools.state_dict`,
:mod:`spinal_callback.tools.safe_load`), and a Hub name comes from the local cache first, asking the Hub once
and fast (:mod:`spinal_callback.tools.hub`). This module loads; it also re-exports the names above, so
``from spinal_callback.tools.checkpoints import …`` reaches all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from spinal_callback.tools.checkpoint_errors import (
    CheckpointInputError,
    CheckpointLoadError,
    UnsafeCheckpointWarning,
    UntrustedCheckpointError,
)
from spinal_callback.tools.checkpoint_spec import CheckpointKind, CheckpointSpec, resolve_checkpoint
from spinal_callback.tools.checkpoint_tokenizer import load_tokenizer
from spinal_callback.tools.hub import HubUnavailableError, load_pretrained
from spinal_callback.tools.state_dict import PREFERRED_PREFIXES, complete_prefixes, read_state_dict, resolve_prefix

__all__ = [
    "PREFERRED_PREFIXES",
    "CheckpointInputError",
    "CheckpointKind",
    "CheckpointLoadError",
    "CheckpointSpec",
    "LoadedCheckpoint",
    "UnsafeCheckpointWarning",
    "UntrustedCheckpointError",
    "load_checkpoint",
    "load_tokenizer",
    "read_state_dict",
    "resolve_checkpoint",
    "resolve_prefix",
]


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint.

    Attributes:
        spec: what was loaded.
        model: the causal LM (a ``PeftModel`` for adapters), on the requested device and dtype.
        prefix: the state-dict key prefix that was stripped (``lightning`` only).
        notes: what a person should know about how it was loaded (prefix choice, trusted unpickling).
    """

    spec: CheckpointSpec
    model: nn.Module
    prefix: str | None = None
    notes: list[str] = field(default_factory=list)


def _from_pretrained(name: str, dtype: torch.dtype, what: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    def load(path: str, local_files_only: bool = False) -> nn.Module:
        # transformers does not pass local_files_only on to its adapter lookup, which would ask the Hub
        adapter = {"adapter_kwargs": {"local_files_only": True}} if local_files_only else {}
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=local_files_only, **adapter)

    try:
        return load_pretrained(load, name)
    except HubUnavailableError as err:
        raise CheckpointLoadError(f"Could not load {what} {name!r}: {err}") from None
    except Exception as err:
        expected = ("a save_pretrained directory with config.json and weights" if Path(name).exists()
                    else "no such local path, so it was tried as a Hub name")
        raise CheckpointLoadError(
            f"Could not load {what} {name!r} as a Hugging Face causal LM ({expected}): {type(err).__name__}: {err}"
        ) from err


def _load_adapter(path: str, base: str, dtype: torch.dtype) -> nn.Module:
    try:
        from peft import PeftModel
    except ImportError as err:
        raise ImportError('PEFT adapters need peft: pip install "spinal-callback[trl]" (or pip install peft)') from err
    base_model = _load_model(resolve_checkpoint(base), dtype, f"the base model of {path!r}")
    try:
        return PeftModel.from_pretrained(base_model, path)
    except Exception as err:
        raise CheckpointLoadError(
            f"Could not load the PEFT adapter {path!r} onto its base {base!r}: {type(err).__name__}: {err}"
        ) from err


def _load_model(spec: CheckpointSpec, dtype: torch.dtype, what: str = "the checkpoint") -> nn.Module:
    """A Hugging Face directory, Hub name or adapter directory (no Lightning file) as a model."""
    if spec.kind == "peft":
        assert spec.base is not None
        return _load_adapter(spec.path, spec.base, dtype)
    return _from_pretrained(spec.path, dtype, what)


def load_checkpoint(
    spec: CheckpointSpec,
    *,
    prefix: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    trust_checkpoint: bool = False,
) -> LoadedCheckpoint:
    """Load a checkpoint that :func:`resolve_checkpoint` described.

    A Lightning file is loaded into the base model: its ``state_dict`` keys lose the LightningModule
    attribute prefix (``prefix``, else :func:`resolve_prefix` finds it) and must cover every key of
    the base model.

    Args:
        spec: the checkpoint.
        prefix: the key prefix of a Lightning checkpoint (e.g. ``"policy."``; ``""`` for none).
        device: where the model goes.
        dtype: the dtype of its weights.
        trust_checkpoint: read a Lightning file that holds objects other than tensors, plain values and
            Lightning's hyper-parameter containers with ``weights_only=False``, which runs code from it
            (see :func:`read_state_dict`).

    Raises:
        UntrustedCheckpointError: a Lightning file the safe loader refuses, without ``trust_checkpoint``.
        CheckpointLoadError: anything failing to load (the message names the path and what was expected).
    """
    notes: list[str] = []
    if spec.kind != "lightning":
        model = _load_model(spec, dtype)
    else:
        assert spec.base is not None
        state, notes = read_state_dict(spec.path, trust_checkpoint=trust_checkpoint)
        model = _load_model(resolve_checkpoint(spec.base), dtype, f"the base of {spec.path!r}")
        model_keys = list(model.state_dict())
        try:
            prefix = resolve_prefix(state.keys(), model_keys, prefix)
        except CheckpointLoadError as err:
            raise CheckpointLoadError(f"{spec.path!r}: {err}") from None
        others = [p for p in complete_prefixes(state.keys(), model_keys) if p != prefix]
        notes.append(f"weights under the key prefix {prefix!r}"
                     + (f" (also complete: {', '.join(map(repr, others))}; --prefix chooses)" if others else ""))
        try:
            model.load_state_dict({k: state[prefix + k] for k in model_keys}, strict=True)
        except RuntimeError as err:
            raise CheckpointLoadError(
                f"The weights of {spec.path!r} (prefix {prefix!r}) do not fit the base model {spec.base!r}: {err}"
            ) from err
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as err:  # e.g. a CUDA device that is not there
        raise CheckpointLoadError(f"Could not move {spec.path!r} to {str(device)!r}: {err}") from err
    return LoadedCheckpoint(spec, model, prefix if spec.kind == "lightning" else None, notes)
