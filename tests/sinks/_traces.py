"""Hand-made depth traces for the sink tests (no model needed)."""

from __future__ import annotations

import math

from spinal_callback.geometry.trace import DepthTrace, _summarise_bands

NAN = math.nan


def make_trace(offset: float = 0.0, num_layers: int = 6) -> DepthTrace:
    """A trace with known values: contraction_ℓ = offset + ℓ, transport NaN at the last layer, etc."""
    layers = list(range(1, num_layers + 1))
    trace = DepthTrace(
        layers=layers,
        contraction=[offset + layer for layer in layers],
        transport=[0.1 * layer + offset for layer in layers[:-1]] + [NAN],
        entropy=[5.0 - 0.5 * layer for layer in layers],
        effective_rank=[float(10 * layer) for layer in layers],
        transport_curvature=[NAN] + [0.01 * layer for layer in layers[1:-2]] + [NAN, NAN],
        hidden_curvature=[NAN] + [0.2 + 0.1 * layer for layer in layers[1:-1]] + [NAN],
        num_tokens=7,
    )
    trace.bands = _summarise_bands(trace, (1 / 3, 2 / 3))
    return trace
