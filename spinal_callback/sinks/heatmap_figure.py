"""Annotated layer × step heatmaps for TensorBoard, drawn with Pillow (no matplotlib in the core).

One figure per metric, :data:`FIGURE_HEIGHT` × :func:`figure_width` pixels, whatever the number of
layers or probes: the absolute value (viridis, min–max of the figure) next to the **change since the
first probe** (per layer, value minus that layer's first value; diverging RdBu_r centred at 0 and
symmetric about it), each with layer ticks, an optimizer-step axis and a colour bar labelled with the
metric's name and unit. Layers where the metric is undefined by construction are hatched and the legend
says why; alert steps are red vertical lines, rollback steps black dashed ones. Text is ASCII (Pillow's
built-in font has no Greek letters). Pillow comes with TensorBoard and is what ``add_image`` encodes with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinal_callback.sinks.figure_canvas import FIGURE_HEIGHT, TEXT_COLOR, Canvas, nice_ticks, tick_labels
from spinal_callback.sinks.heatmap import _scale, change_since_baseline, colorize, colorize_diverging
from spinal_callback.sinks.metric_labels import MetricLabel

__all__ = ["FIGURE_HEIGHT", "PlotBox", "figure_boxes", "figure_width", "heatmap_figure", "nice_ticks"]

PANEL_WIDTH = 540
_MARGIN = 20
_PLOT_TOP, _PLOT_BOTTOM = 58, FIGURE_HEIGHT - 124
ALERT_COLOR = (214, 39, 40)
ROLLBACK_COLOR = (0, 0, 0)
_HATCH_BACK, _HATCH_LINE = (225, 225, 225), (150, 150, 150)


@dataclass(frozen=True)
class PlotBox:
    """The pixel area of one heatmap panel: columns ``left … right-1``, rows ``top … bottom-1``."""

    left: int
    top: int
    right: int
    bottom: int

    def row_span(self, row: int, rows: int) -> tuple[int, int]:
        """Pixel rows ``[y0, y1)`` of matrix row ``row`` (row 0 = first layer, drawn at the bottom)."""
        height = self.bottom - self.top
        y0 = self.bottom - round((row + 1) * height / rows)
        y1 = self.bottom - round(row * height / rows)
        return y0, y1


def figure_width(panels: int) -> int:
    """Width in pixels of a figure with ``panels`` heatmaps side by side."""
    return 2 * _MARGIN + panels * PANEL_WIDTH


def figure_boxes(panels: int) -> list[PlotBox]:
    """The plot areas of a figure with ``panels`` heatmaps (value first, then change)."""
    return [
        PlotBox(_MARGIN + i * PANEL_WIDTH + 48, _PLOT_TOP, _MARGIN + i * PANEL_WIDTH + 408, _PLOT_BOTTOM)
        for i in range(panels)
    ]


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _edges(steps: Sequence[int]) -> np.ndarray:
    """Cell edges along the step axis: each probe's cell runs from its step to the next probe's; the last
    one is as wide as the one before it (1 step for a single probe), so the axis starts at the first probe."""
    c = np.asarray(steps, dtype=np.float64)
    last = c[-1] - c[-2] if len(c) > 1 else 1.0
    return np.concatenate([c, [c[-1] + max(last, 1.0)]])


def _raster(
    colors: np.ndarray, undefined: np.ndarray, box: PlotBox, edges: np.ndarray, x_range: tuple[float, float]
) -> np.ndarray:
    """The plot area's pixels: cell colours (``rows × cols × 3``), hatching on undefined rows."""
    rows = colors.shape[0]
    width, height = box.right - box.left, box.bottom - box.top
    lo, hi = x_range
    x = lo + (np.arange(width) + 0.5) / width * (hi - lo)
    col = np.searchsorted(edges, x, side="right") - 1
    inside = (col >= 0) & (col < colors.shape[1])
    y = np.arange(height)
    row = np.clip(((height - y - 0.5) * rows / height).astype(np.int64), 0, rows - 1)
    pixels = colors[row][:, np.clip(col, 0, colors.shape[1] - 1)]
    pixels[:, ~inside] = 255
    hatch_rows = undefined[row]
    if hatch_rows.any():
        diagonal = ((np.arange(width)[None, :] + y[:, None]) % 8) < 2
        hatch = np.where(diagonal[..., None], np.array(_HATCH_LINE), np.array(_HATCH_BACK)).astype(np.uint8)
        pixels[hatch_rows] = hatch[hatch_rows]
    return pixels


