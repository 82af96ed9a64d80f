"""What a checkpoint argument is, before anything is loaded: a Hugging Face directory, a PEFT adapter, a
Lightning file or a Hub name.

:func:`resolve_checkpoint` looks at the path only (no weights are read) and returns a :class:`CheckpointSpec`
saying its kind and the base model it needs, or raises :class:`CheckpointInputError` naming what is missing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spinal_callback.tools.checkpoint_errors import CheckpointInputError

__all__ = ["CheckpointKind", "CheckpointSpec", "resolve_checkpoint"]

#: ``hf``: a ``save_pretrained`` directory; ``peft``: an adapter directory; ``lightning``: a ``.ckpt``
#: file (or any ``torch.save`` file holding a state dict); ``hub``: a Hugging Face Hub name.
CheckpointKind = Literal["hf", "peft", "lightning", "hub"]

_WEIGHT_FILES = (
    "model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json"
)
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


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
