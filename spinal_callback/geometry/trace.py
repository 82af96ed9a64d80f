"""Depth traces: the per-layer geometry of one checkpoint on one probe batch (SPINAL)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..architectures import DecoderLayout, resolve_layout, unwrap_parallel
from ..capture import LayerCapture, StopForward, select_positions
from .curvature import band_slices, hidden_curvature, transport_curvature
from .spectral import centered_spectrum, contraction_from_spectrum, effective_rank_from_spectrum
from .transport import lens_row_statistics, normalise_logits

__all__ = ["LAYER_METRICS", "DepthTrace", "capture_hidden", "compute_depth_trace", "trace_from_hidden"]

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
    layer ℓ to ℓ+1 and is NaN for the last layer; curvatures are NaN where undefined.

    Attributes:
        layers: 1-based block indices of the monitored layers.
        contraction: α_ℓ. transport: 𝓛_ℓ. entropy: E_ℓ. effective_rank: erank(H_ℓ).
        transport_curvature: κ^𝓛_ℓ. hidden_curvature: κ^h_ℓ.
        bands: ``{"early"|"mid"|"late": {"layers": [first, last], "contraction": …, …}}``.
        num_tokens: tokens measured per layer.
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

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def metric(self, name: str) -> list[float]:
        """The per-layer values of one of :data:`LAYER_METRICS`."""
        if name not in LAYER_METRICS:
            raise KeyError(f"Unknown metric {name!r}; expected one of {', '.join(LAYER_METRICS)}")
        return list(getattr(self, name))

    def to_dict(self) -> dict[str, Any]:
        """``{"layers": [{"layer": ℓ, "contraction": α, …}, …], "bands": {...}}`` with NaN as ``None``."""
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
        return {"layers": rows, "bands": bands, "num_tokens": self.num_tokens}

    def to_json(self, **extra: Any) -> str:
        """One JSON line (``to_dict()`` merged with ``extra``, e.g. ``step=…``)."""
        return json.dumps({**extra, **self.to_dict()}, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DepthTrace:
        rows = data["layers"]

        def col(name: str) -> list[float]:
            return [math.nan if r.get(name) is None else float(r[name]) for r in rows]

        bands = {
            band: {k: (math.nan if v is None else v) for k, v in summary.items()}
            for band, summary in data.get("bands", {}).items()
        }
        return cls(
            layers=[int(r["layer"]) for r in rows],
            bands=bands,
            num_tokens=int(data.get("num_tokens", 0)),
            **{name: col(name) for name in LAYER_METRICS},
        )


def _summarise_bands(trace: DepthTrace, boundaries: tuple[float, float]) -> dict[str, dict[str, Any]]:
    bands: dict[str, dict[str, Any]] = {}
    for band, idx in band_slices(trace.num_layers, boundaries).items():
        summary: dict[str, Any] = {"layers": [trace.layers[idx[0]], trace.layers[idx[-1]]] if idx else []}
        for name in LAYER_METRICS:
            values = getattr(trace, name)
            summary[name] = _nanmean([values[i] for i in idx])
        bands[band] = summary
    return bands


def trace_from_hidden(
    hidden: Sequence[torch.Tensor],
    layout: DecoderLayout,
    *,
    layers: Sequence[int] | None = None,
    tail: tuple[float, float] = (0.1, 0.9),
    rtol: float = 1e-6,
    bands: tuple[float, float] = (1 / 3, 2 / 3),
    chunk_size: int = 64,
) -> DepthTrace:
    """Compute a :class:`DepthTrace` from captured ``H_ℓ`` (``n × d``, same tokens at every layer).

    The logit lens runs in token chunks of ``chunk_size``, layer after layer: its memory is a few
    ``chunk × V`` float64 arrays (the previous and current log-probabilities and their temporaries —
    about five, 371 MiB at ``chunk_size=64`` and V = 152k), whatever the depth and the batch.
    """
    if not hidden:
        raise ValueError("`hidden` is empty: no layer was captured")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    num_layers = len(hidden)
    n = hidden[0].shape[0]
    layer_ids = list(layers) if layers is not None else list(range(1, num_layers + 1))
    spectra = [centered_spectrum(h) for h in hidden]
    contraction = [float(contraction_from_spectrum(s, tail=tail, rtol=rtol)) for s in spectra]
    erank = [float(effective_rank_from_spectrum(s)) for s in spectra]

    # Sums stay on the activations' device until the end: one host synchronisation per trace, not one
    # per (chunk, layer).
    sums = torch.zeros(2, num_layers, dtype=torch.float64, device=hidden[0].device)  # entropy, transport
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            prev = None
            for i, h in enumerate(hidden):
                lp = normalise_logits(layout.lens_logits(h[start : start + chunk_size]))
                ent, fr = lens_row_statistics(prev, lp)
                sums[0, i] += ent.sum().to(sums.device)
                if fr is not None:
                    sums[1, i - 1] += fr.sum().to(sums.device)
                prev = lp
    entropy_sum, transport_sum = sums.tolist()
    entropy = [s / n if n else math.nan for s in entropy_sum]
    transport = [s / n if n else math.nan for s in transport_sum[: max(num_layers - 1, 0)]] + [math.nan]
    trace = DepthTrace(
        layers=layer_ids,
        contraction=contraction,
        transport=transport,
        entropy=entropy,
        effective_rank=erank,
        transport_curvature=transport_curvature(transport[:-1], num_layers),
        hidden_curvature=hidden_curvature(hidden),
        num_tokens=int(n),
    )
    trace.bands = _summarise_bands(trace, bands)
    return trace


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def capture_hidden(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor | None = None,
    *,
    layout: DecoderLayout | None = None,
    max_tokens: int | None = 512,
    seed: int = 0,
) -> list[torch.Tensor]:
    """One no-grad, eval-mode forward; returns ``H_ℓ`` for every block at the selected positions.

    The forward stops after the last block (the LM head never runs). Train/eval flags of every
    submodule are restored afterwards, exactly as they were.
    """
    layout = layout or resolve_layout(model)
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must be 2-D (batch, seq), got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` shape {tuple(attention_mask.shape)} differs from `input_ids` shape "
            f"{tuple(input_ids.shape)}"
        )
    rows, cols = select_positions(attention_mask, completion_mask, max_tokens=max_tokens, seed=seed)
    runner = unwrap_parallel(model)  # keep PEFT: its forward applies prompt-style adapters
    device = _model_device(runner)
    modes = [(m, m.training) for m in runner.modules()]
    kwargs: dict[str, Any] = {}
    if getattr(getattr(layout.model, "config", None), "use_cache", None) is not None:
        kwargs["use_cache"] = False
    runner.eval()
    try:
        with torch.no_grad(), LayerCapture(layout.blocks, rows, cols, stop_after_last=True, armed=True) as cap:
            try:
                runner(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), **kwargs)
            except StopForward:
                pass
            return cap.stacked()
    finally:
        for module, mode in modes:
            module.training = mode


def compute_depth_trace(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor | None = None,
    *,
    max_tokens: int | None = 512,
    tail: tuple[float, float] = (0.1, 0.9),
    rtol: float = 1e-6,
    bands: tuple[float, float] = (1 / 3, 2 / 3),
    chunk_size: int = 64,
    seed: int = 0,
    layout: DecoderLayout | None = None,
) -> DepthTrace:
    """The SPINAL depth trace of ``model`` on one batch, from one no-grad forward.

    Args:
        model: a supported Hugging Face causal LM (PEFT-, DDP- or compile-wrapped too).
        input_ids: ``(B, T)`` token ids.
        attention_mask: ``(B, T)`` 0/1 mask of real tokens.
        completion_mask: optional ``(B, T)`` mask of completion tokens; measured positions are the
            completion tokens when given, else every non-padding token.
        max_tokens: cap on measured positions (deterministic subsample), ``None`` for no cap.
        tail: window ``(a, b)`` of the contraction fit.
        rtol: relative singular-value floor of the contraction fit.
        bands: early/mid and mid/late boundaries as fractions of depth.
        chunk_size: tokens per logit-lens chunk (lens memory ≈ 5 × chunk_size × V float64 values).
        seed: seed of the ``max_tokens`` subsample.
        layout: a precomputed :func:`resolve_layout` result (saves the lookup).

    Returns:
        The :class:`DepthTrace`.

    Raises:
        UnsupportedArchitectureError: the model's blocks cannot be located.
        ValueError: malformed masks or a batch that selects no token.
    """
    layout = layout or resolve_layout(model)
    hidden = capture_hidden(
        model, input_ids, attention_mask, completion_mask, layout=layout, max_tokens=max_tokens, seed=seed
    )
    return trace_from_hidden(hidden, layout, tail=tail, rtol=rtol, bands=bands, chunk_size=chunk_size)