def _colour_bar(
    canvas: Canvas,
    box: PlotBox,
    colors: np.ndarray,
    ticks: Sequence[float],
    value_range: tuple[float, float],
    label: str,
) -> None:
    height = box.bottom - box.top
    bar = np.repeat(colors[::-1][:, None, :], 14, axis=1)  # top = maximum
    from PIL import Image

    canvas.image.paste(Image.fromarray(bar.astype(np.uint8)).resize((14, height)), (box.right + 8, box.top))
    canvas.draw.rectangle([box.right + 7, box.top - 1, box.right + 22, box.bottom], outline=TEXT_COLOR)
    lo, hi = value_range
    widest = 0
    for tick, text in zip(ticks, tick_labels(ticks)):
        y = box.bottom - 1 - (tick - lo) / (hi - lo) * (height - 1) if hi > lo else (box.top + box.bottom) / 2
        canvas.draw.line([(box.right + 22, y), (box.right + 26, y)], fill=TEXT_COLOR)
        canvas.text((box.right + 29, y), text, small=True, anchor="lm")
        widest = max(widest, canvas.text_width(text, small=True))
    canvas.vertical_text(box.right + 33 + widest, (box.top + box.bottom) / 2, label)


def _axes(canvas: Canvas, box: PlotBox, layers: Sequence[int], x_range: tuple[float, float]) -> None:
    canvas.draw.rectangle([box.left - 1, box.top - 1, box.right, box.bottom], outline=TEXT_COLOR)
    rows = len(layers)
    every = max(1, math.ceil(15 * rows / (box.bottom - box.top)))
    for i, layer in enumerate(layers):
        if i % every and i != rows - 1:
            continue
        y0, y1 = box.row_span(i, rows)
        y = (y0 + y1) / 2
        canvas.draw.line([(box.left - 5, y), (box.left - 1, y)], fill=TEXT_COLOR)
        canvas.text((box.left - 7, y), str(layer), small=True, anchor="rm")
    canvas.vertical_text(box.left - 46, (box.top + box.bottom) / 2, "layer")
    lo, hi = x_range
    ticks = nice_ticks(lo, hi, max_ticks=7, integer=True)
    for tick in ticks:
        x = box.left + (tick - lo) / (hi - lo) * (box.right - box.left)
        canvas.draw.line([(x, box.bottom), (x, box.bottom + 4)], fill=TEXT_COLOR)
        canvas.text((x, box.bottom + 6), str(int(tick)), small=True, anchor="ma")
    canvas.text(((box.left + box.right) / 2, box.bottom + 22), "optimizer step", small=True, anchor="ma")


