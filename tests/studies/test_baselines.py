"""The baseline detectors against known answers and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinal_callback.early_warning.detector import DetectorConfig, EarlyWarningDetector
from studies.baselines import (
    drop_from_best_alarms,
    lightning_spike_alarms,
    spinal_alarms,
    window_zscore_alarms,
)


def _series(values):
    return [(step, float(v)) for step, v in enumerate(values, start=1)]


def test_window_zscore_known_answer():
    # 128 values alternating 1 and 3: mean 2, population σ 1 → threshold 8.
    history = [1.0, 3.0] * 64
    assert window_zscore_alarms(_series([*history, 8.01])) == [129]
    assert window_zscore_alarms(_series([*history, 7.99])) == []


def test_window_zscore_waits_for_a_full_window():
    assert window_zscore_alarms(_series([0.0, 1.0] * 10 + [1e6])) == []
    assert window_zscore_alarms(_series([0.0, 1.0] * 10 + [1e6]), window=20) == [21]


def test_window_zscore_matches_numpy_and_keeps_spikes_in_the_window():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(600)
    x[[200, 201, 350, 500]] += [9.0, 12.0, 20.0, 7.0]
    expected = [i + 1 for i in range(128, len(x)) if x[i] > x[i - 128 : i].mean() + 6 * x[i - 128 : i].std()]
    got = window_zscore_alarms(_series(x))
    assert got == expected
    assert 201 in got and 351 in got  # 200 joins the window and lifts σ, yet 201 is still far out


def test_window_zscore_flat_window_never_flags():
    assert window_zscore_alarms(_series([2.0] * 128 + [50.0])) == []


def test_lightning_spike_detection_relative_tolerance():
    flat = [1.0] * 20
    assert lightning_spike_alarms(_series([*flat, 3.01])) == [21]  # |3.01 − 1| ≥ 2 × 1
    assert lightning_spike_alarms(_series([*flat, 2.99])) == []
    assert lightning_spike_alarms(_series([5.0, 4.0, 3.0, 1.0, 0.5])) == []  # improvements never spike


def test_lightning_spike_detection_stops_at_the_first_spike_and_flags_nan():
    assert lightning_spike_alarms(_series([1.0] * 5 + [10.0, 1.0, 20.0])) == [6]
    assert lightning_spike_alarms(_series([1.0] * 5 + [math.nan])) == [6]


def test_lightning_running_mean_is_over_the_window():
    # After 10 values of 0.1 the running mean is 0.1: 0.31 is a spike even though earlier values were 1.
    values = [1.0] * 10 + [0.1] * 10 + [0.31]
    assert lightning_spike_alarms(_series(values)) == [21]


def test_drop_from_best_known_answer():
    values = [0.5] * 10 + [0.8] * 10 + [0.5] * 10
    alarms = drop_from_best_alarms(_series(values), drop=0.2, window=10)
    # Rolling mean falls from 0.8 to 0.6 after 7 of the 0.5 values: (3·0.8 + 7·0.5)/10 = 0.59.
    assert alarms[0] == 27
    # Watching for a rise instead: the climb to 0.8 is the alarm, once 7 of its values are in the mean.
    assert drop_from_best_alarms(_series(values), drop=0.2, window=10, bad="up")[0] == 17
    with pytest.raises(ValueError, match="`bad`"):
        drop_from_best_alarms(_series(values), drop=0.2, bad="sideways")


def test_spinal_alarms_equal_the_detector_itself():
    rng = np.random.default_rng(1)
    values = list(1.0 + 0.01 * rng.standard_normal(40)) + [1.5] * 5
    observations = [(2 * i, {"band/late/entropy": v}) for i, v in enumerate(values)]
    config = DetectorConfig(signals={"band/late/entropy": "up"})
    detector = EarlyWarningDetector(config)
    direct = [a for step, obs in observations for a in detector.update(step, obs)]
    replay = spinal_alarms(observations, {"signals": {"band/late/entropy": "up"}})
    assert [(a.step, a.reason) for a in replay] == [(a.step, a.reason) for a in direct]
    assert replay and replay[0].step == 80  # the jump's first observation: 50σ, a decisive exceedance
