"""``Alert`` and ``AlertReason``: what the early-warning detector reports, in plain, serialisable form.

An :class:`Alert` is raised once per *episode* of one watched signal (see
:class:`~spinal_callback.early_warning.detector.EarlyWarningDetector`). It carries the numbers behind the decision and
a message a person can act on. ``Alert.to_dict()`` is JSON-ready (enum by value, non-finite floats as
``None``, the same convention as the trace file) and ``Alert.from_dict`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["Alert", "AlertReason"]


class AlertReason(str, Enum):
    """Why an alert was raised; the values are stable names used in trace files and state dicts."""

    #: The residual of an observation against its lagged robust trend forecast, in noise units
    #: ``z = (x − x̂)/σ̂_pred``, reached ``z_threshold`` (same sign) for ``min_consecutive`` observations in a
    #: row: the signal jumped off its trend, or bent more sharply than a healthy trend does.
    TREND_BREAK = "trend_break"
    #: The two-sided CUSUM of those residuals reached ``cusum_h``: the signal's increments changed (its slope
    #: grew, shrank or reversed) and it has kept running away from its trend forecast.
    SLOPE_CHANGE = "slope_change"
    #: The mean square of the recent detrended increments reached ``variance_threshold`` times the noise's:
    #: the signal has started to fluctuate.
    VARIANCE_BURST = "variance_burst"
    #: The Hotelling T² of a per-layer residual vector (Wilson–Hilferty score) reached ``t2_threshold``: the
    #: layers stopped moving together — the cross-layer pattern changed, whatever the band mean did.
    PATTERN_CHANGE = "pattern_change"
    #: One observation's change |x_n − x_{n−1}| reached ``exp(speed_threshold)`` times the median change over
    #: the lagged trend window (``speed_consecutive`` observations in a row): an update moved the model much
    #: further than the updates before it — a learning-rate jump, a corrupted update, a blow-up starting.
    SPEED_JUMP = "speed_jump"
    #: An update-size signal (``update/size``) reached ``exp(update_threshold)`` times the larger of its median
    #: over the lagged trend window and that window's trend forecast: the optimizer moved the weights that many
    #: times further per step than expected — a learning-rate jump, a corrupted update, an optimizer setting
    #: gone wrong.
    UPDATE_JUMP = "update_jump"
    #: A turn signal (``update/turn``: 1 − the cosine between the latest update and the weights' recent course)
    #: reached ``exp(turn_threshold)`` times the larger of its lagged median and trend forecast: the updates
    #: changed direction — the optimizer climbing the loss (a sign error), a changed objective.
    TURN_JUMP = "turn_jump"
    #: The signal turned NaN or ±inf after having been finite (the probe or the model produced non-finite
    #: numbers, e.g. after a loss blow-up or a rank collapse).
    NON_FINITE = "non_finite"
    #: Raised by the earlier, history-based detector (robust z against an early baseline); no longer raised,
    #: kept so that older trace files and alert records still load.
    SPIKE = "spike"
    #: Earlier detector's one-sided CUSUM against an early baseline; no longer raised (see SPIKE).
    DRIFT = "drift"
    #: Earlier detector's step-to-step noise ratio; no longer raised (see SPIKE).
    RISING_VARIANCE = "rising_variance"


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _read_float(value: object) -> float:
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Alert:
    """One early-warning alert: one episode of one signal.

    Attributes:
        step: Optimizer step of the observation that opened the episode.
        reason: Which test fired (:class:`AlertReason`).
        signal: Name of the watched signal, e.g. ``"band/late/transport_curvature"`` (TensorBoard tag
            ``spinal/band/late/transport_curvature``) or a DPO metric such as ``"logps/chosen"``.
        value: The observation at ``step`` (NaN / ±inf for :attr:`AlertReason.NON_FINITE`; the mean over the
            layers for PATTERN_CHANGE).
        baseline: What the signal was expected to be at ``step``: the lagged trend's forecast x̂ (for
            PATTERN_CHANGE the mean of the per-layer forecasts; for UPDATE_JUMP the larger of the lagged window's
            median and its forecast; for NON_FINITE the last finite value).
        score: The statistic that fired: the residual z (TREND_BREAK), the CUSUM in noise units
            (SLOPE_CHANGE), the variance ratio (VARIANCE_BURST), the T² normal score (PATTERN_CHANGE), the
            log ratio (SPEED_JUMP, UPDATE_JUMP, TURN_JUMP), ``inf`` (NON_FINITE).
        threshold: The threshold ``score`` was compared with (NaN for NON_FINITE).
        layers: Decoder layers the signal summarises (e.g. the late band; for PATTERN_CHANGE the layers of
            the vector), ``()`` when unknown or not a layer signal.
        onset_step: Estimated step where the change began (see the detector for the estimator); at most
            ``step``.
        last_good_step: Step of this signal's last observation before ``onset_step`` — the newest moment
            known to be good — or ``None`` when there is none (the change began at the first
            observation). A snapshot taken at or before it predates the change.
        message: Human-readable explanation: what moved, since when, by how much (score against threshold,
            value against forecast) and what to look at. It names no ``on_alert`` action: the detector does
            not know them (the guard may append its own).
    """

    step: int
    reason: AlertReason
    signal: str
    value: float
    baseline: float
    score: float
    threshold: float
    layers: tuple[int, ...]
    onset_step: int
    last_good_step: int | None
    message: str

    @property
    def restore_before(self) -> int:
        """Snapshots taken strictly before this step are known-good: ``last_good_step + 1``, else
        ``onset_step``. Pass it to :meth:`RollbackManager.rollback
        <spinal_callback.recovery.rollback.RollbackManager.rollback>` as ``onset_step``."""
        return self.last_good_step + 1 if self.last_good_step is not None else self.onset_step

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view: the reason by value, layers as a list, non-finite floats as ``None``."""
        return {
            "step": int(self.step),
            "reason": self.reason.value,
            "signal": self.signal,
            "value": _json_float(self.value),
            "baseline": _json_float(self.baseline),
            "score": _json_float(self.score),
            "threshold": _json_float(self.threshold),
            "layers": [int(layer) for layer in self.layers],
            "onset_step": int(self.onset_step),
            "last_good_step": None if self.last_good_step is None else int(self.last_good_step),
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict` (``None`` floats come back as NaN; missing optional keys default)."""
        last_good = data.get("last_good_step")
        return cls(
            step=int(data["step"]),
            reason=AlertReason(data["reason"]),
            signal=str(data["signal"]),
            value=_read_float(data.get("value")),
            baseline=_read_float(data.get("baseline")),
            score=_read_float(data.get("score")),
            threshold=_read_float(data.get("threshold")),
            layers=tuple(int(layer) for layer in data.get("layers", ())),
            onset_step=int(data.get("onset_step", data["step"])),
            last_good_step=None if last_good is None else int(last_good),
            message=str(data.get("message", "")),
        )


def chart_hint(signal: str) -> str:
    """Where to look in TensorBoard for ``signal``."""
    parts = signal.split("/")
    if len(parts) >= 3 and parts[0] == "band":
        return f"the spinal/band/{parts[1]}/* charts"
    if len(parts) >= 3 and parts[0] == "layers":
        return f"the spinal/{parts[-1]}/L<ℓ> charts"
    return f"the {signal} chart"


def describe_layers(layers: tuple[int, ...]) -> str:
    """``" (layers 21–30)"``, ``" (layer 4)"`` or ``""``."""
    if not layers:
        return ""
    if len(layers) == 1:
        return f" (layer {layers[0]})"
    if list(layers) == list(range(layers[0], layers[-1] + 1)):
        return f" (layers {layers[0]}–{layers[-1]})"
    return f" (layers {', '.join(str(layer) for layer in layers)})"
