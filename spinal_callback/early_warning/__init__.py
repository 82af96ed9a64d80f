"""Early warning: trend-aware scores of the signals a probe yields, the detector, its alerts and calibration.

Framework-neutral and pure: the detector takes ``{signal: value}`` (and optional per-layer vectors) per
probe step and returns :class:`Alert` objects; acting on them is :mod:`spinal_callback.recovery`'s job.
"""

from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.calibrate import calibrate, false_alarm_rate
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.early_warning.inputs import signals_from_bands, vectors_from_trace
from spinal_callback.early_warning.names import check_signal_names

__all__ = [
    "Alert",
    "AlertReason",
    "EarlyWarningDetector",
    "calibrate",
    "check_signal_names",
    "false_alarm_rate",
    "signals_from_bands",
    "vectors_from_trace",
]
