"""``DecoderLayout``: the resolved parts of one model — its decoder blocks and its logit lens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DecoderLayout", "LogitTransform"]

LogitTransform = Callable[[torch.Tensor, object], torch.Tensor]


@dataclass
class DecoderLayout:
    """The resolved parts of one model: its blocks and its logit lens.

    Attributes:
        model: the bare causal LM (wrappers removed).
        architecture: the registry key that matched.
        blocks: the decoder blocks, in depth order (block 1 = ``blocks[0]``).
        final_norm: the final norm module, or ``None``.
        pre_unembed: modules applied after the final norm, before the unembedding.
        unembed: the unembedding module ``W_U``.
        logit_transform: post-unembedding transform, or ``None``.
    """

    model: nn.Module
    architecture: str
    blocks: list[nn.Module]
    final_norm: nn.Module | None
    pre_unembed: list[nn.Module]
    unembed: nn.Module
    logit_transform: LogitTransform | None = None

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def vocab_size(self) -> int:
        weight = getattr(self.unembed, "weight", None)
        if isinstance(weight, torch.Tensor):
            return int(weight.shape[0])
        return int(getattr(getattr(self.model, "config", None), "vocab_size", 0))

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
