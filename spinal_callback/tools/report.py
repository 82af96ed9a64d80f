"""``spinal report``: plots and a markdown summary from a run's JSON-lines trace file.

Plotting needs matplotlib (the ``plots`` extra); it is imported inside the plotting functions and
drives the Agg canvas directly, so the global pyplot backend of the caller is never touched. The heatmaps
(value next to change since the first probe, alerts and rollbacks marked, the patching probe's) live in
:mod:`spinal_callback.tools.report_heatmaps`; the shared figure helpers in :mod:`spinal_callback.tools.figures`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinal_callback.geometry.bands import band_statistics
from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.jsonl import load_traces, read_trace_file
from spinal_callback.tools.figures import (
    PANEL_GRID,
    PLOT_LABELS,
    agg_figure,
    event_legend_handles,
    mark_events,
    metric_label,
    require_matplotlib,
)
from spinal_callback.tools.report_heatmaps import plot_heatmaps, plot_patching, trace_events

__all__ = [
    "PANEL_GRID",
    "PLOT_LABELS",
    "agg_figure",
    "band_series",
    "metric_label",
    "plot_band_summaries",
    "plot_depth_traces",
    "plot_heatmaps",
    "plot_patching",
    "require_matplotlib",
    "run_report",
    "summary_table",
]

StepTraces = Sequence[tuple[int, DepthTrace]]

#: Most lines drawn per panel of the depth-trace figure (steps are subsampled evenly beyond it).
MAX_TRACE_LINES = 64


def band_series(traces: StepTraces) -> dict[str, dict[str, np.ndarray]]:
    """Per band and metric, a ``(steps, 3)`` array of ``(mean, min, max)`` over training (NaN = absent)."""
    stats = [band_statistics(trace) for _, trace in traces]
    bands = list(dict.fromkeys(band for s in stats for band in s))
    nan3 = (math.nan, math.nan, math.nan)
    return {
        band: {m: np.array([s.get(band, {}).get(m, nan3) for s in stats], dtype=np.float64) for m in LAYER_METRICS}
        for band in bands
    }


def summary_table(traces: StepTraces) -> str:
    """A markdown table: per band and metric, the band mean at the first and last step and the change."""

    def fmt(value: float) -> str:
        return f"{value:.4g}" if math.isfinite(value) else "n/a"

    first, last = traces[0][0], traces[-1][0]
    lines = [
        f"| band | metric | step {first} | step {last} | change |",
        "|---|---|---:|---:|---:|",
    ]
    for band, per_metric in band_series(traces).items():
        for metric, series in per_metric.items():
            a, b = float(series[0, 0]), float(series[-1, 0])
            lines.append(f"| {band} | {metric} | {fmt(a)} | {fmt(b)} | {fmt(b - a)} |")
    return "\n".join(lines)


def plot_depth_traces(traces: StepTraces, path: str | os.PathLike[str]) -> Path:
    """One panel per metric: value against layer, one line per probe step coloured by step."""
    mpl = require_matplotlib()
    steps = [step for step, _ in traces]
    chosen = np.unique(np.linspace(0, len(traces) - 1, min(len(traces), MAX_TRACE_LINES)).round().astype(int))
    norm = mpl.colors.Normalize(vmin=steps[0], vmax=max(steps[-1], steps[0] + 1))
    cmap = mpl.colormaps["viridis"]
    fig = agg_figure(14, 7, **PANEL_GRID)
    axes = fig.subplots(2, 3).ravel()
    for ax, metric in zip(axes, LAYER_METRICS):
        for i in chosen:
            step, trace = traces[i]
            ax.plot(trace.layers, trace.metric(metric), color=cmap(norm(step)), lw=1.2, marker=".", ms=3)
        ax.set_title(metric_label(metric))
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=fig.add_axes((0.92, 0.08, 0.012, 0.82)), label="step")
    fig.suptitle("Depth traces over training")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_band_summaries(
    traces: StepTraces, path: str | os.PathLike[str], alerts: Sequence[int] = (), rollbacks: Sequence[int] = ()
) -> Path:
    """One panel per metric: band mean against step, one line per band, min–max shaded; alert (red) and
    rollback (black dashed) steps as vertical lines."""
    require_matplotlib()
    steps = np.array([step for step, _ in traces], dtype=np.float64)
    series = band_series(traces)
    fig = agg_figure(14, 7, **{**PANEL_GRID, "right": 0.98})
    axes = fig.subplots(2, 3).ravel()
    for ax, metric in zip(axes, LAYER_METRICS):
        for band, per_metric in series.items():
            values = per_metric[metric]
            (line,) = ax.plot(steps, values[:, 0], marker=".", label=band)
            ax.fill_between(steps, values[:, 1], values[:, 2], color=line.get_color(), alpha=0.15)
        mark_events(ax, alerts, rollbacks)
        ax.set_title(metric_label(metric))
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    handles, _ = axes[0].get_legend_handles_labels()
    axes[0].legend(handles=[*handles, *event_legend_handles(alerts, rollbacks)], title="band (mean, min–max)")
    fig.suptitle("Band summaries over training")
    fig.savefig(path, dpi=100)
    return Path(path)


def _events(records: list[dict[str, Any]]) -> list[str]:
    lines = []
    for record in records:
        if record.get("type") in ("alert", "rollback"):
            detail = record.get("message") or record.get("reason") or ""
            lines.append(f"- step {record.get('step')}: {record['type']} {detail}".rstrip())
    return lines


def run_report(trace_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> int:
    """Write plots and ``summary.md`` for a trace file; print the table and the paths written.

    Files: ``depth_traces.png``, ``heatmap_<metric>.png`` (one per metric: value and change since the
    first probe), ``bands.png``, ``patching.png`` (only with patching records) and ``summary.md`` in
    ``out_dir`` (default ``<trace dir>/report``). Alert and rollback steps are marked on the heatmaps and
    the band plots.

    Returns:
        0 on success; 2 (message on stderr) for a missing, unreadable or empty trace file; 1 when
        matplotlib is missing (``summary.md`` is still written).
    """
    path = Path(trace_path)
    try:
        records = read_trace_file(path)
    except (OSError, ValueError) as err:
        print(f"spinal report: {err}", file=sys.stderr)
        return 2
    traces = load_traces(records)
    if not traces:
        print(
            f"spinal report: no trace records in {str(path)!r} (empty or not a spinal trace file)",
            file=sys.stderr,
        )
        return 2
    out = Path(out_dir) if out_dir is not None else path.parent / "report"
    out.mkdir(parents=True, exist_ok=True)

    table = summary_table(traces)
    events = _events(records)
    alerts, rollbacks = trace_events(records)
    summary = [
        "# spinal report",
        "",
        f"Trace file: `{path}` — {len(traces)} probe steps ({traces[0][0]} to {traces[-1][0]}), "
        f"{traces[-1][1].num_layers} layers.",
        "",
        "Band means (first step, last step, change):",
        "",
        table,
        "",
    ]
    if events:
        summary += ["## Alerts and rollbacks", "", *events, ""]
    else:
        summary += ["No alert and no rollback in this trace file.", ""]
    written = [out / "summary.md"]
    written[0].write_text("\n".join(summary), encoding="utf-8")

    status = 0
    try:
        written.append(plot_depth_traces(traces, out / "depth_traces.png"))
        written.extend(plot_heatmaps(traces, out, alerts, rollbacks))
        written.append(plot_band_summaries(traces, out / "bands.png", alerts, rollbacks))
        patching = plot_patching(records, out / "patching.png", alerts, rollbacks)
        if patching is not None:
            written.append(patching)
    except ImportError as err:
        print(f"spinal report: no plots written: {err}", file=sys.stderr)
        status = 1
    print(table)
    print()
    print("Wrote:")
    for p in written:
        print(f"  {p}")
    return status