def heatmap_figure(
    values: np.ndarray,
    steps: Sequence[int],
    layers: Sequence[int],
    label: MetricLabel,
    *,
    alerts: Sequence[int] = (),
    rollbacks: Sequence[int] = (),
    change: bool = True,
) -> np.ndarray:
    """Draw the annotated heatmap of one metric.

    Args:
        values: ``layers × probes`` matrix (row 0 = first layer, drawn at the bottom); NaN allowed.
        steps: the optimizer step of each column (increasing).
        layers: the label of each row.
        label: the metric's title, unit and undefined-layer note.
        alerts: optimizer steps of alerts (red lines); steps beyond the last probe widen the step axis.
        rollbacks: optimizer steps of rollbacks (black dashed lines).
        change: add the change-since-first-probe panel to the right.

    Returns:
        ``(FIGURE_HEIGHT, figure_width(2 if change else 1), 3)`` uint8 RGB image.

    Raises:
        ValueError: ``values`` is not 2-D or does not match ``steps`` / ``layers``.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape != (len(layers), len(steps)) or matrix.size == 0:
        raise ValueError(
            f"`values` must be a (layers={len(layers)}) × (steps={len(steps)}) matrix, got shape {matrix.shape}"
        )
    panels = 2 if change else 1
    canvas = Canvas(figure_width(panels))
    edges = _edges(steps)
    events = [s for s in (*alerts, *rollbacks) if s >= edges[0]]
    x_range = (float(edges[0]), max([float(edges[-1]), *(s + 0.5 for s in events)]))
    undefined = np.asarray(~np.isfinite(matrix).any(axis=1), dtype=bool)
    finite = matrix[np.isfinite(matrix)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (math.nan, math.nan)
    delta = change_since_baseline(matrix)
    finite_delta = np.abs(delta[np.isfinite(delta)])
    largest = float(finite_delta.max()) if finite_delta.size else 0.0
    span = largest if largest > 0 else 1.0

    first, last = steps[0], steps[-1]
    canvas.text(
        (_MARGIN, 8), f"{label.title}: layer x optimizer step ({len(steps)} full depth traces, steps {first} to {last})"
    )
    boxes = figure_boxes(panels)
    specs = [
        (
            boxes[0],
            colorize(_scale(matrix)),
            "value",
            label.axis,
            (lo, hi),
            nice_ticks(lo, hi),
            colorize(np.linspace(0.0, 1.0, 256)),
        )
    ]
    if change:
        specs.append(
            (
                boxes[1],
                colorize_diverging(delta / span),
                f"change since the first probe (step {first})",
                f"change [{label.unit}]",
                (-span, span),
                nice_ticks(-span, span) if largest > 0 else [0.0],
                colorize_diverging(np.linspace(-1.0, 1.0, 256)),
            )
        )
    from PIL import Image

    for box, colors, title, bar_label, value_range, ticks, bar in specs:
        pixels = _raster(colors, undefined, box, edges, x_range)
        canvas.image.paste(Image.fromarray(pixels), (box.left, box.top))
        for steps_, color, dashed in ((alerts, ALERT_COLOR, False), (rollbacks, ROLLBACK_COLOR, True)):
            for step in steps_:
                if x_range[0] <= step <= x_range[1]:
                    x = box.left + (step - x_range[0]) / (x_range[1] - x_range[0]) * (box.right - box.left - 1)
                    shift = 3 if dashed and step in alerts else 0  # a rollback at an alert's step: side by side
                    canvas.vline(min(x + shift, box.right - 1), box.top, box.bottom, color, dashed)
        canvas.text((box.left, box.top - 20), title)
        _axes(canvas, box, layers, x_range)
        if math.isfinite(value_range[0]):
            _colour_bar(canvas, box, bar, ticks, value_range, bar_label)
    _legend(canvas, label, matrix, undefined, alerts, rollbacks, largest, hi - lo if finite.size else math.nan, change)
    return np.asarray(canvas.image, dtype=np.uint8)


def _legend(
    canvas: Canvas,
    label: MetricLabel,
    matrix: np.ndarray,
    undefined: np.ndarray,
    alerts: Sequence[int],
    rollbacks: Sequence[int],
    largest: float,
    spread: float,
    change: bool,
) -> None:
    y = _PLOT_BOTTOM + 46
    x = _MARGIN
    lines: list[tuple[str, str]] = []
    if undefined.any():
        why = label.undefined or "no finite value at any probe"
        lines.append(("hatch", f"hatched rows: undefined at this layer ({why})"))
    if (~np.isfinite(matrix[~undefined])).any():
        lines.append(("grey", "grey cells: no finite value at that probe"))
    events = (
        f"red line: alert ({len(alerts)})   black dashed line: rollback ({len(rollbacks)})"
        if alerts or rollbacks
        else "no alert or rollback so far"
    )
    lines.append(("events", events))
    if change:
        if largest > 0 and spread > 0 and math.isfinite(spread):
            lines.append(
                (
                    "",
                    f"largest change {_fmt(largest)} {label.unit} = {100 * largest / spread:.1f}% of the "
                    f"range of values shown ({_fmt(spread)})",
                )
            )
        elif largest == 0:
            lines.append(("", "no change since the first probe at any layer"))
    for kind, text in lines:
        if kind == "hatch":
            canvas.draw.rectangle([x, y, x + 18, y + 12], fill=_HATCH_BACK, outline=_HATCH_LINE)
            canvas.draw.line([(x, y + 12), (x + 12, y)], fill=_HATCH_LINE, width=2)
        elif kind == "grey":
            canvas.draw.rectangle([x, y, x + 18, y + 12], fill=(128, 128, 128))
        elif kind == "events":
            canvas.draw.line([(x + 4, y), (x + 4, y + 12)], fill=ALERT_COLOR, width=2)
            canvas.draw.line([(x + 12, y), (x + 12, y + 4)], fill=ROLLBACK_COLOR, width=2)
            canvas.draw.line([(x + 12, y + 8), (x + 12, y + 12)], fill=ROLLBACK_COLOR, width=2)
        canvas.text((x + 26, y - 1), text, small=True)
        y += 18
