"""Depth traces: the per-layer geometry of one checkpoint on one probe batch (SPINAL).

A trace is the capture forward (block outputs ``H_ℓ`` at the selected tokens), the spectra of
``H_ℓ`` and the logit-lens statistics. ``compute_layers`` restricts all three to a subset of layers
and the neighbours their metrics need (:class:`~spinal_callback.geometry.selection.LayerPlan`); the
values on the computed layers are those of the full trace.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from spinal_callback.geometry.curvature import hidden_curvature_at, transport_curvature
from spinal_callback.geometry.lens import lens_statistics
from spinal_callback.geometry.record import LAYER_METRICS, DepthTrace, summarise_bands
from spinal_callback.geometry.selection import LayerPlan
from spinal_callback.geometry.spectral import centered_spectrum, contraction_from_spectrum, effective_rank_from_spectrum
from spinal_callback.model.architectures import DecoderLayout, resolve_layout
from spinal_callback.model.probe_batch import select_positions
from spinal_callback.model.runner import BlockEdit, ModelRun, forward_blocks, probe_mode
from spinal_callback.model.sharding import gathered_head, probe_root, sharding_of

__all__ = [
    "LAYER_METRICS",
    "DepthTrace",
    "capture_hidden",
    "capture_layers",
    "compute_depth_trace",
    "trace_from_hidden",
]

HiddenStates = Sequence[torch.Tensor] | Mapping[int, torch.Tensor]
_summarise_bands = summarise_bands  # former private name, still imported by tests/sinks/_traces.py


def _as_mapping(hidden: HiddenStates, layout: DecoderLayout) -> tuple[dict[int, torch.Tensor], int]:
    """``({ℓ: H_ℓ}, L)``: a sequence is layers 1…len; a mapping is keyed by 1-based block of ``layout``."""
    if isinstance(hidden, Mapping):
        return dict(hidden), layout.num_layers
    return {i + 1: h for i, h in enumerate(hidden)}, len(hidden)


def trace_from_hidden(
    hidden: HiddenStates,
    layout: DecoderLayout,
    *,
    layers: Sequence[int] | None = None,
    compute_layers: Iterable[int] | None = None,
    tail: tuple[float, float] = (0.1, 0.9),
    rtol: float = 1e-6,
    bands: tuple[float, float] = (1 / 3, 2 / 3),
    chunk_size: int = 64,
) -> DepthTrace:
    """Compute a :class:`DepthTrace` from captured ``H_ℓ`` (``n × d``, same tokens at every layer).

    Args:
        hidden: ``[H_1, …, H_L]``, or ``{ℓ: H_ℓ}`` keyed by 1-based block of ``layout`` (then
            ``L = layout.num_layers`` and only the layers ``LayerPlan.of(compute_layers, L).hidden``
            are needed, e.g. from :func:`capture_layers`).
        layout: the model's layout (its logit lens).
        layers: labels of the ``L`` layers in the record (default ``1 … L``).
        compute_layers: 1-based positions ``ℓ ∈ 1 … L`` to compute (``None``: all). The others are
            NaN; the computed ones equal the full trace's values.
        tail: window ``(a, b)`` of the contraction fit.
        rtol: relative singular-value floor of the contraction fit.
        bands: early/mid and mid/late boundaries as fractions of depth.
        chunk_size: tokens per logit-lens chunk; the lens holds two ``chunk_size × V`` float32 arrays.

    Raises:
        ValueError: nothing captured, a needed layer missing, labels of the wrong length, a bad
            selection or ``chunk_size``.
    """
    if not hidden:
        raise ValueError("`hidden` is empty: no layer was captured")
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    by_layer, num_layers = _as_mapping(hidden, layout)
    plan = LayerPlan.of(compute_layers, num_layers)
    missing = [layer for layer in plan.hidden if layer not in by_layer]
    if missing:
        raise ValueError(f"`hidden` lacks layers {missing}, needed to compute layers {list(plan.computed)}")
    labels = list(layers) if layers is not None else list(range(1, num_layers + 1))
    if len(labels) != num_layers:
        raise ValueError(f"`layers` has {len(labels)} labels for {num_layers} captured layers")
    n = int(by_layer[plan.hidden[0]].shape[0])

    nan = [math.nan] * num_layers
    contraction, erank, curvature_h = list(nan), list(nan), list(nan)
    for layer in plan.computed:
        sigma = centered_spectrum(by_layer[layer])
        contraction[layer - 1] = float(contraction_from_spectrum(sigma, tail=tail, rtol=rtol))
        erank[layer - 1] = float(effective_rank_from_spectrum(sigma))
        if 2 <= layer <= num_layers - 1:
            curvature_h[layer - 1] = hidden_curvature_at(
                by_layer[layer - 1], by_layer[layer], by_layer[layer + 1], layer=layer
            )
    entropy_at, transport_at = lens_statistics(by_layer, layout, plan.lens, plan.transport_steps, chunk_size)
    transport = [transport_at.get(layer, math.nan) for layer in range(1, num_layers)] + [math.nan]
    values = {
        "contraction": contraction,
        "transport": transport,
        "entropy": [entropy_at.get(layer, math.nan) for layer in range(1, num_layers + 1)],
        "effective_rank": erank,
        "transport_curvature": transport_curvature(transport[:-1], num_layers),
        "hidden_curvature": curvature_h,
    }
    keep = set(plan.computed)
    for column in values.values():  # only the computed layers are reported
        for i in range(num_layers):
            if i + 1 not in keep:
                column[i] = math.nan
    trace = DepthTrace(
        layers=labels,
        contraction=values["contraction"],
        transport=values["transport"],
        entropy=values["entropy"],
        effective_rank=values["effective_rank"],
        transport_curvature=values["transport_curvature"],
        hidden_curvature=values["hidden_curvature"],
        num_tokens=n,
        computed=None if plan.is_full else [labels[layer - 1] for layer in plan.computed],
    )
    trace.bands = summarise_bands(trace, bands)
    return trace


def capture_layers(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor | None = None,
    *,
    layers: Iterable[int] | None = None,
    layout: DecoderLayout | None = None,
    max_tokens: int | None = 512,
    seed: int = 0,
    readers: Mapping[int, BlockEdit] | None = None,
) -> dict[int, torch.Tensor]:
    """One no-grad, eval-mode forward; returns ``{ℓ: H_ℓ}`` at the selected positions for ``layers``.

    ``layers`` are 1-based block indices (``None``: every block). The forward stops after the deepest
    block needed (the blocks below it and the LM head never run). Train/eval flags of every submodule
    are restored afterwards, exactly as they were.

    Args:
        readers: more read-only edits for the same forward, keyed by 0-based block index; each is
            called with the block's full ``(B, T, d)`` output and must return ``None``.
    """
    layout = layout or resolve_layout(model)
    wanted = LayerPlan.of(layers, layout.num_layers).computed
    if input_ids.ndim != 2:
        raise ValueError(f"`input_ids` must be 2-D (batch, seq), got shape {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"`attention_mask` shape {tuple(attention_mask.shape)} differs from `input_ids` shape "
            f"{tuple(input_ids.shape)}"
        )
    rows, cols = select_positions(attention_mask, completion_mask, max_tokens=max_tokens, seed=seed)
    captured: dict[int, torch.Tensor] = {}
    extra = dict(readers or {})

    def read(layer: int) -> BlockEdit:
        also = extra.pop(layer - 1, None)

        def edit(hidden: torch.Tensor) -> None:
            captured[layer] = hidden.detach()[rows.to(hidden.device), cols.to(hidden.device)]
            if also is not None:
                also(hidden)

        return edit

    edits: dict[int, BlockEdit] = {layer - 1: read(layer) for layer in wanted}
    edits.update(extra)  # readers of blocks that are not captured
    # Keep PEFT: its forward applies prompt-style adapters; keep an FSDP root: its forward gathers.
    run = ModelRun("model", probe_root(model), layout, sharded=sharding_of(model))
    with probe_mode(run), torch.no_grad():
        forward_blocks(run, input_ids, attention_mask, edits, stop_after=max(edits))
    return {layer: captured[layer] for layer in wanted}


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
    submodule are restored afterwards, exactly as they were. See :func:`capture_layers` for a subset.
    """
    layout = layout or resolve_layout(model)
    captured = capture_layers(
        model, input_ids, attention_mask, completion_mask, layout=layout, max_tokens=max_tokens, seed=seed
    )
    return [captured[layer] for layer in range(1, layout.num_layers + 1)]


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
    compute_layers: Iterable[int] | None = None,
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
        chunk_size: tokens per logit-lens chunk (lens memory ≈ 2 × chunk_size × V float32 values).
        seed: seed of the ``max_tokens`` subsample.
        layout: a precomputed :func:`resolve_layout` result (saves the lookup).
        compute_layers: 1-based blocks to compute (e.g. :func:`band_layers` ``("late", L, bands)``);
            ``None`` computes all. The forward stops after the deepest block they need; the other
            layers are NaN in the trace.

    Returns:
        The :class:`DepthTrace`.

    Raises:
        UnsupportedArchitectureError: the model's blocks cannot be located.
        ValueError: malformed masks, a batch that selects no token, or a bad layer selection.
    """
    layout = layout or resolve_layout(model)
    plan = LayerPlan.of(compute_layers, layout.num_layers)
    hidden = capture_layers(
        model, input_ids, attention_mask, completion_mask, layers=plan.hidden, layout=layout,
        max_tokens=max_tokens, seed=seed,
    )
    with gathered_head(model, layout):  # a sharded model's norm and unembedding, gathered once for the lens
        return trace_from_hidden(
            hidden, layout, compute_layers=plan.computed, tail=tail, rtol=rtol, bands=bands, chunk_size=chunk_size
        )
