"""Layout discovery: the decoder blocks, final norm and unembedding of a causal LM nobody registered.

:func:`~spinal_callback.model.architectures.resolve_layout` comes here when the registry has no entry for a
model. The rules, in order:

1. **Unembedding**: ``model.get_output_embeddings()``, Hugging Face's name for the LM head. A model without
   one (``LlamaModel``, a sequence classifier) is refused: pass a ``*ForCausalLM``.
2. **Decoder blocks**: the ``nn.ModuleList`` of composite modules whose length is the config's layer count
   (``num_hidden_layers``, ``n_layer``, ``num_layers`` or ``n_layers``, of the text config for multimodal
   models). Lists inside another such list (MoE experts) are the blocks' own; of several, those inside
   ``model.get_decoder()`` are kept.
3. **Final norm**: a norm module next to the blocks (a child of the same parent), preferring one registered
   after the block list (Bloom's ``word_embeddings_layernorm`` comes before ``h``, ``ln_f`` after); then any
   other norm outside the blocks; or none.
4. **Output-head extras** named by the config: ``logit_scale`` (Cohere, multiplied), ``logits_scaling``
   (Granite, divided), ``final_logit_softcapping`` (Gemma 2 style ``c·tanh(z/c)``).
5. **Check**: when the parameters are plain local tensors (not sharded, not on the meta device), one
   no-grad eval forward of 8 tokens checks that the lens of the last block — final norm, unembedding,
   extras — reproduces the model's own logits (``max |Δ| <= 1e-4·max(1, max |z|)``; ``1e-2`` in 16 bits or
   under a mixed-precision forward wrapper);
   the first candidate that does is used, and a model that none reproduces is refused. On sharded
   parameters the static choice is used when it is unique and said to be unchecked.

The result is cached per model object, and logged once per architecture at INFO level.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from spinal_callback.model.candidates import (
    LAYER_COUNT_ATTRIBUTES,
    block_lists,
    decoder_path,
    is_norm,
    layer_count,
    missing_head_error,
    model_candidates,
    output_embedding,
    refuse,
    shown,
)
from spinal_callback.model.check_forward import last_block_and_logits, reduced_precision, unchecked_reason
from spinal_callback.model.layout import (
    DecoderLayout,
    LogitTransform,
    UnsupportedArchitectureError,
    divide_by_logits_scaling,
    multiply_by_logit_scale,
    softcap_logits,
)

__all__ = ["LAYER_COUNT_ATTRIBUTES", "discover_layout", "missing_head_error", "model_candidates", "output_embedding"]

logger = logging.getLogger(__name__)

#: Config attributes of output-head extras: (attribute, transform, what it does).
_HEAD_EXTRAS: tuple[tuple[str, LogitTransform, str], ...] = (
    ("logit_scale", multiply_by_logit_scale, "logits × config.logit_scale"),
    ("logits_scaling", divide_by_logits_scaling, "logits / config.logits_scaling"),
    ("final_logit_softcapping", softcap_logits, "soft-capping at config.final_logit_softcapping"),
)

_found: weakref.WeakKeyDictionary[nn.Module, _Found] = weakref.WeakKeyDictionary()
_logged: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class _Found:
    """A discovered layout as paths (re-resolved at every call, so replaced sub-modules are seen)."""

    blocks: str
    final_norm: str | None
    unembed: str
    extras: tuple[str, ...]
    checked: str  # how the choice was confirmed, for the log line


def discover_layout(model: nn.Module, registered: Sequence[str] = ()) -> DecoderLayout:
    """Discover the layout of ``model`` (the bare causal LM, wrappers removed); see the module docstring.

    Args:
        model: the bare causal LM.
        registered: the registry's names, listed in error messages.

    Raises:
        UnsupportedArchitectureError: no output embedding (pass a ``*ForCausalLM``), no layer count, no or
            several candidate block lists or final norms, or no candidate whose lens reproduces the model's
            logits. The message names the candidate paths this model has and a ``register_architecture`` call.
    """
    found = _found.get(model)
    if found is None:
        found = _discover(model, registered)
        _found[model] = found
        _log_once(model, found)
    return _layout(model, found)


# ----------------------------------------------------------------------------------------------- steps
def _discover(model: nn.Module, registered: Sequence[str]) -> _Found:
    head = output_embedding(model)
    if head is None:
        if callable(getattr(model, "get_output_embeddings", None)):
            raise missing_head_error(model)
        refuse(
            model,
            "it has no get_output_embeddings() (it is not a Hugging Face PreTrainedModel), so its "
            "unembedding is unknown",
            registered,
        )
    unembed = next((name for name, module in model.named_modules() if module is head and name), None)
    if unembed is None:
        refuse(model, "its get_output_embeddings() is not a sub-module of the model", registered)
    count = layer_count(getattr(model, "config", None))
    if count is None:
        refuse(model, f"its config has no layer count ({' / '.join(LAYER_COUNT_ATTRIBUTES)})", registered)
    blocks = _blocks(model, count, registered)
    norms, static_norm = _norm_candidates(model, blocks)
    extras = tuple(attr for attr, _, _ in _HEAD_EXTRAS if _extra_is_set(getattr(model, "config", None), attr))
    reason = unchecked_reason(model)
    if reason is None:
        try:
            hidden, logits = last_block_and_logits(model, _module_list(model, blocks), head)
        except Exception as err:  # a model that needs other inputs: the static rules decide
            reason = f"the check forward failed ({type(err).__name__}: {err})"
        else:
            return _check(model, blocks, unembed, norms, extras, hidden, logits, registered)
    if static_norm is None and norms:
        refuse(
            model,
            f"the final norm is ambiguous among {', '.join(norms)} and cannot be checked with a forward ({reason})",
            registered,
        )
    return _Found(blocks, static_norm, unembed, extras, f"unchecked: {reason}")


def _blocks(model: nn.Module, count: int, registered: Sequence[str]) -> str:
    lists = block_lists(model)
    matching = [name for name, block_list in lists.items() if len(block_list) == count]
    if len(matching) > 1:
        decoder = decoder_path(model)
        if decoder is not None:
            inner = [name for name in matching if not decoder or name.startswith(f"{decoder}.")]
            matching = inner or matching
    if len(matching) == 1:
        return matching[0]
    if not matching:
        refuse(model, f"no nn.ModuleList of blocks has the config's layer count {count}", registered)
    refuse(model, f"several block lists have the config's layer count {count}: {', '.join(matching)}", registered)


def _norm_candidates(model: nn.Module, blocks: str) -> tuple[list[str], str | None]:
    """Final-norm candidates in order of preference, and the one static rules pick (``None``: none/several)."""
    parent_path, _, attr = blocks.rpartition(".")
    parent = model.get_submodule(parent_path)
    children = list(parent.named_children())
    position = next(i for i, (name, _) in enumerate(children) if name == attr)
    prefix = f"{parent_path}." if parent_path else ""
    after = [prefix + name for name, child in children[position + 1 :] if is_norm(child)]
    before = [prefix + name for name, child in children[:position] if is_norm(child)]
    static = after[0] if len(after) == 1 else before[0] if not after and len(before) == 1 else None
    _, outside, _ = model_candidates(model)
    ordered = list(dict.fromkeys([*after, *before, *outside]))
    return ordered, static


def _check(
    model: nn.Module,
    blocks: str,
    unembed: str,
    norms: list[str],
    extras: tuple[str, ...],
    hidden: torch.Tensor,
    logits: torch.Tensor,
    registered: Sequence[str],
) -> _Found:
    """The first (norm, extras) whose lens of the last block's output ``hidden`` reproduces ``logits``."""
    target = logits.float()
    tolerance = (1e-2 if reduced_precision(model, hidden, logits) else 1e-4) * max(1.0, float(target.abs().max()))
    best = float("inf")
    for norm in [*norms, None]:
        for extra in (extras, ()) if extras else ((),):
            found = _Found(blocks, norm, unembed, extra, "")
            try:
                with torch.no_grad():
                    lens = _layout(model, found).lens_logits(hidden)
            except Exception:  # e.g. a projection between norm and head changes the width
                continue
            if lens.shape != target.shape:
                continue
            error = float((lens - target).abs().max())
            best = min(best, error)
            if error <= tolerance:
                return _Found(
                    blocks,
                    norm,
                    unembed,
                    extra,
                    f"checked: the last block's lens reproduces the logits (max |Δ| {error:.1e})",
                )
    shown = ", ".join(norms) if norms else "no norm"
    extra_text = f" with and without {', '.join(extras)}" if extras else ""
    refuse(
        model,
        f"found blocks {blocks} and unembedding {unembed}, but with no final-norm candidate ({shown}, "
        f"or none){extra_text} does the last block's logit lens reproduce the model's logits (smallest max "
        f"|Δ| {best:.3g}, allowed {tolerance:.1e}): the model changes the last hidden state or the logits in a "
        "way discovery cannot see (a projection before the head, a scaled or capped output); register it with "
        "pre_unembed=... and/or logit_transform=...",
        registered,
    )


