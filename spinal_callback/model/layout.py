"""``DecoderLayout``: the resolved parts of one model — its decoder blocks and its logit lens.

Also the error raised when they cannot be located, and the output-head transforms that some
architectures apply after the unembedding (soft-capping, logit scaling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "DecoderLayout",
    "LogitTransform",
    "UnsupportedArchitectureError",
    "divide_by_logits_scaling",
    "multiply_by_logit_scale",
    "softcap_logits",
]

#: ``f(logits, config) -> logits``: what a model's output head does after the unembedding.
LogitTransform = Callable[[torch.Tensor, object], torch.Tensor]


class UnsupportedArchitectureError(LookupError):
    """Raised when a model's decoder blocks, final norm or unembedding cannot be located."""


def softcap_logits(logits: torch.Tensor, config: object) -> torch.Tensor:
    """Gemma-2 style soft-capping ``c·tanh(z / c)`` with ``c = config.final_logit_softcapping`` (off when unset)."""
    cap = getattr(config, "final_logit_softcapping", None)
    if cap:
        return torch.tanh(logits / cap) * cap
    return logits


def divide_by_logits_scaling(logits: torch.Tensor, config: object) -> torch.Tensor:
    """Granite's ``z / config.logits_scaling`` (off when unset)."""
    scale = getattr(config, "logits_scaling", None)
    return logits / scale if scale else logits


def multiply_by_logit_scale(logits: torch.Tensor, config: object) -> torch.Tensor:
    """Cohere's ``z · config.logit_scale`` (off when unset)."""
    scale = getattr(config, "logit_scale", None)
    return logits * scale if scale is not None else logits


@dataclass
class DecoderLayout:
    """The resolved parts of one model: its blocks and its logit lens.

    Attributes:
        model: the bare causal LM (wrappers removed).
        architecture: the registry key that matched, or for a discovered layout the model's
            ``config.model_type`` (else its class name).
        blocks: the decoder blocks, in depth order (block 1 = ``blocks[0]``).
        final_norm: the final norm module, or ``None``.
        pre_unembed: modules applied after the final norm, before the unembedding.
        unembed: the unembedding module ``W_U``.
        logit_transform: post-unembedding transform, or ``None``.
        discovered: ``True`` when the layout was found by discovery (no registry entry), see
            :mod:`spinal_callback.model.discovery`.
    """

    model: nn.Module
    architecture: str
    blocks: list[nn.Module]
    final_norm: nn.Module | None
    pre_unembed: list[nn.Module]
    unembed: nn.Module
    logit_transform: LogitTransform | None = None
    discovered: bool = False

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def vocab_size(self) -> int:
        """Rows of the unembedding; from the config when the weight is a shard (FSDP's flat or empty
        views, ZeRO-3's placeholders are not 2-D matrices of the full size)."""
        weight = getattr(self.unembed, "weight", None)
        config_size = int(getattr(getattr(self.model, "config", None), "vocab_size", 0) or 0)
        full = isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.numel() > 0
        if full and not hasattr(weight, "ds_id"):
            return int(weight.shape[0])  # type: ignore[union-attr]  # a DTensor (FSDP2) reports its full shape
        return config_size

    def lens_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logit lens in float32: ``W_U · norm_final(h)`` with the model's own modules.

        The modules are called directly (not through ``lm_head`` forward hooks), in their own dtype,
        and the logits are returned in float32.
        """
        x = hidden
        if self.final_norm is not None:
            x = self.final_norm(x)
        for module in self.pre_unembed:
            x = module(x)
        weight = getattr(self.unembed, "weight", None)
        if isinstance(weight, torch.Tensor) and x.dtype != weight.dtype:
            x = x.to(weight.dtype)
        logits = self.unembed(x).float()
        if self.logit_transform is not None:
            logits = self.logit_transform(logits, getattr(self.model, "config", None))
        return logits
