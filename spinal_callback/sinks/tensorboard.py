"""TensorBoard output: per-layer and band scalars, per-layer runs, markers, a layout and annotated heatmaps.

Tags written (``ℓ`` is the monitored block index, ``<metric>`` one of
:data:`~spinal_callback.geometry.trace.LAYER_METRICS`, ``<band>`` one of early / mid / late):

- ``spinal/<metric>/L<ℓ>`` — the per-layer value (α_ℓ, 𝓛_ℓ, E_ℓ, erank, κ^𝓛_ℓ, κ^h_ℓ);
- ``spinal/band/<band>/<metric>`` — the band mean; ``spinal/band/<band>/<metric>_min`` and
  ``…_max`` — the minimum and maximum over the band's layers;
- ``spinal_by_layer/<metric>`` and ``spinal_by_layer/<metric>_change`` in the per-layer runs
  ``<log dir>/spinal_layers/L<ℓ>`` — the same value, and its change since the layer's first probe, one
  run per layer so that TensorBoard draws each layer in its own colour
  (:mod:`~spinal_callback.sinks.layer_runs`);
- ``spinal/alerts/marker`` and ``spinal/rollbacks/marker`` — at every step the detector ran: the number
  of alerts raised / 1 if training was rolled back there, else 0 (:meth:`TensorBoardSink.write_events`);
- ``spinal/heatmap/<metric>`` — image: layer × optimizer step of the full depth traces, the value next to
  its change since the first probe, with alert and rollback steps marked
  (:func:`~spinal_callback.sinks.heatmap_figure.heatmap_figure`);
- ``custom_scalars__config__`` — the layout of the *Custom Scalars* dashboard
  (:func:`~spinal_callback.sinks.dashboard_layout.custom_scalar_layout`).

Only finite values are written: NaN (e.g. 𝓛 of the last layer, curvature at the ends) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from spinal_callback.geometry.bands import band_positions, band_statistics
from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.dashboard_layout import MARKER_TAGS, custom_scalar_layout
from spinal_callback.sinks.heatmap_images import HeatmapImages
from spinal_callback.sinks.layer_runs import LayerRuns, log_dir_of
from spinal_callback.sinks.summary_events import add_scalars_at

__all__ = [
    "MARKER_TAGS",
    "SummaryWriterLike",
    "TensorBoardSink",
    "custom_scalar_layout",
    "trace_scalars",
]

class SummaryWriterLike(Protocol):
    """The part of :class:`torch.utils.tensorboard.SummaryWriter` the sink uses."""

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = ...) -> Any: ...

    def add_text(self, tag: str, text_string: str, global_step: int | None = ...) -> Any: ...

    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = ..., **kwargs: Any) -> Any: ...

    def add_custom_scalars(self, layout: dict[str, Any]) -> Any: ...

    def flush(self) -> Any: ...

    def close(self) -> Any: ...


def trace_scalars(trace: DepthTrace) -> dict[str, float]:
    """The TensorBoard scalars of one depth trace (pure; finite values only).

    Args:
        trace: the depth trace.

    Returns:
        ``{"spinal/<metric>/L<ℓ>": value, …, "spinal/band/<band>/<metric>": mean,
        "spinal/band/<band>/<metric>_min": …, "spinal/band/<band>/<metric>_max": …}``.
    """
    out: dict[str, float] = {}
    for metric in LAYER_METRICS:
        for layer, raw in zip(trace.layers, getattr(trace, metric)):
            value = float(raw)
            if math.isfinite(value):
                out[f"spinal/{metric}/L{layer}"] = value
    for band, per_metric in band_statistics(trace).items():
        for metric, (mean, low, high) in per_metric.items():
            for suffix, value in (("", mean), ("_min", low), ("_max", high)):
                if math.isfinite(value):
                    out[f"spinal/band/{band}/{metric}{suffix}"] = value
    return out


class TensorBoardSink:
    """Writes depth traces, scalars, markers, heatmaps and text to a TensorBoard ``SummaryWriter``.

    Args:
        writer: anything with the ``SummaryWriter`` API (Lightning's ``logger.experiment``, the
            writer of HF's ``TensorBoardCallback``, or the plugin's own). ``None`` only together
            with ``log_scalars``: then scalars go there and text, layout and images are dropped.
        log_scalars: optional ``(values, step) -> None`` that logs a dict of scalars through the
            host framework (e.g. Lightning's ``logger.log_metrics``); else ``writer.add_scalar``.
        heatmaps: write the ``spinal/heatmap/<metric>`` images (a column per full depth trace, drawn as
            ``heatmap_interval`` allows and at every alert or rollback step; partial traces, which skip
            layers, add no column).
        heatmap_max_steps: maximum heatmap width in probe steps (≥ 2). Older columns are
            *downsampled* (every other one dropped, stride doubled), never cut off, so the image
            always spans the whole run; memory is bounded by
            ``len(LAYER_METRICS) × layers × heatmap_max_steps`` floats.
        owns_writer: :meth:`close` also closes ``writer``.
        layer_runs: also write each layer to its own run under ``<writer's log dir>/spinal_layers/``
            (needs a writer whose directory is known: ``get_logdir()`` or ``log_dir``).
        open_layer_writer: ``path -> SummaryWriter``-like for those runs (default: torch's ``SummaryWriter``).
        log_text: optional ``(tag, text, step) -> None`` that also hands text (alerts, rollbacks, the
            config) to the host framework's loggers that take text.
        heatmap_interval: a new column redraws a heatmap only when its last image is at least this many
            steps old (0: at every full trace); alerts and rollbacks always redraw, and closing the sink
            draws the columns held back.
        draw_in_background: draw and encode the heatmap images on one worker thread (tens of milliseconds per
            image off the training thread); the writer is still called only from the thread that calls this
            sink, and :meth:`flush` / :meth:`close` wait for every image.
    """

    def __init__(
        self,
        writer: SummaryWriterLike | None,
        *,
        log_scalars: Callable[[Mapping[str, float], int], None] | None = None,
        heatmaps: bool = True,
        heatmap_max_steps: int = 512,
        owns_writer: bool = False,
        layer_runs: bool = True,
        open_layer_writer: Callable[[str], SummaryWriterLike] | None = None,
        heatmap_interval: int = 0,
        log_text: Callable[[str, str, int], None] | None = None,
        draw_in_background: bool = False,
    ) -> None:
        if writer is None and log_scalars is None:
            raise ValueError("`writer` must be a SummaryWriter-like object unless `log_scalars` is given, got None")
        self.log_text = log_text
        if isinstance(heatmap_max_steps, bool) or not isinstance(heatmap_max_steps, int) or heatmap_max_steps < 2:
            raise ValueError(f"`heatmap_max_steps` must be an integer >= 2, got {heatmap_max_steps!r}")
        self.writer = writer
        self.log_scalars = log_scalars
        self.heatmaps = heatmaps
        self.heatmap_max_steps = heatmap_max_steps
        self.owns_writer = owns_writer
        log_dir = log_dir_of(writer) if writer is not None and layer_runs else None
        self.layer_runs = LayerRuns(log_dir, open_layer_writer) if log_dir is not None else None
        self._layout_written = False
        if isinstance(heatmap_interval, bool) or not isinstance(heatmap_interval, int) or heatmap_interval < 0:
            raise ValueError(f"`heatmap_interval` must be an integer >= 0, got {heatmap_interval!r}")
        drawn = heatmaps and writer is not None
        self.images = (
            HeatmapImages(writer, heatmap_max_steps, min_gap=heatmap_interval, background=draw_in_background)
            if drawn else None
        )

    def write_trace(self, step: int, trace: DepthTrace, *, defer_images: bool = False) -> dict[str, float]:
        """Write one depth trace: scalars, the per-layer runs, the layout (first call only) and the heatmaps.

        Args:
            step: the optimizer step.
            trace: the depth trace; a partial one adds no heatmap column.
            defer_images: draw the heatmaps at :meth:`write_pending_images` (or the next trace, flush or
                close) instead of now, so that alerts of this step reach them first.

        Returns:
            The scalars written to the main run (:func:`trace_scalars`).
        """
        scalars = trace_scalars(trace)
        self.write_scalars(step, scalars)
        if self.layer_runs is not None:
            self.layer_runs.write_trace(step, trace)
        if self.writer is not None and not self._layout_written and trace.num_layers > 0:
            bands = [band for band, idx in band_positions(trace).items() if idx]
            layout = custom_scalar_layout(trace.num_layers, bands, layer_runs=self.layer_runs is not None)
            self.writer.add_custom_scalars(layout)
            self._layout_written = True
        if self.images is not None:
            self.images.add_trace(step, trace, defer=defer_images)
        return scalars

    def write_heatmap(
        self,
        tag: str,
        step: int,
        column: Sequence[float],
        *,
        layers: Sequence[int] | None = None,
        defer_images: bool = False,
    ) -> None:
        """Append one per-layer column to the layer × step heatmap ``tag`` and write the image.

        Used for quantities outside the depth trace (e.g. ``spinal/heatmap/patch_normalized_effect``):
        one panel (no change view), labelled by :func:`~spinal_callback.sinks.metric_labels.metric_label_of`;
        the history is bounded by ``heatmap_max_steps`` like the trace heatmaps. ``layers`` labels the rows
        (default ``1 … len(column)``).
        """
        if self.images is not None and len(column) > 0:
            self.images.add_column(tag, step, column, layers=layers, defer=defer_images)

    def write_events(self, step: int, alerts: int = 0, rollbacks: int = 0,
                     scalars: Mapping[str, float] | None = None) -> None:
        """The marker series at a step where the detector ran, and the heatmaps' alert / rollback lines.

        Writes ``spinal/alerts/marker = alerts`` and ``spinal/rollbacks/marker = rollbacks`` (0 at quiet
        steps, so the series line up with the metrics), in one write with the other ``scalars`` of that step.
        When there is an event, every heatmap is redrawn with it at :meth:`write_pending_images` (or the next
        trace, flush or close).
        """
        self.write_scalars(step, {**(scalars or {}), MARKER_TAGS[0]: float(alerts), MARKER_TAGS[1]: float(rollbacks)})
        if self.images is not None:
            self.images.add_events(step, alerts, rollbacks)

    def write_pending_images(self) -> None:
        """Draw the heatmaps that changed since they were last written, at the step of that change."""
        if self.images is not None:
            self.images.write_pending()

    def write_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write scalars at ``step``; non-finite values are skipped."""
        finite = {tag: float(v) for tag, v in values.items() if math.isfinite(float(v))}
        if not finite:
            return
        if self.log_scalars is not None:
            self.log_scalars(finite, step)
        elif self.writer is not None:  # one of the two is set (checked in __init__)
            add_scalars_at(self.writer, finite, step)

    def write_text(self, tag: str, text: str, step: int) -> None:
        """Write a text summary (e.g. alerts under ``spinal/alerts``) to the writer and to ``log_text``."""
        if self.writer is not None:
            self.writer.add_text(tag, text, step)
        if self.log_text is not None:
            self.log_text(tag, text, step)

    def flush(self) -> None:
        """Write pending heatmaps (waiting for those drawn in the background) and flush the writers."""
        if self.images is not None:
            self.images.flush()
        if self.layer_runs is not None:
            self.layer_runs.flush()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Draw the heatmap columns held back, flush, close the per-layer runs, and the writer if this sink owns it.

        A heatmap that fails to draw is raised after the writers are flushed and closed: it costs no other data.
        """
        failure: Exception | None = None
        images, self.images = self.images, None
        if images is not None:
            for finish in (images.write_stale, images.close):
                try:
                    finish()
                except Exception as exc:
                    failure = failure or exc
        if self.layer_runs is not None:
            self.layer_runs.close()
        if self.writer is not None:
            self.writer.flush()
            if self.owns_writer:
                self.writer.close()
        if failure is not None:
            raise failure
