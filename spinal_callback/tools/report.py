"""``spinal report``: plots and a markdown summary from a run's JSON-lines trace file.

Plotting needs matplotlib (the ``plots`` extra); it is imported inside the plotting functions and
drives the Agg canvas directly, so the global pyplot backend of the caller is never touched.
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

__all__ = [
    "PANEL_GRID",
    "PLOT_LABELS",
    "agg_figure",
    "band_series",
    "metric_label",
    "plot_band_summaries",
    "plot_depth_traces",
    "plot_heatmaps",
    "require_matplotlib",
    "run_report",
    "summary_table",
]

StepTraces = Sequence[tuple[int, DepthTrace]]

#: Axis labels with the paper symbols, in mathtext (renders with matplotlib's bundled fonts).
PLOT_LABELS = {
    "contraction": r"contraction $\alpha_\ell$",
    "transport": r"transport $\mathcal{L}_\ell$",
    "entropy": r"lens entropy $E_\ell$",
    "effective_rank": "effective rank",
    "transport_curvature": r"transport curvature $\kappa^{\mathcal{L}}_\ell$",
    "hidden_curvature": r"hidden curvature $\kappa^{h}_\ell$",
}

#: Most lines drawn per panel of the depth-trace figure (steps are subsampled evenly beyond it).
MAX_TRACE_LINES = 64


def require_matplotlib() -> Any:
    """The ``matplotlib`` module with the submodules used here, or an ImportError naming the extra."""
    try:
        import matplotlib
        import matplotlib.backends.backend_agg
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.ticker
    except ImportError as err:
        raise ImportError(
            'Plotting needs matplotlib: pip install "spinal-callback[plots]" (or pip install matplotlib)'
        ) from err
    return matplotlib


def agg_figure(width: float, height: float, **margins: float) -> Any:
    """A Figure bound to an Agg canvas (no pyplot, no global backend switch), fixed margins.

    Fixed margins instead of a layout engine: constrained layout doubles the drawing time.
    """
    mpl = require_matplotlib()
    fig = mpl.figure.Figure(figsize=(width, height))
    mpl.backends.backend_agg.FigureCanvasAgg(fig)
    fig.subplots_adjust(**margins)
    return fig


#: Margins of a 2 × 3 panel figure with room on the right for a colour bar.
PANEL_GRID = {"left": 0.05, "right": 0.9, "bottom": 0.08, "top": 0.9, "wspace": 0.3, "hspace": 0.4}


def metric_label(metric: str) -> str:
    """The axis label of ``metric`` (:data:`PLOT_LABELS`), else the name itself."""
    return PLOT_LABELS.get(metric, metric)


def _edges(centres: Sequence[float]) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; half a spacing beyond the ends)."""
    c = np.asarray(centres, dtype=np.float64)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def band_series(traces: StepTraces) -> dict[str, dict[str, np.ndarray]]:
    """Per band and metric, a ``(steps, 3)`` array of ``(mean, min, max)`` over training (NaN = absent)."""
    stats = [band_statistics(trace) for _, trace in traces]
    bands = list(dict.fromkeys(band for s in stats for band in s))
    nan3 = (math.nan, math.nan, math.nan)
    return {
        band: {
            m: np.array([s.get(band, {}).get(m, nan3) for s in stats], dtype=np.float64)
            for m in LAYER_METRICS
        }
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
    fig.colorbar(
        mpl.cm.ScalarMappable(norm=norm, cmap=cmap), cax=fig.add_axes((0.92, 0.08, 0.012, 0.82)), label="step"
    )
    fig.suptitle("Depth traces over training")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_heatmaps(traces: StepTraces, out_dir: str | os.PathLike[str]) -> list[Path]:
    """One ``heatmap_<metric>.png`` per metric: layer (y, first layer at the bottom) × step (x)."""
    mpl = require_matplotlib()
    steps = [step for step, _ in traces]
    layers = traces[-1][1].layers
    cmap = mpl.colormaps["viridis"].with_extremes(bad="0.6")
    paths = []
    for metric in LAYER_METRICS:
        matrix = np.full((len(layers), len(steps)), np.nan)
        for j, (_, trace) in enumerate(traces):
            if trace.layers == layers:
                matrix[:, j] = trace.metric(metric)
        fig = agg_figure(8, 4.5, left=0.08, right=0.98, bottom=0.12, top=0.9)
        ax = fig.subplots()
        mesh = ax.pcolormesh(_edges(steps), _edges(layers), np.ma.masked_invalid(matrix), cmap=cmap)
        fig.colorbar(mesh, ax=ax, label=metric_label(metric))
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.yaxis.set_major_locator(mpl.ticker.MaxNLocator(integer=True))
        ax.set_title(f"{metric_label(metric)}: layer × step")
        path = Path(out_dir) / f"heatmap_{metric}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def plot_band_summaries(traces: StepTraces, path: str | os.PathLike[str]) -> Path:
    """One panel per metric: band mean against step, one line per band, min–max shaded."""
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
        ax.set_title(metric_label(metric))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(title="band (mean, min–max)")
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

    Files: ``depth_traces.png``, ``heatmap_<metric>.png`` (one per metric), ``bands.png`` and
    ``summary.md`` in ``out_dir`` (default ``<trace dir>/report``).

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
    written = [out / "summary.md"]
    written[0].write_text("\n".join(summary), encoding="utf-8")

    status = 0
    try:
        written.append(plot_depth_traces(traces, out / "depth_traces.png"))
        written.extend(plot_heatmaps(traces, out))
        written.append(plot_band_summaries(traces, out / "bands.png"))
    except ImportError as err:
        print(f"spinal report: no plots written: {err}", file=sys.stderr)
        status = 1
    print(table)
    print()
    print("Wrote:")
    for p in written:
        print(f"  {p}")
    return status
