"""VARIANCE_BURST with a reference of the signal's own recent increments (``variance_reference``): the ratio against
a direct numpy computation, its level on white noise, quiet under a noise level that drifts slowly (where the pooled
noise scale alarms), an alarm after a burst, the state round trip and the settings' checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import AlertReason
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.early_warning.scores import fit_window, score_scalar

SIGNAL = "logps/chosen"
RUN, BURST = 150, 80


def _detector(reference: int, threshold: float) -> EarlyWarningDetector:
    return EarlyWarningDetector(DetectorConfig(
        signals={SIGNAL: "both"}, checks=("variance_burst",), variance_signals=(SIGNAL,), speed_signals=(),
        update_signals=(), turn_signals=(), variance_reference=reference, variance_threshold=threshold))


def _ratios(det: EarlyWarningDetector, series: np.ndarray) -> tuple[np.ndarray, list]:
    ratios, alerts = [], []
    for i, x in enumerate(series):
        alerts += det.update(2 * i, {SIGNAL: float(x)})
        scores = det.last_scores.get(SIGNAL)
        if scores is not None:
            ratios.append(scores["variance_ratio"])
    return np.array(ratios), alerts


def _numpy_ratio(values: np.ndarray, x: float, slope: float, m: int, r: int) -> float:
    """V written out again: trimmed mean squares of the last m and of the r before them, the same share left out."""
    points = np.append(values, x)
    increments = np.diff(points) - slope
    recent, before = increments[-m:], increments[:-m][-r:]
    trimmed = np.sort(recent ** 2)[:m - 2]
    kept = np.sort(before ** 2)[:before.size - before.size * 2 // m]
    return float(trimmed.mean() / kept.mean())


@pytest.mark.parametrize("n", [22, 30, 39, 40, 41, 60])
def test_ratio_matches_a_direct_numpy_computation(n: int) -> None:
    rng = np.random.default_rng(n)
    values = 3.0 + 0.05 * np.arange(n) + rng.standard_t(3, size=n)
    x = float(values[-1] + rng.normal())
    fit = fit_window(list(values), 20, 2)
    scores = score_scalar(list(values), x, fit, 1.0, 2, 8, reference_increments=32)
    assert scores.variance_ratio == pytest.approx(_numpy_ratio(values, x, fit.slope, 8, 32), rel=1e-12)
    assert scores.variance_scale > 0.0


def test_ratio_is_of_order_one_on_white_noise_of_any_scale() -> None:
    means = []
    for seed in range(10):
        noise = np.random.default_rng(seed).normal(size=RUN)
        for scale in (1e-3, 1.0, 1e3):
            ratios, _ = _ratios(_detector(32, 40.0), 5.0 + 0.02 * np.arange(RUN) + scale * noise)
            means.append(ratios[30:].mean())
    assert 1.1 < np.mean(means) < 1.7 and np.ptp(means[:3]) < 1e-6  # scale-free


def test_a_slowly_growing_noise_level_alarms_only_against_the_pooled_scale() -> None:
    """The noise σ grows 4-fold over the run, smoothly (healthy: a batch metric's spread as training goes on): the
    pooled-scale ratio at its shipped study-8 threshold 4.61 alarms in some of 20 runs, the recent-increment ratio
    at 33.72 in none."""
    pooled, recent = 0, 0
    for seed in range(20):
        rng = np.random.default_rng(500 + seed)
        series = -1.0 + 0.003 * np.arange(RUN) + 0.3 * rng.normal(size=RUN) * 4.0 ** (np.arange(RUN) / RUN)
        pooled += bool(_ratios(_detector(0, 4.61), series)[1])
        recent += bool(_ratios(_detector(32, 33.72), series)[1])
    assert pooled >= 2 and recent == 0


def test_a_burst_alarms_within_10_probes() -> None:
    """Heavy-tailed noise (Student t, 3 degrees of freedom) whose σ grows 8-fold at probe 80: a VARIANCE_BURST
    within 10 probes in at least 14 of 20 runs, none before (V ≈ 64 × its level after the burst)."""
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        noise = rng.standard_t(3, size=RUN)
        noise[BURST:] *= 8.0
        _, alerts = _ratios(_detector(32, 33.72), -1.0 + 0.01 * np.arange(RUN) + 0.3 * noise)
        assert all(a.step >= 2 * BURST for a in alerts)
        hits += bool(alerts) and alerts[0].reason is AlertReason.VARIANCE_BURST and alerts[0].step <= 2 * (BURST + 10)
    assert hits >= 14


def test_state_keeps_the_reference_and_round_trips_mid_stream() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(size=RUN)
    noise[BURST:] *= 10.0
    series = 1.0 + 0.3 * noise
    expected = _ratios(_detector(32, 33.72), series)
    assert _detector(32, 33.72).config.history_length == 40
    for cut in (30, 45, 85):
        first = _detector(32, 33.72)
        head = _ratios(first, series[:cut])
        second = _detector(32, 33.72)
        second.load_state_dict(json.loads(json.dumps(first.state_dict())))
        assert len(second.state_dict()["signals"][SIGNAL]["history"]) == min(cut, 40)
        ratios, alerts = [], []
        for i in range(cut, RUN):
            alerts += second.update(2 * i, {SIGNAL: float(series[i])})
            ratios.append(second.last_scores[SIGNAL]["variance_ratio"])
        assert np.array_equal(np.append(head[0], ratios), expected[0])
        assert [a.to_dict() for a in head[1] + alerts] == [a.to_dict() for a in expected[1]]


def test_settings_are_checked() -> None:
    assert DetectorConfig(variance_reference=0, turn_lag=0).history_length == 22  # window 20 + lag 2
    assert DetectorConfig(variance_reference=0).history_length == 28  # window 20 + turn lag 8
    assert DetectorConfig(variance_reference=32).history_length == 40  # variance window 8 + 32
    with pytest.raises(ValueError, match="`variance_reference` must be 0"):
        DetectorConfig(variance_reference=2)
    with pytest.raises(ValueError, match="variance_reference"):
        DetectorConfig(variance_reference=-1)
    with pytest.raises(ValueError, match="window \\+ lag − variance_window >= 4"):
        DetectorConfig(variance_reference=32, window=8, lag=2, variance_window=8)
    assert DetectorConfig(variance_reference=32, window=8, lag=2, variance_window=8 - 2).history_length == 38