# --------------------------------------------------------------------------------------------- helpers
def _layout(model: nn.Module, found: _Found) -> DecoderLayout:
    config = getattr(model, "config", None)
    transforms = [fn for attr, fn, _ in _HEAD_EXTRAS if attr in found.extras]

    def transform(logits: torch.Tensor, cfg: object) -> torch.Tensor:
        for fn in transforms:
            logits = fn(logits, cfg)
        return logits

    return DecoderLayout(
        model=model,
        architecture=str(getattr(config, "model_type", None) or type(model).__name__),
        blocks=list(_module_list(model, found.blocks)),
        final_norm=None if found.final_norm is None else model.get_submodule(found.final_norm),
        pre_unembed=[],
        unembed=model.get_submodule(found.unembed),
        logit_transform=transform if transforms else None,
        discovered=True,
    )


def _log_once(model: nn.Module, found: _Found) -> None:
    key = (type(model).__name__, str(getattr(getattr(model, "config", None), "model_type", "")))
    if key in _logged or os.environ.get("RANK", "0") != "0":
        return
    _logged.add(key)
    extras = [text for attr, _, text in _HEAD_EXTRAS if attr in found.extras]
    logger.info(
        "spinal-callback: %s is not in the architecture registry; discovered its layout: blocks %s (%d), final "
        "norm %s, unembedding %s%s (%s). register_architecture(%r, blocks=%r, final_norm=%r, unembed=%r) makes "
        "it explicit.",
        shown(model),
        found.blocks,
        len(_module_list(model, found.blocks)),
        found.final_norm or "none",
        found.unembed,
        f", then {', '.join(extras)}" if extras else "",
        found.checked,
        key[1] or key[0],
        found.blocks,
        found.final_norm,
        found.unembed,
    )


def _module_list(model: nn.Module, path: str) -> nn.ModuleList:
    blocks = model.get_submodule(path)
    if not isinstance(blocks, nn.ModuleList):
        raise UnsupportedArchitectureError(f"{shown(model)}: {path!r} is {type(blocks).__name__}, not a ModuleList")
    return blocks


def _extra_is_set(config: object, attr: str) -> bool:
    value = getattr(config, attr, None)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value not in (0, 1)


