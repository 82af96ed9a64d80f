"""What ``spinal audit`` shows: a plain-text table of band means and two figures, checkpoints side by side.

The figures use the plotting helpers of :mod:`spinal_callback.tools.report` (matplotlib imported on use,
Agg canvas, no pyplot).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinal_callback.geometry import BAND_NAMES, LAYER_METRICS
from spinal_callback.geometry.bands import band_statistics
from spinal_callback.tools.audit_entry import AuditEntry
from spinal_callback.tools.report import PANEL_GRID, agg_figure, metric_label, require_matplotlib

__all__ = ["TABLE_METRICS", "band_table", "plot_audit_bands", "plot_audit_traces", "write_plots"]

#: Band means shown in the terminal table: metric and its paper symbol.
TABLE_METRICS = (("contraction", "α"), ("transport", "𝓛"), ("transport_curvature", "κ^𝓛"), ("entropy", "E"))


def band_table(entries: Sequence[AuditEntry]) -> str:
    """Aligned plain text, one row per checkpoint and band: its layers and the band means of
    :data:`TABLE_METRICS` (``n/a`` where undefined, e.g. the transport of a one-layer late band)."""

    def fmt(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"

    header = ["checkpoint", "band", "layers", *(symbol for _, symbol in TABLE_METRICS)]
    rows = []
    for entry in entries:
        for band in BAND_NAMES:
            summary = entry.trace.bands.get(band, {})
            span = summary.get("layers") or []
            layers = f"{span[0]}-{span[1]}" if len(span) == 2 else "-"
            rows.append([entry.label, band, layers, *(fmt(summary.get(m)) for m, _ in TABLE_METRICS)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        text = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(text).rstrip()

    legend = ", ".join(f"{symbol} {metric}" for metric, symbol in TABLE_METRICS)
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", f"band means: {legend}"])


def _colors(count: int) -> list[Any]:
    mpl = require_matplotlib()
    if count <= 10:
        return [mpl.colormaps["tab10"](i) for i in range(count)]
    return [mpl.colormaps["viridis"](i / (count - 1)) for i in range(count)]


def plot_audit_traces(
    entries: Sequence[AuditEntry], path: str | os.PathLike[str], bands: Sequence[float] = (1 / 3, 2 / 3)
) -> Path:
    """One panel per metric: value against relative depth ℓ/L (models of different depth compare), one
    line per checkpoint; the band edges ``bands`` dotted."""
    fig = agg_figure(14, 7, **{**PANEL_GRID, "right": 0.86})
    axes = fig.subplots(2, 3).ravel()
    colors = _colors(len(entries))
    for ax, metric in zip(axes, LAYER_METRICS):
        for entry, color in zip(entries, colors):
            depth = [layer / entry.num_layers for layer in entry.trace.layers]
            ax.plot(depth, entry.trace.metric(metric), color=color, lw=1.3, marker=".", ms=4, label=entry.label)
        for edge in bands:
            ax.axvline(edge, color="0.6", ls=":", lw=1)
        ax.set_title(metric_label(metric))
        ax.set_xlabel("relative depth ℓ / L")
        ax.set_xlim(0, 1.03)
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(0.87, 0.5), title="checkpoint", fontsize=8)
    fig.suptitle("Depth traces of the audited checkpoints (dotted: early / mid / late band edges)")
    fig.savefig(path, dpi=100)
    return Path(path)


def plot_audit_bands(entries: Sequence[AuditEntry], path: str | os.PathLike[str]) -> Path:
    """One panel per metric: band means per checkpoint, one line per band, whiskers from band min to max."""
    fig = agg_figure(14, 7.5, **{**PANEL_GRID, "right": 0.98, "bottom": 0.12, "hspace": 0.5})
    axes = fig.subplots(2, 3).ravel()
    x = np.arange(len(entries), dtype=np.float64)
    stats = [band_statistics(entry.trace) for entry in entries]
    nan3 = (math.nan, math.nan, math.nan)
    for ax, metric in zip(axes, LAYER_METRICS):
        for j, band in enumerate(BAND_NAMES):
            values = np.array([s.get(band, {}).get(metric, nan3) for s in stats], dtype=np.float64)
            whiskers = np.nan_to_num(np.abs([values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]]))
            ax.errorbar(x + 0.08 * (j - 1), values[:, 0], yerr=whiskers, marker="o", ms=4, capsize=3, lw=1.2,
                        label=band)
        ax.set_xticks(x, [entry.label for entry in entries], rotation=25, ha="right", fontsize=8)
        ax.set_title(metric_label(metric))
        ax.grid(alpha=0.3)
    axes[0].legend(title="band (mean, min–max)", fontsize=8)
    fig.suptitle("Band summaries of the audited checkpoints")
    fig.savefig(path, dpi=100)
    return Path(path)


def write_plots(
    entries: Sequence[AuditEntry], out_dir: str | os.PathLike[str], bands: Sequence[float] = (1 / 3, 2 / 3)
) -> list[Path]:
    """``<out_dir>/depth_traces.png`` (:func:`plot_audit_traces`) and ``<out_dir>/bands.png``
    (:func:`plot_audit_bands`); returns their paths.

    Raises:
        ImportError: matplotlib is missing (the message says how to install it).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        plot_audit_traces(entries, out / "depth_traces.png", bands=bands),
        plot_audit_bands(entries, out / "bands.png"),
    ]
