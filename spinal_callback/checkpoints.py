"""Saved checkpoints as models: Hugging Face directories, PEFT adapters, Lightning files, Hub names.

:func:`resolve_checkpoint` looks at a path (no loading) and says what it is and what it needs;
:func:`load_checkpoint` turns it into a model; :func:`load_tokenizer` finds the tokenizer the
checkpoints share. Two error types separate what the caller got wrong (:class:`CheckpointInputError`,
a missing path or flag) from what failed while loading (:class:`CheckpointLoadError`). transformers,
PEFT and the checkpoint files are read inside the functions only.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = [
    "PREFERRED_PREFIXES",
    "CheckpointInputError",
    "CheckpointKind",
    "CheckpointLoadError",
    "CheckpointSpec",
    "LoadedCheckpoint",
    "UnsafeCheckpointWarning",
    "load_checkpoint",
    "load_tokenizer",
    "read_state_dict",
    "resolve_checkpoint",
    "resolve_prefix",
]

#: ``hf``: a ``save_pretrained`` directory; ``peft``: an adapter directory; ``lightning``: a ``.ckpt``
#: file (or any ``torch.save`` file holding a state dict); ``hub``: a Hugging Face Hub name.
CheckpointKind = Literal["hf", "peft", "lightning", "hub"]

#: LightningModule attributes tried first when several prefixes hold the whole model (the demo module
#: saves ``policy.`` and ``reference.``); ``""`` is a bare state dict.
PREFERRED_PREFIXES = ("policy.", "model.", "")

_WEIGHT_FILES = (
    "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


class CheckpointInputError(ValueError):
    """A checkpoint argument that cannot work as given: a missing path, an unknown directory layout, a
    Lightning file without a base model. ``spinal audit`` exits with status 2."""


class CheckpointLoadError(RuntimeError):
    """A checkpoint (or its tokenizer) that failed to load or does not fit: unreadable weights, no matching
    key prefix, another vocabulary. ``spinal audit`` exits with status 1."""


class UnsafeCheckpointWarning(UserWarning):
    """A checkpoint file was read with ``torch.load(weights_only=False)``, which can run code from it."""


@dataclass(frozen=True)
class CheckpointSpec:
    """What a checkpoint argument is, before anything is loaded.

    Attributes:
        path: the argument as given (a path or a Hub name).
        kind: see :data:`CheckpointKind`.
        base: the model the checkpoint is loaded onto (``peft``: the adapter's base, ``lightning``:
            the architecture the weights go into), else ``None``.
    """

    path: str
    kind: CheckpointKind
    base: str | None = None


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint.

    Attributes:
        spec: what was loaded.
        model: the causal LM (a ``PeftModel`` for adapters), on the requested device and dtype.
        prefix: the state-dict key prefix that was stripped (``lightning`` only).
        notes: what a person should know about how it was loaded (prefix choice, unsafe unpickling).
    """

    spec: CheckpointSpec
    model: nn.Module
    prefix: str | None = None
    notes: list[str] = field(default_factory=list)


def _looks_like_hub_name(name: str) -> bool:
    return _HUB_NAME.fullmatch(name) is not None and not name.endswith((".ckpt", ".pt", ".pth", ".json"))


def _has_weights(directory: Path) -> bool:
    return any((directory / name).is_file() for name in _WEIGHT_FILES) or any(directory.glob("*.safetensors"))


def _check_base(base: str, what: str) -> str:
    """``base`` must be a Hugging Face model directory, a PEFT adapter directory or a Hub name."""
    path = Path(base).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
            return str(path)
        raise CheckpointInputError(f"The base model {base!r} of {what} is a directory without config.json")
    if path.exists() or not _looks_like_hub_name(base):
        raise CheckpointInputError(
            f"The base model {base!r} of {what} is neither a Hugging Face model directory nor a Hub name"
        )
    return base


