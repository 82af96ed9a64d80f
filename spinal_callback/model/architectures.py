"""Architecture registry: where a causal LM keeps its decoder blocks, final norm and unembedding.

Models are looked up by ``config.model_type`` (the name Hugging Face uses in ``config.json``), then by
class name. Wrappers that sit in front of the model — PEFT's ``PeftModel``, DDP / DataParallel / FSDP
``.module``, ``torch.compile``'s ``_orig_mod`` — are seen through. A model the registry does not list is
handled by :mod:`~spinal_callback.model.discovery` (the block list of the config's layer count, the final
norm next to it, ``get_output_embeddings()``, checked against the model's own logits);
:func:`register_architecture` makes a layout explicit, or fixes one that discovery refuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from spinal_callback.model.discovery import discover_layout, missing_head_error, model_candidates, output_embedding
from spinal_callback.model.layout import (
    DecoderLayout,
    LogitTransform,
    UnsupportedArchitectureError,
    divide_by_logits_scaling,
    softcap_logits,
)
from spinal_callback.model.unwrap import unwrap_model, unwrap_parallel

__all__ = [
    "ArchitectureSpec",
    "DecoderLayout",
    "UnsupportedArchitectureError",
    "register_architecture",
    "registered_architectures",
    "resolve_layout",
    "unwrap_model",
    "unwrap_parallel",
]


@dataclass(frozen=True)
class ArchitectureSpec:
    """Where one architecture keeps the parts the logit lens needs.

    Each path is a dotted attribute path from the bare causal-LM module (``"model.layers"``). A tuple
    gives alternatives tried in order, for names that changed between transformers versions.

    Attributes:
        blocks: path of the ``nn.ModuleList`` of decoder blocks.
        final_norm: path of the final normalisation applied before the unembedding, or ``None``.
        unembed: path of the unembedding (``lm_head``) linear layer.
        pre_unembed: paths of modules applied, in order, between the final norm and the unembedding
            (OPT's ``project_out``); a path that resolves to ``None`` is skipped.
        logit_transform: ``f(logits, config) -> logits`` applied after the unembedding, for models
            whose output head does more than a linear map (Gemma-2 soft-capping, Granite scaling).
    """

    blocks: str | tuple[str, ...]
    unembed: str | tuple[str, ...]
    final_norm: str | tuple[str, ...] | None = None
    pre_unembed: tuple[str, ...] = ()
    logit_transform: LogitTransform | None = field(default=None, compare=False)


_softcap = softcap_logits
_granite_scale = divide_by_logits_scaling
_LLAMA_LIKE = ArchitectureSpec(blocks="model.layers", final_norm="model.norm", unembed="lm_head")
_REGISTRY: dict[str, ArchitectureSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "mixtral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen2_moe": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "qwen3_moe": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": ArchitectureSpec("model.layers", "lm_head", "model.norm", logit_transform=_softcap),
    "gemma3_text": ArchitectureSpec("model.layers", "lm_head", "model.norm", logit_transform=_softcap),
    "gemma3": ArchitectureSpec(
        blocks="model.language_model.layers",
        final_norm="model.language_model.norm",
        unembed="lm_head",
        logit_transform=_softcap,
    ),
    "granite": ArchitectureSpec("model.layers", "lm_head", "model.norm", logit_transform=_granite_scale),
    "phi": ArchitectureSpec(blocks="model.layers", final_norm="model.final_layernorm", unembed="lm_head"),
    "gpt2": ArchitectureSpec(blocks="transformer.h", final_norm="transformer.ln_f", unembed="lm_head"),
    "gpt_neox": ArchitectureSpec(
        blocks="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        unembed=("lm_head", "embed_out"),
    ),
    "opt": ArchitectureSpec(
        blocks="model.decoder.layers",
        final_norm="model.decoder.final_layer_norm",
        pre_unembed=("model.decoder.project_out",),
        unembed="lm_head",
    ),
}


def register_architecture(
    name: str,
    *,
    blocks: str | Sequence[str],
    unembed: str | Sequence[str],
    final_norm: str | Sequence[str] | None = None,
    pre_unembed: Sequence[str] = (),
    logit_transform: LogitTransform | None = None,
    overwrite: bool = False,
) -> ArchitectureSpec:
    """Teach spinal-callback where an architecture keeps its decoder blocks and output head.

    Args:
        name: the model's ``config.model_type`` (e.g. ``"starcoder2"``) or its class name.
        blocks: dotted path of the decoder-block ``ModuleList`` from the causal-LM module.
        unembed: dotted path of the unembedding linear layer.
        final_norm: dotted path of the final norm, or ``None`` if the model has none.
        pre_unembed: dotted paths of modules applied between final norm and unembedding.
        logit_transform: optional ``f(logits, config) -> logits`` after the unembedding.
        overwrite: replace an existing registration of ``name`` instead of refusing.

    Returns:
        The registered :class:`ArchitectureSpec`.

    Example:
        >>> register_architecture("starcoder2", blocks="model.layers", final_norm="model.norm",
        ...                       unembed="lm_head")  # doctest: +ELLIPSIS
        ArchitectureSpec(...)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` must be a non-empty string (a config.model_type or class name), got {name!r}"
        )
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"Architecture {name!r} is already registered; pass overwrite=True to replace it."
        )

    def _paths(value: str | Sequence[str], arg: str) -> str | tuple[str, ...]:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ValueError(f"`{arg}` must be a dotted attribute path or a list of them, got {value!r}")

    def _pre_unembed_paths(value: str | Sequence[str]) -> tuple[str, ...]:
        if isinstance(value, str):  # one path, not a sequence of one-letter paths
            value = (value,)
        if isinstance(value, Sequence) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
        raise ValueError(f"`pre_unembed` must be a dotted attribute path or a list of them, got {value!r}")

    spec = ArchitectureSpec(
        blocks=_paths(blocks, "blocks"),
        unembed=_paths(unembed, "unembed"),
        final_norm=None if final_norm is None else _paths(final_norm, "final_norm"),
        pre_unembed=_pre_unembed_paths(pre_unembed),
        logit_transform=logit_transform,
    )
    _REGISTRY[name] = spec
    return spec


def registered_architectures() -> tuple[str, ...]:
    """Names (``config.model_type`` values or class names) with a registered layout."""
    return tuple(sorted(_REGISTRY))


def _get_path(root: nn.Module, path: str | tuple[str, ...]) -> tuple[object, str] | None:
    for candidate in (path,) if isinstance(path, str) else path:
        obj: object = root
        for part in candidate.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        else:
            return obj, candidate
    return None


def _declared_none(root: nn.Module, path: str | tuple[str, ...]) -> bool:
    """Whether one alternative of ``path`` exists on ``root`` and is set to ``None`` on purpose.

    Some configurations drop an optional module that way (OPT with ``do_layer_norm_before=False``, e.g.
    ``facebook/opt-350m``, sets ``final_layer_norm = None``).
    """
    for candidate in (path,) if isinstance(path, str) else path:
        parent_path, _, attr = candidate.rpartition(".")
        parent = _get_path(root, parent_path) if parent_path else (root, "")
        if parent is not None and hasattr(parent[0], attr) and getattr(parent[0], attr) is None:
            return True
    return False


def _how_to_register(model: nn.Module, key: str) -> str:
    """Registration advice with the candidate paths ``model`` really has (never another family's paths)."""
    lists, norms, heads = model_candidates(model)
    blocks = lists[0].split(" (", 1)[0] if lists else "..."
    return (
        f"register it with spinal_callback.register_architecture({key!r}, blocks={blocks!r}, "
        f"final_norm={norms[-1] if norms else None!r}, unembed={heads[0] if heads else '...'!r}) — giving the dotted "
        "paths of its decoder-block ModuleList, final norm and unembedding as they appear in print(model). "
        f"This model has decoder-block lists: {', '.join(lists) or 'none'}; norms outside them: "
        f"{', '.join(norms[:6]) or 'none'}. Registered: {', '.join(registered_architectures())}."
    )


def resolve_layout(model: nn.Module) -> DecoderLayout:
    """Locate the decoder blocks, final norm and unembedding of ``model``.

    Args:
        model: a Hugging Face causal LM, possibly wrapped by PEFT, DDP/FSDP or ``torch.compile``.

    A model the registry does not list is discovered (:func:`~spinal_callback.model.discovery.discover_layout`,
    logged once at INFO level).

    Raises:
        UnsupportedArchitectureError: the model has no output embedding (pass a ``*ForCausalLM``), a
            registered path does not exist on this model, or the architecture is not registered and its
            layout is ambiguous or cannot be discovered. The message names the class, the candidate paths
            this model has, and how to register it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    bare = unwrap_model(model)
    config = getattr(bare, "config", None)
    model_type = getattr(config, "model_type", None)
    cls_name = type(bare).__name__
    key = model_type if model_type in _REGISTRY else cls_name if cls_name in _REGISTRY else None
    if key is None:
        return discover_layout(bare, registered_architectures())
    spec = _REGISTRY[key]
    if _get_path(bare, spec.unembed) is None and callable(getattr(bare, "get_output_embeddings", None)):
        if output_embedding(bare) is None:
            raise missing_head_error(bare)

    def need(path: str | tuple[str, ...], what: str) -> object:
        found = _get_path(bare, path)
        if found is None:
            raise UnsupportedArchitectureError(
                f"Architecture {key!r} ({cls_name}) is registered with {what} at {path!r}, but the model "
                f"has no such attribute — {_how_to_register(bare, key)} and overwrite=True."
            )
        return found[0]

    blocks = need(spec.blocks, "decoder blocks")
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        raise UnsupportedArchitectureError(
            f"Architecture {key!r} ({cls_name}): {spec.blocks!r} is {type(blocks).__name__}, not a "
            "non-empty ModuleList of decoder blocks."
        )
    unembed = need(spec.unembed, "unembedding")
    final_norm = None
    if spec.final_norm is not None and not _declared_none(bare, spec.final_norm):
        final_norm = need(spec.final_norm, "final norm")
    pre = [m for p in spec.pre_unembed if (f := _get_path(bare, p)) is not None for m in [f[0]]]
    for name, module in (("unembed", unembed), ("final_norm", final_norm)):
        if module is not None and not callable(module):
            raise UnsupportedArchitectureError(f"Architecture {key!r}: {name} is not callable")
    return DecoderLayout(
        model=bare,
        architecture=key,
        blocks=list(blocks),
        final_norm=final_norm,  # type: ignore[arg-type]
        pre_unembed=[m for m in pre if isinstance(m, nn.Module)],
        unembed=unembed,  # type: ignore[arg-type]
        logit_transform=spec.logit_transform,
    )
