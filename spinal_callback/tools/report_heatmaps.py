"""``spinal report``'s heatmaps: value next to change since the first probe, alert and rollback steps marked,
and the patching probe's layer × step heatmap when the trace file has patching records."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.heatmap import change_since_baseline
from spinal_callback.sinks.metric_labels import METRIC_LABELS
from spinal_callback.tools.figures import (
    agg_figure,
    cell_edges,
    event_legend_handles,
    mark_events,
    metric_label,
    require_matplotlib,
    unit_label,
)

__all__ = ["full_traces", "heatmap_matrix", "patching_matrices", "plot_heatmaps", "plot_patching", "trace_events"]

StepTraces = Sequence[tuple[int, DepthTrace]]


def trace_events(records: Sequence[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """The sorted steps of the ``"alert"`` and of the ``"rollback"`` records (each step once)."""
    alerts = sorted({int(r["step"]) for r in records if r.get("type") == "alert"})
    rollbacks = sorted({int(r["step"]) for r in records if r.get("type") == "rollback"})
    return alerts, rollbacks


def full_traces(traces: StepTraces) -> list[tuple[int, DepthTrace]]:
    """The traces that measured every layer (partial ones, between full traces, skip layers); all of them
    when none is full."""
    full = [(step, trace) for step, trace in traces if not trace.is_partial]
    return full or list(traces)


def heatmap_matrix(traces: StepTraces, metric: str) -> tuple[list[int], list[int], np.ndarray]:
    """``(steps, layers, layers × steps matrix)`` of one metric over the full traces (NaN where undefined)."""
    chosen = full_traces(traces)
    layers = chosen[-1][1].layers
    matrix = np.full((len(layers), len(chosen)), np.nan)
    for j, (_, trace) in enumerate(chosen):
        if trace.layers == layers:
            matrix[:, j] = trace.metric(metric)
    return [step for step, _ in chosen], list(layers), matrix


def _panel(
    fig: Any,
    ax: Any,
    steps: Sequence[int],
    layers: Sequence[int],
    matrix: np.ndarray,
    cmap: Any,
    limits: tuple[float, float] | None,
    label: str,
    x_max: float,
) -> Any:
    """Draw one heatmap panel (NaN cells show the hatched background) and return its colour bar."""
    mpl = require_matplotlib()
    ax.set_facecolor("0.92")
    ax.patch.set_hatch("//")
    ax.patch.set_edgecolor("0.65")
    norm = mpl.colors.Normalize(*limits) if limits is not None else None
    layer_edges = np.arange(len(layers) + 1) - 0.5
    mesh = ax.pcolormesh(cell_edges(steps), layer_edges, np.ma.masked_invalid(matrix), cmap=cmap, norm=norm)
    bar = fig.colorbar(mesh, ax=ax, label=label, pad=0.02)
    ax.set_xlim(cell_edges(steps)[0], x_max)
    ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
    ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
    if len(layers) > 16:
        every = math.ceil(len(layers) / 16)
        for i, tick in enumerate(ax.yaxis.get_major_ticks()):
            tick.label1.set_visible(i % every == 0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("layer")
    return bar


def plot_heatmaps(
    traces: StepTraces, out_dir: str | os.PathLike[str], alerts: Sequence[int] = (), rollbacks: Sequence[int] = ()
) -> list[Path]:
    """One ``heatmap_<metric>.png`` per metric: layer × step of the full traces, the value (viridis) next to
    its change since the first probe (per layer; RdBu_r centred at 0), alert / rollback steps marked.

    Hatched cells have no value: the metric is undefined at that layer (the legend says where) or the
    trace did not measure it.
    """
    mpl = require_matplotlib()
    paths = []
    for metric in LAYER_METRICS:
        steps, layers, matrix = heatmap_matrix(traces, metric)
        change = change_since_baseline(matrix)
        finite, moved = matrix[np.isfinite(matrix)], np.abs(change[np.isfinite(change)])
        largest = float(moved.max()) if moved.size else 0.0
        span = largest if largest > 0 else 1.0
        x_max = max([cell_edges(steps)[-1], *(s + 0.5 for s in (*alerts, *rollbacks))])
        fig = agg_figure(14, 5, left=0.05, right=0.98, bottom=0.27, top=0.88, wspace=0.18)
        ax_value, ax_change = fig.subplots(1, 2)
        label = METRIC_LABELS[metric]
        _panel(
            fig,
            ax_value,
            steps,
            layers,
            matrix,
            mpl.colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0)),
            None,
            unit_label(metric),
            x_max,
        )
        change_bar = _panel(
            fig,
            ax_change,
            steps,
            layers,
            change,
            mpl.colormaps["RdBu_r"].with_extremes(bad=(0, 0, 0, 0)),
            (-span, span),
            f"change [{label.unit}]",
            x_max,
        )
        if largest == 0:
            change_bar.set_ticks([0.0])  # nothing moved: no scale to read
        ax_value.set_title("value")
        ax_change.set_title(f"change since the first probe (step {steps[0]})")
        for ax in (ax_value, ax_change):
            mark_events(ax, alerts, rollbacks)
        fig.suptitle(f"{metric_label(metric)}: layer × step ({len(steps)} full depth traces)")
        notes = []
        if (~np.isfinite(matrix)).any():
            why = label.undefined or "no finite value"
            notes.append(f"hatched: no value (undefined at this layer: {why}; or not measured at that probe)")
        spread = float(finite.max() - finite.min()) if finite.size else 0.0
        if largest > 0 and spread > 0:
            notes.append(
                f"largest change {largest:.3g} {label.unit} = {100 * largest / spread:.1f}% of the range "
                f"of values shown ({spread:.3g})"
            )
        elif finite.size:
            notes.append("no change since the first probe at any layer")
        if not (alerts or rollbacks):
            notes.append("no alert or rollback in this trace file")
        fig.text(0.05, 0.04, "\n".join(notes), fontsize=9, va="bottom")
        handles = event_legend_handles(alerts, rollbacks)
        if handles:
            fig.legend(handles=handles, loc="lower right", ncol=len(handles), fontsize=9)
        path = Path(out_dir) / f"heatmap_{metric}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def patching_matrices(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[int], list[int], np.ndarray]]:
    """Per patching direction, ``(steps, layers, layers × steps)`` of the exact probe's normalized effect."""
    by_direction: dict[str, dict[int, tuple[list[int], list[float]]]] = {}
    for record in records:
        if record.get("type") != "patch":
            continue
        for direction, result in (record.get("exact") or {}).items():
            layers, effect = result.get("layers") or [], result.get("normalized_effect") or []
            if layers and len(layers) == len(effect):
                values = [math.nan if v is None else float(v) for v in effect]
                by_direction.setdefault(direction, {})[int(record["step"])] = (list(layers), values)
    out = {}
    for direction, per_step in by_direction.items():
        steps = sorted(per_step)
        layers = sorted({layer for ls, _ in per_step.values() for layer in ls})
        matrix = np.full((len(layers), len(steps)), np.nan)
        for j, step in enumerate(steps):
            for layer, value in zip(*per_step[step]):
                matrix[layers.index(layer), j] = value
        out[direction] = (steps, layers, matrix)
    return out


