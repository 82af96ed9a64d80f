"""spinal-callback: watch the layer geometry of a language model while it is aligned with DPO.

``import spinal_callback`` imports neither Lightning nor transformers; the framework callbacks are
loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spinal_callback.config import DetectorConfig, RollbackConfig, SpinalArguments, SpinalConfig
from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.geometry import DepthTrace, compute_depth_trace
from spinal_callback.model.architectures import UnsupportedArchitectureError, register_architecture, resolve_layout
from spinal_callback.monitor import SpinalMonitor

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertReason",
    "DepthTrace",
    "DetectorConfig",
    "RollbackConfig",
    "SpinalArguments",
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
    from spinal_callback.integrations.lightning import SpinalLightningCallback
    from spinal_callback.integrations.transformers import SpinalTrainerCallback


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'spinal_callback' has no attribute {name!r}")
