"""Turn a depth trace into detector input: scalar band summaries and per-layer vectors.

The monitor calls ``signals, layers = signals_from_bands(trace.bands)`` (plus TRL's metrics) and, for the
cross-layer test, ``vectors, vector_layers = vectors_from_trace(trace.to_dict())``, then
``detector.update(step, signals, {**layers, **vector_layers}, vectors=vectors)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["VECTOR_METRICS", "signals_from_bands", "vectors_from_trace"]

#: Per-layer metrics turned into vectors by :func:`vectors_from_trace` by default.
VECTOR_METRICS = ("transport", "contraction")


def signals_from_bands(
    bands: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
    """Turn ``DepthTrace.bands`` (or ``DepthTrace.to_dict()["bands"]``) into detector input.

    Args:
        bands: ``{"late": {"layers": [first, last], "transport_curvature": 0.12, ...}, ...}``.

    Returns:
        ``(signals, layers)`` for :meth:`EarlyWarningDetector.update`: ``{"band/late/<metric>": value}``
        (``None`` becomes NaN) and ``{"band/late/<metric>": (first, ..., last)}``.
    """
    signals: dict[str, float] = {}
    layers: dict[str, tuple[int, ...]] = {}
    for band, summary in bands.items():
        span = summary.get("layers") or []
        band_layers = tuple(range(int(span[0]), int(span[-1]) + 1)) if span else ()
        for metric, value in summary.items():
            if metric == "layers" or not (value is None or isinstance(value, (int, float))):
                continue
            key = f"band/{band}/{metric}"
            signals[key] = math.nan if value is None else float(value)
            layers[key] = band_layers
    return signals, layers


def vectors_from_trace(
    trace: Mapping[str, Any], metrics: Sequence[str] = VECTOR_METRICS, bands: Sequence[str] = ("late",),
) -> tuple[dict[str, list[float]], dict[str, tuple[int, ...]]]:
    """Per-layer vectors of a depth trace, for the cross-layer PATTERN_CHANGE test.

    Args:
        trace: ``DepthTrace.to_dict()`` (or a trace-file record): ``{"layers": [{"layer": ℓ, "transport": …},
            …], "bands": {"late": {"layers": [first, last], …}, …}}``.
        metrics: Per-layer metrics to take.
        bands: Bands whose layers make up each vector.

    Returns:
        ``(vectors, layers)``: ``{"layers/<band>/<metric>": [value per layer]}`` and the matching layer
        indices. Layers where the metric is undefined (``None``, e.g. the last layer's transport) are left
        out; a vector with fewer than 2 layers is not returned.
    """
    rows = {int(row["layer"]): row for row in trace.get("layers", [])}
    vectors: dict[str, list[float]] = {}
    layers: dict[str, tuple[int, ...]] = {}
    for band in bands:
        span = trace.get("bands", {}).get(band, {}).get("layers") or []
        if not span:
            continue
        members = [layer for layer in range(int(span[0]), int(span[-1]) + 1) if layer in rows]
        for metric in metrics:
            kept = [(layer, rows[layer].get(metric)) for layer in members]
            kept = [(layer, float(v)) for layer, v in kept if v is not None]
            if len(kept) < 2:
                continue
            key = f"layers/{band}/{metric}"
            vectors[key] = [v for _, v in kept]
            layers[key] = tuple(layer for layer, _ in kept)
    return vectors, layers
