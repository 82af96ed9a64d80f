"""Alerts: messages that say what moved, since when, how big and what to look at; dict round trip; inputs."""

from __future__ import annotations

import json
import math

import numpy as np

from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.inputs import signals_from_bands
from tests.early_warning.helpers import LATE, SIGNAL, detector, feed
from tests.early_warning.synthetic import linear_with_noise


def _alert(change: np.ndarray, **overrides: object) -> Alert:
    series = linear_with_noise(np.random.default_rng(1), 100, slope=0.5) + change
    (alert, *_) = feed(detector(**overrides), series)
    return alert


def test_trend_break_message_says_what_since_when_how_big_and_what_to_try() -> None:
    alert = _alert(np.r_[np.zeros(60), np.full(40, 10.0)])
    assert alert.reason is AlertReason.TREND_BREAK and alert.onset_step == 600
    message = alert.message
    assert message.startswith(f"TREND_BREAK in {SIGNAL} (layers 7–9) at step 610: ")
    assert "since about step 600" in message
    assert f"z = {alert.score:+.1f}" in message and f"threshold {alert.threshold:g}" in message
    assert f"against {alert.baseline:.4g} forecast by its trend over steps 390–580" in message
    assert "learning rate" in message and "training data" in message
    assert "on_alert" not in message and "rollback" not in message


def test_slope_change_and_variance_burst_messages() -> None:
    slope = _alert(np.r_[np.zeros(60), np.arange(1, 41.0)], checks=("slope_change",))
    assert slope.reason is AlertReason.SLOPE_CHANGE
    assert "its increments changed" in slope.message and "running above its trend" in slope.message
    assert "β (DPO beta)" in slope.message and "rollback" not in slope.message
    noise = np.r_[np.zeros(60), 6.0 * np.random.default_rng(2).normal(size=40)]
    burst = _alert(noise, checks=("variance_burst",))
    assert burst.reason is AlertReason.VARIANCE_BURST and "× the measured noise" in burst.message
    assert 600 <= burst.onset_step <= burst.step and burst.restore_before <= burst.onset_step


def test_alert_dict_round_trip_and_old_records() -> None:
    alert = _alert(np.r_[np.zeros(60), np.full(40, 10.0)])
    data = json.loads(json.dumps(alert.to_dict(), allow_nan=False))
    assert data["reason"] == "trend_break" and data["layers"] == list(LATE)
    assert Alert.from_dict(data) == alert
    old = {"step": 5, "reason": "spike", "signal": SIGNAL, "value": None, "baseline": 1.0, "score": 7.0}
    assert Alert.from_dict(old).reason is AlertReason.SPIKE and math.isnan(Alert.from_dict(old).value)


def test_signals_from_bands() -> None:
    bands = {"late": {"layers": [7, 9], "transport_curvature": 0.25, "contraction": None},
             "early": {"layers": [1, 3], "transport_curvature": 0.1}}
    signals, layers = signals_from_bands(bands)
    assert signals["band/late/transport_curvature"] == 0.25 and math.isnan(signals["band/late/contraction"])
    assert layers["band/late/transport_curvature"] == LATE and layers["band/early/transport_curvature"] == (1, 2, 3)
