"""Matplotlib helpers shared by ``spinal report`` and ``spinal audit``: an Agg figure, labels, event lines.

matplotlib (the ``plots`` extra) is imported inside the functions and the Agg canvas is driven directly, so
the global pyplot backend of the caller is never touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spinal_callback.sinks.metric_labels import METRIC_LABELS

__all__ = [
    "ALERT_STYLE",
    "PANEL_GRID",
    "PLOT_LABELS",
    "ROLLBACK_STYLE",
    "agg_figure",
    "cell_edges",
    "event_legend_handles",
    "mark_events",
    "metric_label",
    "require_matplotlib",
    "unit_label",
]

#: Axis labels with the paper symbols, in mathtext (renders with matplotlib's bundled fonts).
PLOT_LABELS = {
    "contraction": r"contraction $\alpha_\ell$",
    "transport": r"transport $\mathcal{L}_\ell$",
    "entropy": r"lens entropy $E_\ell$",
    "effective_rank": "effective rank",
    "transport_curvature": r"transport curvature $\kappa^{\mathcal{L}}_\ell$",
    "hidden_curvature": r"hidden curvature $\kappa^{h}_\ell$",
}

#: Margins of a 2 × 3 panel figure with room on the right for a colour bar.
PANEL_GRID = {"left": 0.05, "right": 0.9, "bottom": 0.08, "top": 0.9, "wspace": 0.3, "hspace": 0.4}

#: How alert and rollback steps are drawn on a time axis (the TensorBoard heatmaps use the same colours).
ALERT_STYLE: Mapping[str, Any] = {"color": "#d62728", "lw": 1.6, "ls": "-"}
ROLLBACK_STYLE: Mapping[str, Any] = {"color": "black", "lw": 1.6, "ls": "--"}


def require_matplotlib() -> Any:
    """The ``matplotlib`` module with the submodules used here, or an ImportError naming the extra."""
    try:
        import matplotlib
        import matplotlib.backends.backend_agg
        import matplotlib.cm
        import matplotlib.colors
        import matplotlib.figure
        import matplotlib.lines
        import matplotlib.patches
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


def metric_label(metric: str) -> str:
    """The axis label of ``metric`` (:data:`PLOT_LABELS`), else the name itself."""
    return PLOT_LABELS.get(metric, metric)


def unit_label(metric: str) -> str:
    """``"<symbol label> [unit]"`` (the unit from :data:`~spinal_callback.sinks.metric_labels.METRIC_LABELS`)."""
    label = METRIC_LABELS.get(metric)
    return f"{metric_label(metric)} [{label.unit}]" if label is not None else metric_label(metric)


def cell_edges(steps: Sequence[float]) -> np.ndarray:
    """Cell edges along the step axis: each probe's cell runs from its step to the next probe's; the last is
    as wide as the one before it (1 step for a single probe) — the layout of the TensorBoard heatmaps."""
    c = np.asarray(steps, dtype=np.float64)
    last = c[-1] - c[-2] if len(c) > 1 else 1.0
    return np.concatenate([c, [c[-1] + max(last, 1.0)]])


def mark_events(ax: Any, alerts: Sequence[int], rollbacks: Sequence[int]) -> None:
    """Vertical lines at alert (red) and rollback (black dashed) steps."""
    for step in alerts:
        ax.axvline(step, **ALERT_STYLE)
    for step in rollbacks:
        ax.axvline(step, **ROLLBACK_STYLE)


def event_legend_handles(alerts: Sequence[int], rollbacks: Sequence[int]) -> list[Any]:
    """Legend entries for :func:`mark_events` (only for the kinds that occur)."""
    mpl = require_matplotlib()
    handles = []
    if alerts:
        handles.append(mpl.lines.Line2D([], [], label=f"alert ({len(alerts)})", **ALERT_STYLE))
    if rollbacks:
        handles.append(mpl.lines.Line2D([], [], label=f"rollback ({len(rollbacks)})", **ROLLBACK_STYLE))
    return handles
