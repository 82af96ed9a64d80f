"""SPINAL geometry: metrics as functions on tensors, and the depth trace that composes them."""

from spinal_callback.geometry.bands import band_statistics
from spinal_callback.geometry.curvature import BAND_NAMES, band_slices, hidden_curvature, transport_curvature
from spinal_callback.geometry.selection import LayerPlan, band_layers
from spinal_callback.geometry.spectral import centered_spectrum, contraction_score, effective_rank
from spinal_callback.geometry.trace import (
    LAYER_METRICS,
    DepthTrace,
    capture_hidden,
    capture_layers,
    compute_depth_trace,
    trace_from_hidden,
)
from spinal_callback.geometry.transport import fisher_rao_distance, lens_entropy, transport_score

__all__ = [
    "BAND_NAMES",
    "LAYER_METRICS",
    "DepthTrace",
    "LayerPlan",
    "band_layers",
    "band_slices",
    "band_statistics",
    "capture_hidden",
    "capture_layers",
    "centered_spectrum",
    "compute_depth_trace",
    "contraction_score",
    "effective_rank",
    "fisher_rao_distance",
    "hidden_curvature",
    "lens_entropy",
    "trace_from_hidden",
    "transport_curvature",
    "transport_score",
]
