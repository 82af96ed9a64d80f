"""Band statistics of a depth trace: per band and metric, the mean, minimum and maximum over its layers."""

from __future__ import annotations

import math

from spinal_callback.geometry.curvature import band_slices
from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace

__all__ = ["band_positions", "band_statistics"]


def band_positions(trace: DepthTrace) -> dict[str, list[int]]:
    """List positions of each band's layers, from the ``"layers": [first, last]`` range in ``trace.bands``.

    Falls back to thirds of depth (:func:`band_slices`) when the trace carries no bands.
    """
    if not trace.bands:
        return {band: list(idx) for band, idx in band_slices(trace.num_layers).items()}
    positions: dict[str, list[int]] = {}
    for band, summary in trace.bands.items():
        span = summary.get("layers") or []
        if len(span) == 2:
            first, last = int(span[0]), int(span[1])
            positions[band] = [i for i, layer in enumerate(trace.layers) if first <= layer <= last]
        else:
            positions[band] = []
    return positions


def band_statistics(trace: DepthTrace) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Per band and metric, ``(mean, min, max)`` over the band's layers (NaN entries ignored).

    The mean is the trace's own band summary when present, else the NaN-ignoring mean of the
    per-layer values; min / max come from the per-layer lists. Bands without layers are left out;
    a metric with no finite value in a band gives ``(nan, nan, nan)``.
    """
    stats: dict[str, dict[str, tuple[float, float, float]]] = {}
    for band, idx in band_positions(trace).items():
        if not idx:
            continue
        summary = trace.bands.get(band, {})
        stats[band] = {}
        for metric in LAYER_METRICS:
            values = getattr(trace, metric)
            finite = [float(values[i]) for i in idx if math.isfinite(values[i])]
            if not finite:
                stats[band][metric] = (math.nan, math.nan, math.nan)
                continue
            stored = summary.get(metric)
            if isinstance(stored, (int, float)) and math.isfinite(stored):
                mean = float(stored)
            else:
                mean = sum(finite) / len(finite)
            stats[band][metric] = (mean, min(finite), max(finite))
    return stats
