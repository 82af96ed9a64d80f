"""The check forward of layout discovery: one short no-grad forward whose logits the lens must reproduce,
and when such a forward cannot run on this process's copy of the model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spinal_callback.model.runner import block_output
from spinal_callback.model.sharding import sharding_of
from spinal_callback.model.sharding_rules import SHARDING_NAMES

__all__ = ["CHECK_TOKENS", "last_block_and_logits", "reduced_precision", "unchecked_reason"]

#: Tokens of the check forward.
CHECK_TOKENS = 8


def last_block_and_logits(
    model: nn.Module, blocks: nn.ModuleList, head: nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One no-grad eval forward of 8 tokens: the last block's output and the model's logits (flags restored)."""
    config = getattr(model, "config", None)
    weight = getattr(head, "weight", None)
    vocab = int(weight.shape[0]) if isinstance(weight, torch.Tensor) and weight.ndim == 2 else None
    vocab = vocab or int(getattr(config, "vocab_size", 0) or 0)
    if vocab <= 0:
        raise ValueError("the vocabulary size is unknown")
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embeddings = get_embeddings() if callable(get_embeddings) else None
    reference = getattr(embeddings, "weight", None)
    if not isinstance(reference, torch.Tensor):
        reference = next(model.parameters())
    ids = ((torch.arange(CHECK_TOKENS) * 7 + 3) % vocab).unsqueeze(0).to(reference.device)
    kwargs: dict[str, Any] = {"use_cache": False} if getattr(config, "use_cache", None) is not None else {}
    seen: list[torch.Tensor] = []
    last = blocks[-1]
    handle = last.register_forward_hook(lambda module, args, output: seen.append(block_output(output)))
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            output = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
    finally:
        handle.remove()
        for module, mode in modes:
            module.training = mode
    logits = getattr(output, "logits", None)
    if logits is None:
        logits = output[0] if isinstance(output, (tuple, list)) else output
    if len(seen) != 1 or not isinstance(logits, torch.Tensor):
        raise RuntimeError(f"the last block ran {len(seen)} times in one forward, or the output had no logits")
    return seen[0], logits


def unchecked_reason(model: nn.Module) -> str | None:
    """Why a check forward cannot run on this process's copy of the model, or ``None`` when it can."""
    kind = sharding_of(model)
    if kind is not None:
        return f"sharded with {SHARDING_NAMES[kind]}"
    for name, param in model.named_parameters():
        if param.is_meta:
            return f"parameter {name} is on the meta device"
        if type(param.data) is not torch.Tensor:
            return f"parameter {name} is a {type(param.data).__name__}"
        if param.numel() == 0:
            return f"parameter {name} is empty on this process (sharded)"
    return None


def reduced_precision(model: nn.Module, *tensors: torch.Tensor) -> bool:
    """Whether the check forward may have run in 16 bits: 16-bit tensors, or a forward wrapped on the instance
    (accelerate's mixed-precision ``autocast`` wrapper, which the lens, run outside the forward, does not see)."""
    low = (torch.float16, torch.bfloat16)
    return any(t.dtype in low for t in tensors) or "forward" in vars(model) or torch.is_autocast_enabled()