def plot_patching(
    records: Sequence[dict[str, Any]],
    path: str | os.PathLike[str],
    alerts: Sequence[int] = (),
    rollbacks: Sequence[int] = (),
) -> Path | None:
    """``patching.png``: the exact patching probe's normalized effect, layer × step, one panel per direction;
    ``None`` (nothing written) when the trace file has no patching record."""
    mpl = require_matplotlib()
    matrices = patching_matrices(records)
    if not matrices:
        return None
    fig = agg_figure(7 * len(matrices), 4.8, left=0.07, right=0.98, bottom=0.2, top=0.86, wspace=0.2)
    axes = np.atleast_1d(fig.subplots(1, len(matrices)))
    cmap = mpl.colormaps["viridis"].with_extremes(bad=(0, 0, 0, 0))
    for ax, (direction, (steps, layers, matrix)) in zip(axes, matrices.items()):
        x_max = max([cell_edges(steps)[-1], *(s + 0.5 for s in (*alerts, *rollbacks))])
        _panel(fig, ax, steps, layers, matrix, cmap, None, "normalized effect [fraction of the total effect]", x_max)
        mark_events(ax, alerts, rollbacks)
        ax.set_title(direction.replace("_to_", " → "))
    fig.suptitle("Patching probe: normalized effect of patching each layer")
    fig.text(0.07, 0.03, "hatched: layer not patched or effect undefined at that probe", fontsize=9)
    handles = event_legend_handles(alerts, rollbacks)
    if handles:
        fig.legend(handles=handles, loc="lower right", ncol=len(handles), fontsize=9)
    fig.savefig(path, dpi=100)
    return Path(path)
