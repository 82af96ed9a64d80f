"""What a causal LM really has: its decoder-block lists, norms, unembedding and layer count, and the errors
that name them (used by layout discovery and by the registry's messages)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from torch import nn

from spinal_callback.model.layout import UnsupportedArchitectureError

__all__ = [
    "LAYER_COUNT_ATTRIBUTES",
    "block_lists",
    "decoder_path",
    "is_norm",
    "layer_count",
    "missing_head_error",
    "model_candidates",
    "output_embedding",
    "refuse",
    "shown",
    "strip_length",
]

#: Config attributes read, in order, for the number of decoder blocks.
LAYER_COUNT_ATTRIBUTES = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", nn.LayerNorm))  # nn.RMSNorm: torch >= 2.4
_SHOWN = 6


def missing_head_error(model: nn.Module) -> UnsupportedArchitectureError:
    """The error for a model without an output embedding: it is not a causal LM with its head."""
    cls_name = type(model).__name__
    base = cls_name.split("For")[0] if "For" in cls_name else cls_name.removesuffix("Model")
    example = f" such as {base}ForCausalLM" if base and base != cls_name else ""
    return UnsupportedArchitectureError(
        f"{shown(model)} has no output embedding (its get_output_embeddings() is None): it is a bare decoder or "
        "carries another head, and the logit lens needs the LM head. Pass a *ForCausalLM (a model with an output "
        f"embedding){example}, e.g. AutoModelForCausalLM.from_pretrained(...) instead of AutoModel."
    )


def model_candidates(model: nn.Module) -> tuple[list[str], list[str], list[str]]:
    """``(block lists, norms outside the blocks, unembedding candidates)``: dotted paths this model really has.

    Block lists are shown with their length (``"transformer.h (24 blocks)"``).
    """
    lists = block_lists(model)
    inside = tuple(f"{name}." for name in lists)
    norms = [
        name for name, module in model.named_modules() if name and is_norm(module) and not name.startswith(inside)
    ]
    head = output_embedding(model)
    heads = [name for name, module in model.named_modules() if module is head and name] if head is not None else []
    if not heads:
        heads = [
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not name.startswith(inside)
        ][-3:]
    return [f"{name} ({len(block_list)} blocks)" for name, block_list in lists.items()], norms, heads


def refuse(model: nn.Module, reason: str, registered: Sequence[str]) -> NoReturn:
    lists, norms, heads = model_candidates(model)
    key = str(getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__)

    def show(paths: list[str]) -> str:
        more = f", … ({len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else ""
        return ", ".join(paths[:_SHOWN]) + more if paths else "none"

    call = (
        f"spinal_callback.register_architecture({key!r}, blocks={strip_length(lists[0]) if lists else '...'!r}, "
        f"final_norm={norms[-1] if norms else None!r}, unembed={heads[0] if heads else '...'!r})"
    )
    raise UnsupportedArchitectureError(
        f"Unsupported architecture: {shown(model)} is not registered and its layout cannot be discovered: {reason}. "
        f"This model has decoder-block lists: {show(lists)}; norms outside them: {show(norms)}; unembedding "
        f"candidates: {show(heads)}. Register it with {call}, using the dotted paths of its decoder-block "
        f"ModuleList, final norm and unembedding as print(model) shows them. Registered: {', '.join(registered)}."
    )


def strip_length(listed: str) -> str:
    return listed.split(" (", 1)[0]


def shown(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    cls_name = type(model).__name__
    return f"{cls_name} (model_type {model_type!r})" if model_type else cls_name


def output_embedding(model: nn.Module) -> nn.Module | None:
    """``model.get_output_embeddings()`` when it is a module; ``None`` without one (or without the method)."""
    getter = getattr(model, "get_output_embeddings", None)
    if not callable(getter):
        return None
    try:
        head = getter()
    except (NotImplementedError, AttributeError):
        return None
    return head if isinstance(head, nn.Module) else None


def layer_count(config: object) -> int | None:
    configs = [config]
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        try:
            configs.insert(0, get_text_config())
        except Exception:  # an unusual config: its own attributes are read below
            pass
    for cfg in configs:
        for attr in LAYER_COUNT_ATTRIBUTES:
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def block_lists(model: nn.Module) -> dict[str, nn.ModuleList]:
    """Top-level ``ModuleList``s of composite modules (lists nested in another one are left out)."""
    lists = {
        name: module
        for name, module in model.named_modules()
        if name
        and isinstance(module, nn.ModuleList)
        and len(module) > 0
        and all(next(block.children(), None) is not None for block in module)
    }
    return {
        name: module
        for name, module in lists.items()
        if not any(name.startswith(f"{other}.") for other in lists if other != name)
    }


def decoder_path(model: nn.Module) -> str | None:
    get_decoder = getattr(model, "get_decoder", None)
    try:
        decoder = get_decoder() if callable(get_decoder) else None
    except Exception:  # models without a decoder rule raise here
        return None
    return next((name for name, module in model.named_modules() if module is decoder), None)


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
