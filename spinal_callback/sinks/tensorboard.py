"""TensorBoard output: per-layer and band scalars, a custom-scalars layout and layer × step heatmaps.

Tags written (``ℓ`` is the monitored block index, ``<metric>`` one of
:data:`~spinal_callback.geometry.trace.LAYER_METRICS`, ``<band>`` one of early / mid / late):

- ``spinal/<metric>/L<ℓ>`` — the per-layer value (α_ℓ, 𝓛_ℓ, E_ℓ, erank, κ^𝓛_ℓ, κ^h_ℓ);
- ``spinal/band/<band>/<metric>`` — the band mean; ``spinal/band/<band>/<metric>_min`` and
  ``…_max`` — the minimum and maximum over the band's layers;
- ``spinal/heatmap/<metric>`` — image: layer (bottom = first layer) × probe step;
- ``custom_scalars__config__`` — the layout of the *Custom Scalars* dashboard.

Only finite values are written: NaN (e.g. 𝓛 of the last layer, curvature at the ends) is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from spinal_callback.geometry.bands import band_positions, band_statistics
from spinal_callback.geometry.curvature import BAND_NAMES
from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.heatmap import HeatmapHistory, heatmap_image

__all__ = [
    "SummaryWriterLike",
    "TensorBoardSink",
    "custom_scalar_layout",
    "trace_scalars",
]

#: Paper symbols, used in chart titles.
METRIC_SYMBOLS = {
    "contraction": "α",
    "transport": "𝓛",
    "entropy": "E",
    "effective_rank": "erank",
    "transport_curvature": "κ^𝓛",
    "hidden_curvature": "κ^h",
}


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


def custom_scalar_layout(
    num_layers: int, band_names: Sequence[str] = BAND_NAMES
) -> dict[str, dict[str, list[Any]]]:
    """The layout for :meth:`SummaryWriter.add_custom_scalars`.

    Category ``"spinal: per-layer"`` holds one *Multiline* chart per metric, whose tag is the
    regex ``spinal/<metric>/L\\d+$`` (TensorBoard matches it from the start of the tag), so every
    monitored layer is one line. Category ``"spinal: bands"`` holds one *Margin* chart per band and
    metric: ``[mean, min, max]`` tags.

    Args:
        num_layers: monitored layers (only validated: the regex covers any layer index).
        band_names: bands to chart.

    Returns:
        ``{category: {chart title: ["Multiline" | "Margin", [tags]]}}``.

    Raises:
        ValueError: ``num_layers < 1``.
    """
    if num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}")
    per_layer = {
        f"{metric} ({METRIC_SYMBOLS[metric]}) by layer": ["Multiline", [rf"spinal/{metric}/L\d+$"]]
        for metric in LAYER_METRICS
    }
    bands = {
        f"{band} {metric} ({METRIC_SYMBOLS[metric]}): mean, min–max": [
            "Margin",
            [
                f"spinal/band/{band}/{metric}",
                f"spinal/band/{band}/{metric}_min",
                f"spinal/band/{band}/{metric}_max",
            ],
        ]
        for band in band_names
        for metric in LAYER_METRICS
    }
    return {"spinal: per-layer": per_layer, "spinal: bands": bands}


class TensorBoardSink:
    """Writes depth traces, scalars and text to a TensorBoard ``SummaryWriter``.

    Args:
        writer: anything with the ``SummaryWriter`` API (Lightning's ``logger.experiment``, the
            writer of HF's ``TensorBoardCallback``, or the plugin's own). ``None`` only together
            with ``log_scalars``: then scalars go there and text, layout and images are dropped.
        log_scalars: optional ``(values, step) -> None`` that logs a dict of scalars through the
            host framework (e.g. Lightning's ``logger.log_metrics``); else ``writer.add_scalar``.
        heatmaps: write the ``spinal/heatmap/<metric>`` images.
        heatmap_max_steps: maximum heatmap width in probe steps (≥ 2). Older columns are
            *downsampled* (every other one dropped, stride doubled), never cut off, so the image
            always spans the whole run; memory is bounded by
            ``len(LAYER_METRICS) × layers × heatmap_max_steps`` floats.
        owns_writer: :meth:`close` also closes ``writer``.
    """

    def __init__(
        self,
        writer: SummaryWriterLike | None,
        *,
        log_scalars: Callable[[Mapping[str, float], int], None] | None = None,
        heatmaps: bool = True,
        heatmap_max_steps: int = 512,
        owns_writer: bool = False,
    ) -> None:
        if writer is None and log_scalars is None:
            raise ValueError(
                "`writer` must be a SummaryWriter-like object unless `log_scalars` is given, got None"
            )
        if (
            isinstance(heatmap_max_steps, bool)
            or not isinstance(heatmap_max_steps, int)
            or heatmap_max_steps < 2
        ):
            raise ValueError(f"`heatmap_max_steps` must be an integer >= 2, got {heatmap_max_steps!r}")
        self.writer = writer
        self.log_scalars = log_scalars
        self.heatmaps = heatmaps
        self.heatmap_max_steps = heatmap_max_steps
        self.owns_writer = owns_writer
        self._layout_written = False
        self._history = HeatmapHistory(heatmap_max_steps)
        self._extra_history: dict[str, HeatmapHistory] = {}

    def write_trace(self, step: int, trace: DepthTrace) -> dict[str, float]:
        """Write one depth trace: scalars, the layout (first call only) and the heatmaps.

        Returns:
            The scalars written (:func:`trace_scalars`).
        """
        scalars = trace_scalars(trace)
        self.write_scalars(step, scalars)
        if self.writer is not None and not self._layout_written and trace.num_layers > 0:
            bands = [band for band, idx in band_positions(trace).items() if idx]
            self.writer.add_custom_scalars(custom_scalar_layout(trace.num_layers, bands))
            self._layout_written = True
        if self.heatmaps and self.writer is not None and trace.num_layers > 0:
            column = np.array([getattr(trace, m) for m in LAYER_METRICS], dtype=np.float64)
            self._history.add(column)
            matrix = self._history.matrix()
            for k, metric in enumerate(LAYER_METRICS):
                image = heatmap_image(matrix[k])
                self.writer.add_image(f"spinal/heatmap/{metric}", image, step, dataformats="HWC")
        return scalars

    def write_heatmap(self, tag: str, step: int, column: Sequence[float]) -> None:
        """Append one per-layer column to the layer × step heatmap ``tag`` and write the image.

        Used for quantities outside the depth trace (e.g. ``spinal/heatmap/patch_normalized_effect``);
        the history is bounded by ``heatmap_max_steps`` like the trace heatmaps.
        """
        if not self.heatmaps or self.writer is None or len(column) == 0:
            return
        history = self._extra_history.setdefault(tag, HeatmapHistory(self.heatmap_max_steps))
        history.add(np.asarray(column, dtype=np.float64)[None, :])
        self.writer.add_image(tag, heatmap_image(history.matrix()[0]), step, dataformats="HWC")

    def write_scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Write scalars at ``step``; non-finite values are skipped."""
        finite = {tag: float(v) for tag, v in values.items() if math.isfinite(float(v))}
        if not finite:
            return
        if self.log_scalars is not None:
            self.log_scalars(finite, step)
        elif self.writer is not None:  # one of the two is set (checked in __init__)
            for tag, value in finite.items():
                self.writer.add_scalar(tag, value, step)

    def write_text(self, tag: str, text: str, step: int) -> None:
        """Write a text summary (e.g. alerts under ``spinal/alerts``); dropped without a writer."""
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        """Flush the writer."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Flush, and close the writer if this sink owns it."""
        if self.writer is None:
            return
        self.writer.flush()
        if self.owns_writer:
            self.writer.close()
