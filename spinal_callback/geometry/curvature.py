"""Curvature of the depth path and the early / mid / late bands of depth."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["BAND_NAMES", "band_slices", "hidden_curvature", "hidden_curvature_at", "transport_curvature"]

BAND_NAMES = ("early", "mid", "late")


def transport_curvature(transport: Sequence[float] | torch.Tensor, num_layers: int) -> list[float]:
    """Transport curvature κ^𝓛_ℓ = |𝓛_{ℓ+1} − 2𝓛_ℓ + 𝓛_{ℓ−1}| along depth.

    Args:
        transport: ``𝓛_1 … 𝓛_{L−1}`` (𝓛_ℓ is the step from layer ℓ to ℓ+1).
        num_layers: ``L``.

    Returns:
        ``L`` values indexed by layer (entry ``ℓ−1`` is κ_ℓ); defined for ``ℓ = 2 … L−2``, NaN at
        the other layers (where a neighbour of 𝓛_ℓ does not exist).
    """
    values = [float(v) for v in transport]
    if len(values) != max(num_layers - 1, 0):
        raise ValueError(f"`transport` must have num_layers - 1 = {num_layers - 1} entries, got {len(values)}")
    out = [math.nan] * num_layers
    for layer in range(2, num_layers - 1):  # 1-based ℓ with 𝓛_{ℓ-1}, 𝓛_ℓ, 𝓛_{ℓ+1} defined
        i = layer - 1
        out[i] = abs(values[i + 1] - 2.0 * values[i] + values[i - 1])
    return out


def hidden_curvature(hidden: Sequence[torch.Tensor]) -> list[float]:
    """Hidden-state curvature κ^h_ℓ = mean_t ‖h_{ℓ+1,t} − 2h_{ℓ,t} + h_{ℓ−1,t}‖ / mean_t ‖h_{ℓ,t}‖.

    Args:
        hidden: ``L`` tensors ``(n, d)`` — the same tokens at every layer.

    Returns:
        ``L`` values; defined for ``ℓ = 2 … L−1``, NaN at the ends and where ``mean_t ‖h_ℓ‖ = 0``.
    """
    num_layers = len(hidden)
    out = [math.nan] * num_layers
    for i in range(1, num_layers - 1):
        out[i] = hidden_curvature_at(hidden[i - 1], hidden[i], hidden[i + 1], layer=i + 1)
    return out


def hidden_curvature_at(prev: torch.Tensor, cur: torch.Tensor, nxt: torch.Tensor, layer: int = 0) -> float:
    """κ^h of one layer from its own and its two neighbours' ``(n, d)`` hidden states (float64).

    Returns NaN for zero tokens, non-finite input or ``mean_t ‖h_ℓ‖ = 0``; ``layer`` (1-based) only
    names the layer in the error raised for mismatched shapes.
    """
    a, b, c = (h.detach().to(torch.float64) for h in (prev, cur, nxt))
    if not (a.shape == b.shape == c.shape):
        raise ValueError(f"Layers {layer - 1}, {layer}, {layer + 1} have different hidden shapes")
    scale = b.norm(dim=-1).mean()
    if b.shape[0] == 0 or not bool(torch.isfinite(scale)) or float(scale) == 0.0:
        return math.nan
    return float((c - 2.0 * b + a).norm(dim=-1).mean() / scale)


def band_slices(num_layers: int, boundaries: tuple[float, float] = (1 / 3, 2 / 3)) -> dict[str, range]:
    """Split ``num_layers`` blocks into early / mid / late bands at fractions of depth.

    The cut points are ``round(f·L)`` (halves rounded up), so a 32-layer model with the default
    thirds gets early = blocks 1–11, mid = 12–21, late = 22–32 (0-based ranges are returned).
    """
    f1, f2 = boundaries
    if not 0.0 < f1 < f2 < 1.0:
        raise ValueError(f"band boundaries must satisfy 0 < early_end < mid_end < 1, got {boundaries!r}")
    b1 = math.floor(f1 * num_layers + 0.5)
    b2 = max(b1, math.floor(f2 * num_layers + 0.5))
    return {"early": range(0, b1), "mid": range(b1, b2), "late": range(b2, num_layers)}
