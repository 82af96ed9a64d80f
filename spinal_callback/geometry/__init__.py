"""SPINAL geometry: metrics as functions on tensors, and the depth trace that composes them."""

from .curvature import BAND_NAMES, band_slices, hidden_curvature, transport_curvature
from .spectral import centered_spectrum, contraction_score, effective_rank
from .trace import LAYER_METRICS, DepthTrace, capture_hidden, compute_depth_trace, trace_from_hidden
from .transport import fisher_rao_distance, lens_entropy, transport_score

__all__ = [
    "BAND_NAMES",
    "LAYER_METRICS",
    "DepthTrace",
    "band_slices",
    "capture_hidden",
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
