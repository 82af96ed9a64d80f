"""spinal-callback: watch the layer geometry of a language model while it is aligned with DPO.

``import spinal_callback`` imports neither Lightning nor transformers; the framework callbacks are
loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .alerts import Alert, AlertReason
from .architectures import UnsupportedArchitectureError, register_architecture, resolve_layout
from .config import SpinalConfig
from .detector_config import DetectorConfig
from .geometry import DepthTrace, compute_depth_trace
from .monitor import SpinalMonitor
from .rollback import RollbackConfig

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertReason",
    "DepthTrace",
    "DetectorConfig",
    "RollbackConfig",
    "SpinalConfig",
    "SpinalLightningCallback",
    "SpinalMonitor",
    "SpinalTrainerCallback",
    "UnsupportedArchitectureError",
    "__version__",
    "compute_depth_trace",
    "register_architecture",
    "resolve_layout",
]

_LAZY = {
    "SpinalLightningCallback": ("spinal_callback.integrations.lightning", "SpinalLightningCallback"),
    "SpinalTrainerCallback": ("spinal_callback.integrations.transformers", "SpinalTrainerCallback"),
}

if TYPE_CHECKING:
    from .integrations.lightning import SpinalLightningCallback
    from .integrations.transformers import SpinalTrainerCallback


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'spinal_callback' has no attribute {name!r}")
