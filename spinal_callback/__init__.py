"""spinal-callback: watch the layer geometry of a language model while it is aligned with DPO.

``import spinal_callback`` imports neither Lightning nor transformers; the framework callbacks are
loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .architectures import UnsupportedArchitectureError, register_architecture, resolve_layout
from .geometry import DepthTrace, compute_depth_trace

__version__ = "0.1.0"

__all__ = [
    "DepthTrace",
    "UnsupportedArchitectureError",
    "__version__",
    "compute_depth_trace",
    "register_architecture",
    "resolve_layout",
]
