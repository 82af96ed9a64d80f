"""What each per-layer metric is called, measured in and where it is undefined — for figure labels.

Plain ASCII on purpose: the TensorBoard heatmaps are drawn with Pillow's built-in font, which has no
Greek letters. ``spinal report`` uses the same units and notes next to its mathtext symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRIC_LABELS", "MetricLabel", "metric_label_of"]


@dataclass(frozen=True)
class MetricLabel:
    """How a figure names one metric.

    Attributes:
        name: the metric's name (a :data:`~spinal_callback.geometry.trace.LAYER_METRICS` entry, or a tag).
        title: human name with the paper symbol spelled out, e.g. ``"contraction alpha"``.
        unit: the unit of a value and of a change, e.g. ``"nats"``.
        undefined: which layers have no value by construction, and why (``""``: defined everywhere).
    """

    name: str
    title: str
    unit: str
    undefined: str = ""

    @property
    def axis(self) -> str:
        """``"title [unit]"``, the colour-bar label."""
        return f"{self.title} [{self.unit}]"


METRIC_LABELS: dict[str, MetricLabel] = {
    label.name: label
    for label in (
        MetricLabel(
            "contraction",
            "contraction alpha",
            "spectral decay exponent",
            "fewer than 5 singular values in the tail fit",
        ),
        MetricLabel("transport", "transport L", "Fisher-Rao radians", "last layer: L(l) is the step to layer l+1"),
        MetricLabel("entropy", "lens entropy E", "nats"),
        MetricLabel("effective_rank", "effective rank", "dimensions"),
        MetricLabel(
            "transport_curvature",
            "transport curvature kappa_L",
            "Fisher-Rao radians",
            "first and last two layers: needs L(l-1), L(l), L(l+1)",
        ),
        MetricLabel(
            "hidden_curvature",
            "hidden curvature kappa_h",
            "ratio to mean |h|",
            "first and last layer: needs both neighbours",
        ),
        MetricLabel(
            "patch_normalized_effect", "patching normalized effect", "fraction of the total effect", "layer not patched"
        ),
    )
}


def metric_label_of(name: str) -> MetricLabel:
    """The label of ``name`` (a metric or the last part of a ``spinal/heatmap/...`` tag); unknown names get
    a plain one (title = name, unit ``"value"``)."""
    key = name.rsplit("/", 1)[-1]
    return METRIC_LABELS.get(key, MetricLabel(key, key.replace("_", " "), "value"))
