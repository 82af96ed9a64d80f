"""The depth-trace record: per-layer table plus band summaries, and its JSON form (SPEC §1.7, §6)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spinal_callback.geometry.curvature import band_slices

__all__ = ["LAYER_METRICS", "DepthTrace", "summarise_bands"]

#: Per-layer metric names, as used in ``DepthTrace.to_dict()`` and TensorBoard tags.
LAYER_METRICS = (
    "contraction",
    "transport",
    "entropy",
    "effective_rank",
    "transport_curvature",
    "hidden_curvature",
)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


@dataclass
class DepthTrace:
    """The depth trace of one checkpoint: per-layer ``(ℓ, α, 𝓛, E, erank, κ^𝓛, κ^h)`` plus bands.

    Lists are indexed by monitored layer (entry 0 is layer 1). ``transport[ℓ-1]`` is the step from
    layer ℓ to ℓ+1 and is NaN for the last layer; curvatures are NaN where undefined. A *partial*
    trace (e.g. the late band only) has every metric NaN on the layers it did not compute.

    Attributes:
        layers: 1-based block indices of the monitored layers.
        contraction: α_ℓ. transport: 𝓛_ℓ. entropy: E_ℓ. effective_rank: erank(H_ℓ).
        transport_curvature: κ^𝓛_ℓ. hidden_curvature: κ^h_ℓ.
        bands: ``{"early"|"mid"|"late": {"layers": [first, last], "contraction": …, …}}``.
        num_tokens: tokens measured per layer.
        computed: the entries of ``layers`` that were computed, or ``None`` when all were (a full
            trace). Serialised as ``"computed_layers"`` only for a partial trace.
    """

    layers: list[int]
    contraction: list[float]
    transport: list[float]
    entropy: list[float]
    effective_rank: list[float]
    transport_curvature: list[float]
    hidden_curvature: list[float]
    bands: dict[str, dict[str, Any]] = field(default_factory=dict)
    num_tokens: int = 0
    computed: list[int] | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def is_partial(self) -> bool:
        """Whether some layers were not computed (their metrics are NaN)."""
        return self.computed is not None and len(self.computed) < len(self.layers)

    def metric(self, name: str) -> list[float]:
        """The per-layer values of one of :data:`LAYER_METRICS`."""
        if name not in LAYER_METRICS:
            raise KeyError(f"Unknown metric {name!r}; expected one of {', '.join(LAYER_METRICS)}")
        return list(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [{"layer": ℓ, "contraction": α, …}, …], "bands": {...}}`` with NaN as ``None``.

        A partial trace also carries ``"computed_layers": [ℓ, …]``; its other layers are all ``None``.
        """
        rows = []
        for i, layer in enumerate(self.layers):
            row: dict[str, Any] = {"layer": layer}
            for name in LAYER_METRICS:
                row[name] = _json_float(getattr(self, name)[i])
            rows.append(row)
        bands = {
            band: {k: (_json_float(v) if isinstance(v, float) else v) for k, v in summary.items()}
            for band, summary in self.bands.items()
        }
        out: dict[str, Any] = {"layers": rows, "bands": bands, "num_tokens": self.num_tokens}
        if self.computed is not None:
            out["computed_layers"] = list(self.computed)
        return out

    def to_json(self, **extra: Any) -> str:
        """One JSON line (``to_dict()`` merged with ``extra``, e.g. ``step=…``)."""
        return json.dumps({**extra, **self.to_dict()}, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DepthTrace:
        """Inverse of :meth:`to_dict` (``None`` back to NaN; records without ``computed_layers`` are full)."""
        rows = data["layers"]

        def col(name: str) -> list[float]:
            return [math.nan if r.get(name) is None else float(r[name]) for r in rows]

        bands = {
            band: {k: (math.nan if v is None else v) for k, v in summary.items()}
            for band, summary in data.get("bands", {}).items()
        }
        computed = data.get("computed_layers")
        return cls(
            layers=[int(r["layer"]) for r in rows],
            bands=bands,
            num_tokens=int(data.get("num_tokens", 0)),
            computed=None if computed is None else [int(v) for v in computed],
            **{name: col(name) for name in LAYER_METRICS},
        )


def summarise_bands(trace: DepthTrace, boundaries: tuple[float, float]) -> dict[str, dict[str, Any]]:
    """Per band: its first/last layer and the NaN-ignoring mean of every metric over its layers."""
    bands: dict[str, dict[str, Any]] = {}
    for band, idx in band_slices(trace.num_layers, boundaries).items():
        summary: dict[str, Any] = {"layers": [trace.layers[idx[0]], trace.layers[idx[-1]]] if idx else []}
        for name in LAYER_METRICS:
            values = getattr(trace, name)
            summary[name] = _nanmean([values[i] for i in idx])
        bands[band] = summary
    return bands
