"""The state behind the ``spinal/heatmap/*`` images: bounded histories, alert / rollback steps, pending draws.

A heatmap is redrawn when it gains a column (a full depth trace, a patching probe) — at most once per
``min_gap`` steps, and once more at the end for the columns held back — or when an alert or a rollback
happens, at that step. Drawing can wait until the end of the step (``defer``), so that an alert
the detector raises after the probe is already on the image of that step: one image per tag and step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.heatmap import HeatmapHistory
from spinal_callback.sinks.heatmap_figure import heatmap_figure
from spinal_callback.sinks.metric_labels import METRIC_LABELS, metric_label_of
from spinal_callback.sinks.summary_events import add_image_at

__all__ = ["TRACE_HEATMAP_TAGS", "HeatmapImages"]

#: The depth-trace heatmaps, one per metric.
TRACE_HEATMAP_TAGS = tuple(f"spinal/heatmap/{metric}" for metric in LAYER_METRICS)


class _Series:
    """One heatmap's columns and their steps, downsampled together (same ``max_steps``, same adds)."""

    def __init__(self, max_steps: int) -> None:
        self.values = HeatmapHistory(max_steps)
        self.steps = HeatmapHistory(max_steps)
        self.layers: list[int] = []

    def add(self, step: int, column: np.ndarray, layers: Sequence[int]) -> None:
        if self.values.kept and self.values.kept[0].shape != column.shape:
            self.steps.reset()  # the values history starts over on a new shape; keep the steps in line
        self.values.add(column)
        self.steps.add(np.array([float(step)]))
        self.layers = list(layers)

    @property
    def empty(self) -> bool:
        return self.values.latest is None

    def step_list(self) -> list[int]:
        return [int(s) for s in self.steps.matrix()[0]]


class HeatmapImages:
    """Heatmap histories of one run and the images drawn from them.

    Args:
        writer: receives ``add_image(tag, HWC uint8, step, dataformats="HWC")``.
        max_steps: most columns per heatmap (older ones are downsampled, see :class:`HeatmapHistory`).
        min_gap: a new column redraws a heatmap only when its last image is at least ``min_gap`` steps old
            (0: every column). Alerts and rollbacks always redraw, and :meth:`write_stale` draws the columns
            still undrawn (at the end of training), so every column reaches an image.
    """

    def __init__(self, writer: Any, max_steps: int, min_gap: int = 0) -> None:
        self.writer = writer
        self.max_steps = max_steps
        self.min_gap = int(min_gap)
        self.trace = _Series(max_steps)
        self.extra: dict[str, _Series] = {}
        self.alert_steps: list[int] = []
        self.rollback_steps: list[int] = []
        self.pending: tuple[int, set[str]] | None = None
        self.last_drawn: dict[str, int] = {}
        self.stale: dict[str, int] = {}  # tag -> step of its newest undrawn column

    def add_trace(self, step: int, trace: DepthTrace, defer: bool = False) -> None:
        """A depth trace's column for every metric; a partial trace (layers skipped) adds nothing."""
        if trace.num_layers == 0 or trace.is_partial:
            return
        column = np.array([getattr(trace, m) for m in LAYER_METRICS], dtype=np.float64)
        self.trace.add(step, column, trace.layers)
        self._column(step, set(TRACE_HEATMAP_TAGS))
        if not defer:
            self.write_pending()

    def add_column(
        self, tag: str, step: int, column: Sequence[float], layers: Sequence[int] | None = None, defer: bool = False
    ) -> None:
        """One column of a heatmap outside the depth trace (one panel, no change view)."""
        values = np.asarray(column, dtype=np.float64)[None, :]
        series = self.extra.setdefault(tag, _Series(self.max_steps))
        series.add(step, values, list(layers) if layers is not None else list(range(1, values.shape[1] + 1)))
        self._column(step, {tag})
        if not defer:
            self.write_pending()

    def add_events(self, step: int, alerts: int, rollbacks: int) -> None:
        """Remember alert / rollback steps; every heatmap drawn so far is redrawn at ``step``."""
        if alerts > 0:
            self.alert_steps.append(int(step))
        if rollbacks > 0:
            self.rollback_steps.append(int(step))
        if alerts > 0 or rollbacks > 0:
            tags = {tag for tag, series in self.extra.items() if not series.empty}
            if not self.trace.empty:
                tags |= set(TRACE_HEATMAP_TAGS)
            if tags:
                self._mark(step, tags)

    def write_pending(self) -> None:
        """Draw every heatmap marked since the last draw, at the step it was marked at."""
        pending, self.pending = self.pending, None
        if pending is None:
            return
        step, tags = pending
        for tag in sorted(tags):
            add_image_at(self.writer, tag, self.figure(tag), step)
            self.last_drawn[tag] = step
            self.stale.pop(tag, None)

    def write_stale(self) -> None:
        """Draw the heatmaps whose newest columns ``min_gap`` held back (at the end of training)."""
        self.write_pending()
        for step in sorted(set(self.stale.values())):
            self._mark(step, {tag for tag, at in self.stale.items() if at == step})
            self.write_pending()

    def _column(self, step: int, tags: set[str]) -> None:
        """A new column of ``tags`` at ``step``: drawn now (deferred to the end of the step) or held back."""
        due = {tag for tag in tags if step - self.last_drawn.get(tag, step - self.min_gap) >= self.min_gap}
        if due:
            self._mark(step, due)
        for tag in tags - due:
            self.stale[tag] = step

    def figure(self, tag: str) -> np.ndarray:
        """The current image of ``tag`` (:func:`heatmap_figure`)."""
        alerts, rollbacks = self.alert_steps, self.rollback_steps
        if tag in self.extra:
            series = self.extra[tag]
            return heatmap_figure(
                series.values.matrix()[0],
                series.step_list(),
                series.layers,
                metric_label_of(tag),
                alerts=alerts,
                rollbacks=rollbacks,
                change=False,
            )
        metric = tag.removeprefix("spinal/heatmap/")
        matrix = self.trace.values.matrix()[LAYER_METRICS.index(metric)]
        return heatmap_figure(
            matrix, self.trace.step_list(), self.trace.layers, METRIC_LABELS[metric], alerts=alerts, rollbacks=rollbacks
        )

    def _mark(self, step: int, tags: set[str]) -> None:
        """Queue ``tags`` for drawing at ``step``; what was queued for an earlier step is drawn first."""
        if self.pending is not None and self.pending[0] != step:
            self.write_pending()
        if self.pending is None:
            self.pending = (step, set())
        self.pending[1].update(tags)
