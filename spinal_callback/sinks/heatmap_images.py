"""The state behind the ``spinal/heatmap/*`` images: bounded histories, alert / rollback steps, pending draws.

A heatmap is redrawn when it gains a column (a full depth trace, a patching probe) — at most once per
``min_gap`` steps, and once more at the end for the columns held back — or when an alert or a rollback
happens, at that step. Drawing can wait until the end of the step (``defer``), so that an alert
the detector raises after the probe is already on the image of that step: one image per tag and step.

With ``background=True`` the drawing and PNG encoding (tens of milliseconds per image) run on one worker
thread, from a copy of the data taken when the image is due; the finished images are handed to the writer
on the calling (training) thread at the next call, and :meth:`HeatmapImages.flush` waits for all of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.heatmap import HeatmapHistory
from spinal_callback.sinks.heatmap_figure import heatmap_figure
from spinal_callback.sinks.metric_labels import METRIC_LABELS, metric_label_of
from spinal_callback.sinks.summary_events import add_image_at, encode_image, write_encoded_image

__all__ = ["TRACE_HEATMAP_TAGS", "HeatmapImages"]

#: The depth-trace heatmaps, one per metric.
TRACE_HEATMAP_TAGS = tuple(f"spinal/heatmap/{metric}" for metric in LAYER_METRICS)

#: Images drawn in the background that may wait to be written before the caller waits for the oldest: two
#: full redraws of every trace heatmap (memory: a few MiB).
_MAX_IN_FLIGHT = 2 * len(TRACE_HEATMAP_TAGS)


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
        background: draw and encode on a worker thread; ``writer`` is still called only from the thread that
            calls this object (:meth:`write_pending`, :meth:`flush`). A failed drawing is raised there, once.
    """

    def __init__(self, writer: Any, max_steps: int, min_gap: int = 0, background: bool = False) -> None:
        self.writer = writer
        self.background = background
        self._worker: ThreadPoolExecutor | None = None
        self._drawing: deque[tuple[str, int, Future[Any]]] = deque()
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
        """Draw every heatmap marked since the last draw, at the step it was marked at (in the background:
        start drawing it, and write the images finished so far)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            step, tags = pending
            for tag in sorted(tags):
                self._draw(tag, step)
                self.last_drawn[tag] = step
                self.stale.pop(tag, None)
        self._write_finished(wait=False)

    def flush(self) -> None:
        """Draw what is marked and wait until every image has been written."""
        self.write_pending()
        self._write_finished(wait=True)

    def close(self) -> None:
        """Write every image (see :meth:`flush`) and stop the worker thread (idempotent)."""
        try:
            self.flush()
        finally:
            worker, self._worker = self._worker, None
            if worker is not None:
                worker.shutdown(wait=True)

    def _draw(self, tag: str, step: int) -> None:
        draw = self._drawing_of(tag)
        if not self.background:
            add_image_at(self.writer, tag, draw(), step)
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spinal-heatmaps")
        writer = self.writer
        self._drawing.append((tag, step, self._worker.submit(lambda: encode_image(writer, draw()))))
        if len(self._drawing) > _MAX_IN_FLIGHT:
            self._write_finished(wait=True, keep=_MAX_IN_FLIGHT)

    def _write_finished(self, wait: bool, keep: int = 0) -> None:
        """Write the finished images in the order they were asked for; with ``wait``, wait until at most
        ``keep`` are left. A drawing that failed is raised after the others are written."""
        failure: BaseException | None = None
        while self._drawing and (self._drawing[0][2].done() or (wait and len(self._drawing) > keep)):
            tag, step, future = self._drawing.popleft()
            try:
                encoded = future.result()
            except Exception as exc:  # drawing failed: the other images are still written
                failure = failure or RuntimeError(f"drawing the heatmap {tag!r} at step {step} failed: {exc!r}")
                continue
            write_encoded_image(self.writer, tag, encoded, step)
        if failure is not None:
            raise failure

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
        return self._drawing_of(tag)()

    def _drawing_of(self, tag: str) -> Callable[[], np.ndarray]:
        """A function that draws the current image of ``tag`` from a copy of its data (later columns, alerts or
        rollbacks do not change it)."""
        alerts, rollbacks = tuple(self.alert_steps), tuple(self.rollback_steps)
        if tag in self.extra:
            series = self.extra[tag]
            values, steps, layers = series.values.matrix()[0], series.step_list(), list(series.layers)
            label = metric_label_of(tag)
            return lambda: heatmap_figure(
                values, steps, layers, label, alerts=alerts, rollbacks=rollbacks, change=False
            )
        metric = tag.removeprefix("spinal/heatmap/")
        matrix = self.trace.values.matrix()[LAYER_METRICS.index(metric)]  # matrix() stacks a new array
        steps, layers, label = self.trace.step_list(), list(self.trace.layers), METRIC_LABELS[metric]
        return lambda: heatmap_figure(matrix, steps, layers, label, alerts=alerts, rollbacks=rollbacks)

    def _mark(self, step: int, tags: set[str]) -> None:
        """Queue ``tags`` for drawing at ``step``; what was queued for an earlier step is drawn first."""
        if self.pending is not None and self.pending[0] != step:
            self.write_pending()
        if self.pending is None:
            self.pending = (step, set())
        self.pending[1].update(tags)