def resolve_checkpoint(path: str, base: str | None = None) -> CheckpointSpec:
    """Say what ``path`` is and check that it has what it needs to load, without loading it.

    Args:
        path: a Hugging Face model directory (``config.json`` + weights), a PEFT adapter directory
            (``adapter_config.json``), a Lightning ``.ckpt`` (or other ``torch.save``) file, or a Hub name.
        base: the base model (``--base``): required for a Lightning file, used instead of the adapter
            config's ``base_model_name_or_path`` for an adapter, ignored otherwise.

    Raises:
        CheckpointInputError: the path does not exist (and is no Hub name), a directory holds neither
            a model nor an adapter, a model directory has no weights, a Lightning file has no base.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if (local / "adapter_config.json").is_file():
            if base is None:
                try:
                    config = json.loads((local / "adapter_config.json").read_text(encoding="utf-8"))
                except (OSError, ValueError) as err:
                    raise CheckpointInputError(f"{path!r}: unreadable adapter_config.json ({err})") from None
                base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
                if not base:
                    raise CheckpointInputError(
                        f"The PEFT adapter {path!r} names no base_model_name_or_path in adapter_config.json: "
                        "give the base model with --base"
                    )
            return CheckpointSpec(str(local), "peft", _check_base(base, f"the adapter {path!r}"))
        if (local / "config.json").is_file():
            if not _has_weights(local):
                raise CheckpointInputError(
                    f"{path!r} has config.json but no weights (expected model.safetensors or pytorch_model.bin)"
                )
            return CheckpointSpec(str(local), "hf")
        raise CheckpointInputError(
            f"{path!r} is a directory without config.json (a Hugging Face model saved with save_pretrained) "
            "or adapter_config.json (a PEFT adapter)"
        )
    if local.is_file():
        if base is None:
            raise CheckpointInputError(
                f"{path!r} is a checkpoint file (Lightning .ckpt): give --base, a Hugging Face model directory or "
                "name with the architecture its weights go into"
            )
        return CheckpointSpec(str(local), "lightning", _check_base(base, f"the checkpoint {path!r}"))
    if _looks_like_hub_name(path):
        return CheckpointSpec(path, "hub")
    raise CheckpointInputError(f"No such file or directory: {path!r} (expected a checkpoint directory or file)")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The ``state_dict`` of a Lightning checkpoint (or a bare state dict saved with ``torch.save``).

    The file is read with ``weights_only=True``; only when that refuses a pickled object (e.g.
    hyper-parameters of a custom type) is it read again with ``weights_only=False`` — which can run
    code from the file — with an :class:`UnsafeCheckpointWarning` and a note.

    Returns:
        The tensors by key and notes on how the file was read.

    Raises:
        CheckpointLoadError: the file is not a PyTorch checkpoint or holds no state dict.
    """
    notes: list[str] = []
    try:
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            if not str(err).startswith("Weights only load failed"):
                raise
            note = (
                f"{str(path)!r} holds objects that torch.load(weights_only=True) refuses; it was read with "
                "weights_only=False, which runs code from the file: audit only checkpoints you trust"
            )
            warnings.warn(note, UnsafeCheckpointWarning, stacklevel=2)
            notes.append(note)
            data = torch.load(path, map_location="cpu", weights_only=False)
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


def _has_tokenizer(path: str) -> bool:
    return any((Path(path) / name).is_file() for name in _TOKENIZER_FILES)


def _tokenizer_sources(specs: Iterable[CheckpointSpec]) -> list[str]:
    """Checkpoint directories (then their bases) holding tokenizer files, and Hub names, in order."""
    sources: list[str] = []
    for spec in specs:
        for candidate in (spec.path, spec.base):
            if candidate is None or candidate in sources:
                continue
            local = Path(candidate)
            if (local.is_dir() and _has_tokenizer(candidate)) or not local.exists():  # a Hub name
                sources.append(candidate)
    return sources


def _load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as err:
        raise CheckpointLoadError(f"Could not load the tokenizer {source!r}: {type(err).__name__}: {err}") from err


def load_tokenizer(specs: Sequence[CheckpointSpec], tokenizer: Any = None) -> tuple[Any, str]:
    """The tokenizer for ``specs`` and where it came from.

    Args:
        specs: the checkpoints.
        tokenizer: a tokenizer object, or its name or path; default: the first checkpoint directory, then
            base model directory, holding tokenizer files (or the first Hub name among ``specs``).

    Raises:
        CheckpointInputError: no tokenizer given or found.
        CheckpointLoadError: a tokenizer failed to load, or two checkpoint directories hold different
            vocabularies.
    """
    sources = _tokenizer_sources(specs)
    own = {source: _load_tokenizer(source) for source in sources if Path(source).is_dir()}
    first, reference = next(iter(own.items()), ("", None))
    for source, other in own.items():
        if reference is not None and other.get_vocab() != reference.get_vocab():
            raise CheckpointLoadError(
                f"The checkpoints do not share the vocabulary: the tokenizer in {source!r} ({len(other)} tokens) "
                f"differs from the one in {first!r} ({len(reference)} tokens)"
            )
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer, getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    if tokenizer is not None:
        return _load_tokenizer(os.fspath(tokenizer)), os.fspath(tokenizer)
    if not sources:
        searched = ", ".join(repr(c) for s in specs for c in (s.path, s.base) if c is not None)
        raise CheckpointInputError(f"No tokenizer found in {searched}: give one with --tokenizer")
    return (own[sources[0]] if sources[0] in own else _load_tokenizer(sources[0])), sources[0]


def _from_pretrained(name: str, dtype: torch.dtype, what: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
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

    Raises:
        CheckpointLoadError: anything failing to load (the message names the path and what was expected).
    """
    notes: list[str] = []
    if spec.kind != "lightning":
        model = _load_model(spec, dtype)
    else:
        assert spec.base is not None
        state, notes = read_state_dict(spec.path)
        model = _load_model(resolve_checkpoint(spec.base), dtype, f"the base of {spec.path!r}")
        model_keys = list(model.state_dict())
        try:
            prefix = resolve_prefix(state.keys(), model_keys, prefix)
        except CheckpointLoadError as err:
            raise CheckpointLoadError(f"{spec.path!r}: {err}") from None
        others = sorted(p for p, keys in _coverage(state.keys(), set(model_keys)).items()
                        if p != prefix and len(keys) == len(model_keys))
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
