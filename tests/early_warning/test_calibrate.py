"""Calibration: thresholds set on healthy runs hold their false-alarm target on fresh runs; JSON round trip."""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from spinal_callback import SpinalConfig
from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.calibrate import _effective, calibrate, false_alarm_rate, healthy_scores
from spinal_callback.early_warning.detector import EarlyWarningDetector
from tests.early_warning.helpers import config
from tests.early_warning.synthetic import healthy_stream, linear_with_noise

SIGNALS = ["band/late/transport", "logps/chosen"]
BASE = config(signals=SIGNALS, vectors=())


def _streams(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    return [healthy_stream(rng, SIGNALS) for _ in range(count)]


def test_calibrated_thresholds_hold_the_target_rate_on_fresh_runs() -> None:
    """Calibrate on 30 healthy runs (2 signals, random family / size / sign) for 3 false alarms per 1000 probe
    steps — a rate those ~2000 scored steps resolve, so the data alone set the thresholds — then replay 120
    runs drawn with other seeds: at most 3 per 1000. The thresholds stay useful: an 8σ step is caught at
    once."""
    calibrated = calibrate(_streams(1, 30), BASE, target_rate=3.0)
    for name in ("z_threshold", "cusum_h", "variance_threshold"):
        assert getattr(calibrated, name) != getattr(BASE, name)
    assert calibrated.t2_threshold == BASE.t2_threshold  # no vectors in the streams: left as it was
    assert false_alarm_rate(_streams(2, 120), calibrated) <= 3.0
    series = linear_with_noise(np.random.default_rng(3), 100, slope=0.5)
    series[60:] += 8.0
    det = EarlyWarningDetector(calibrated)
    alerts = [a for i, v in enumerate(series) for a in det.update(i, {SIGNALS[0]: float(v)})]
    assert [a.step for a in alerts] == [61]


def test_with_a_decisive_factor_single_exceedances_count_and_the_target_still_holds() -> None:
    """With ``decisive_factor`` f a single observation f times the threshold alarms: calibration counts each step's
    own |statistic|/f as well, so the thresholds it sets hold the target on fresh runs (replayed with f)."""
    decisive = config(signals=SIGNALS, vectors=(), decisive_factor=1.5)
    streams = _streams(1, 30)
    pairs, single = healthy_scores(streams, BASE), healthy_scores(streams, decisive)
    for test in ("trend_break", "slope_change", "variance_burst"):  # never below the two-in-a-row statistic
        for run_a, run_b in zip(pairs[test], single[test], strict=True):  # (and a step's first exceedance counts)
            top_a, top_b = sorted(run_a, reverse=True), sorted(run_b, reverse=True)
            assert len(top_b) >= len(top_a) and all(b >= a for a, b in zip(top_a, top_b))
    assert sum(map(sum, single["trend_break"])) > sum(map(sum, pairs["trend_break"]))  # single ones do count
    calibrated = calibrate(streams, decisive, target_rate=3.0)
    assert calibrated.decisive_factor == 1.5
    assert false_alarm_rate(_streams(2, 120), calibrated) <= 3.0


def test_few_runs_can_raise_thresholds_but_not_lower_them() -> None:
    """3 runs cannot resolve 0.5 per 1000: each threshold is at least margin × the largest healthy statistic
    and at least the configured one, and fresh runs stay under target. Without the floor the data and the
    tail fit alone decide."""
    streams = _streams(4, 3)
    scores = healthy_scores(streams, BASE)
    calibrated = calibrate(streams, BASE, margin=1.2)
    for test, name in (("trend_break", "z_threshold"), ("slope_change", "cusum_h"),
                       ("variance_burst", "variance_threshold")):
        assert getattr(calibrated, name) >= max(getattr(BASE, name), 1.2 * max(max(s) for s in scores[test]))
    assert false_alarm_rate(_streams(5, 60), calibrated) <= 0.5
    noisy = DetectorConfig(signals=SIGNALS, vectors=(), z_threshold=1.0)  # a floor far too low
    assert calibrate(streams, noisy).z_threshold > 1.2 * max(max(s) for s in scores["trend_break"])
    loose = calibrate(streams, BASE, keep_floor=False)
    assert loose.z_threshold >= 1.1 * max(max(s) for s in scores["trend_break"])


def test_effective_statistic_needs_a_same_sign_run() -> None:
    run: deque[float] = deque(maxlen=2)
    run.append(5.0)
    assert _effective(run, signed=True) == -np.inf  # not min_consecutive values yet
    run.append(-6.0)
    assert _effective(run, signed=True) == 0.0
    run.append(-4.0)
    assert _effective(run, signed=True) == 4.0 and _effective(run, signed=False) == -6.0


def test_calibrate_refuses_bad_arguments_and_short_streams() -> None:
    short = [[(t, {SIGNALS[0]: 1.0 + 0.01 * t}) for t in range(10)]]
    with pytest.raises(ValueError, match="long enough"):
        calibrate(short, BASE)
    with pytest.raises(ValueError, match="`target_rate`"):
        calibrate(_streams(6, 1), BASE, target_rate=0)
    with pytest.raises(ValueError, match="`margin`"):
        calibrate(_streams(6, 1), BASE, margin=0.5)
    with pytest.raises(ValueError, match="observation must be"):
        calibrate([[(0,)]], BASE)


def test_json_round_trip_and_spinal_config(tmp_path: Path) -> None:
    path = tmp_path / "detector.json"
    cfg = DetectorConfig(signals={"band/late/*": "both", "logps/chosen": "down"}, z_threshold=5.5)
    cfg.to_json(path)
    assert json.loads(path.read_text())["z_threshold"] == 5.5
    loaded = DetectorConfig.from_json(path)
    assert loaded == cfg
    assert SpinalConfig(detector=DetectorConfig.from_json(path)).detector == cfg
    path.write_text(json.dumps({**cfg.to_dict(), "baseline_window": 100}))
    with pytest.raises(ValueError, match=r"unknown DetectorConfig field.*baseline_window"):
        DetectorConfig.from_json(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        DetectorConfig.from_json(path)
