"""Shared helpers of the early-warning tests: a one-signal detector and a feeder."""

from __future__ import annotations

from collections.abc import Iterable

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.signals import CHECKS
from spinal_callback.early_warning.alerts import Alert
from spinal_callback.early_warning.detector import EarlyWarningDetector

SIGNAL = "band/late/transport"
LATE = (7, 8, 9)

#: The thresholds of the synthetic calibration (the shipped placeholders; see docs/early_warning.md). The
#: tests pin them so that a recalibration of the shipped defaults from real traces does not move them.
SYNTHETIC = {"z_threshold": 4.3, "cusum_h": 6.2, "variance_threshold": 5.4, "t2_threshold": 4.3,
             "variance_signals": ("*",),  # every test on the one synthetic signal
             "variance_reference": 0}  # the variance ratio it was calibrated for: against the pooled noise scale


def config(**fields: object) -> DetectorConfig:
    """``DetectorConfig`` with the synthetic-calibration thresholds and every test (``CHECKS``: the shipped default
    leaves SLOPE_CHANGE out), then ``fields``."""
    return DetectorConfig(**{**SYNTHETIC, "checks": CHECKS, **fields})  # type: ignore[arg-type]


def detector(direction: str = "both", **overrides: object) -> EarlyWarningDetector:
    """The shipped settings with the synthetic thresholds, watching :data:`SIGNAL` only (no vectors)."""
    return EarlyWarningDetector(config(signals={SIGNAL: direction}, vectors=(), **overrides))


def feed(det: EarlyWarningDetector, series: Iterable[float], start: int = 0, every: int = 10,
         signal: str = SIGNAL) -> list[Alert]:
    """Feed ``series`` at steps ``start, start + every, …`` (probe index ``i`` ↔ step ``start + every·i``)."""
    alerts: list[Alert] = []
    for i, value in enumerate(series):
        alerts += det.update(start + every * i, {signal: float(value)}, {signal: LATE})
    return alerts
