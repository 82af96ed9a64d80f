"""The *Custom Scalars* dashboard of the TensorBoard output: which charts group which of the sink's tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spinal_callback.geometry.curvature import BAND_NAMES
from spinal_callback.geometry.trace import LAYER_METRICS
from spinal_callback.sinks.layer_runs import LAYER_TAG_PREFIX
from spinal_callback.sinks.metric_labels import METRIC_LABELS

__all__ = ["MARKER_TAGS", "METRIC_SYMBOLS", "custom_scalar_layout"]

#: Paper symbols, used in chart titles.
METRIC_SYMBOLS = {
    "contraction": "α",
    "transport": "𝓛",
    "entropy": "E",
    "effective_rank": "erank",
    "transport_curvature": "κ^𝓛",
    "hidden_curvature": "κ^h",
}


#: The marker series: ``spinal/alerts/marker`` (alerts raised at that step) and ``spinal/rollbacks/marker``.
MARKER_TAGS = ("spinal/alerts/marker", "spinal/rollbacks/marker")


def custom_scalar_layout(
    num_layers: int, band_names: Sequence[str] = BAND_NAMES, *, layer_runs: bool = False
) -> dict[str, dict[str, list[Any]]]:
    """The layout for :meth:`SummaryWriter.add_custom_scalars`.

    Category ``"spinal: per-layer"`` holds one *Multiline* chart per metric. With ``layer_runs`` its tag
    is ``spinal_by_layer/<metric>$``, written by one run per layer, so every layer is a line of its own
    colour (TensorBoard colours by run), and category ``"spinal: change since the first probe"`` charts
    ``spinal_by_layer/<metric>_change$`` the same way. Without, the tag is the regex
    ``spinal/<metric>/L\\d+$`` of the main run (TensorBoard matches it from the start of the tag): one line
    per layer, all in the run's colour. Category ``"spinal: bands"`` holds one *Margin* chart per band and
    metric: ``[mean, min, max]`` tags; ``"spinal: alerts and rollbacks"`` the two marker series.

    Args:
        num_layers: monitored layers (only validated: the regex covers any layer index).
        band_names: bands to chart.
        layer_runs: chart the per-layer runs' tags (see :mod:`~spinal_callback.sinks.layer_runs`).

    Returns:
        ``{category: {chart title: ["Multiline" | "Margin", [tags]]}}``.

    Raises:
        ValueError: ``num_layers < 1``.
    """
    if num_layers < 1:
        raise ValueError(f"`num_layers` must be a positive integer, got {num_layers!r}")
    layout: dict[str, dict[str, list[Any]]] = {}
    if layer_runs:
        layout["spinal: per-layer"] = {
            f"{metric} ({METRIC_SYMBOLS[metric]}) by layer, one run per layer": [
                "Multiline",
                [rf"{LAYER_TAG_PREFIX}/{metric}$"],
            ]
            for metric in LAYER_METRICS
        }
        layout["spinal: change since the first probe"] = {
            f"{metric} ({METRIC_SYMBOLS[metric]}) change since the first probe [{METRIC_LABELS[metric].unit}]": [
                "Multiline",
                [rf"{LAYER_TAG_PREFIX}/{metric}_change$"],
            ]
            for metric in LAYER_METRICS
        }
    else:
        layout["spinal: per-layer"] = {
            f"{metric} ({METRIC_SYMBOLS[metric]}) by layer": ["Multiline", [rf"spinal/{metric}/L\d+$"]]
            for metric in LAYER_METRICS
        }
    layout["spinal: bands"] = {
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
    layout["spinal: alerts and rollbacks"] = {
        "alerts raised (spinal/alerts/marker) and rollbacks (spinal/rollbacks/marker) per step": [
            "Multiline",
            [f"{tag}$" for tag in MARKER_TAGS],
        ],
    }
    return layout
