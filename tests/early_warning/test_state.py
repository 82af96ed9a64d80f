"""Detector state: a JSON round trip mid-stream resumes bit for bit; reset after a rollback; old states."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import AlertReason
from spinal_callback.early_warning.detector import EarlyWarningDetector
from tests.early_warning.helpers import SIGNAL, config
from tests.early_warning.synthetic import healthy_vectors, linear_with_noise

VECTOR = "layers/late/transport"
OTHER = "logps/chosen"


def _config() -> DetectorConfig:
    return config(signals={SIGNAL: "both", OTHER: "down"}, vectors=(VECTOR,))


def _stream() -> list[tuple[int, dict[str, float], dict[str, list[float]]]]:
    """Two scalar signals and one vector over 150 probes with a step, a slope change, a NaN, a variance burst
    and a cross-layer pattern change."""
    rng = np.random.default_rng(11)
    a = linear_with_noise(rng, 150, slope=0.4)
    a[50:] += 9.0
    a[100:] += 1.5 * np.arange(50)
    a[80] = math.nan
    b = -100.0 + linear_with_noise(rng, 150, slope=-0.3, level=0.0)
    b[60:] += 4.0 * rng.normal(size=90)
    v, sigma = healthy_vectors(rng, 150, layers=6)
    v[90:] += 8 * sigma * np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    return [(5 * t, {SIGNAL: float(a[t]), OTHER: float(b[t])}, {VECTOR: v[t].tolist()}) for t in range(150)]


def _run(det: EarlyWarningDetector, stream: list, start: int = 0) -> tuple[list[dict], list[dict]]:
    alerts, scores = [], []
    for step, signals, vectors in stream[start:]:
        alerts += [a.to_dict() for a in det.update(step, signals, vectors=vectors)]
        scores.append(json.loads(json.dumps(det.last_scores)))
    return alerts, scores


def test_state_round_trip_mid_stream_gives_identical_alerts_scores_and_state() -> None:
    stream = _stream()
    reference = EarlyWarningDetector(_config())
    expected_alerts, expected_scores = _run(reference, stream)
    reasons = {a["reason"] for a in expected_alerts}
    assert {"trend_break", "non_finite", "pattern_change"} <= reasons and len(expected_alerts) >= 4

    # cut before scoring starts, in the warm-up, inside episodes, right after the NaN, mid-slope-change
    for cut in (10, 23, 40, 51, 52, 81, 95, 108):
        first = EarlyWarningDetector(_config())
        head, _ = _run(first, stream[:cut])
        saved = json.loads(json.dumps(first.state_dict(), allow_nan=False))  # plain types only
        second = EarlyWarningDetector(_config())
        second.load_state_dict(saved)
        assert second.state_dict() == first.state_dict()
        tail, scores = _run(second, stream, start=cut)
        assert head + tail == expected_alerts, cut
        assert scores == expected_scores[cut:], cut
        assert second.state_dict() == reference.state_dict()


def test_load_state_dict_is_tolerant() -> None:
    det = EarlyWarningDetector(_config())
    det.load_state_dict({})
    assert det.state_dict() == {"version": 2, "signals": {}, "vectors": {}}
    old = {"version": 1, "signals": {SIGNAL: {"baseline": [[0, 1.0]], "episode": "spike"}}}  # the old detector's
    det.load_state_dict(old)
    assert det.state_dict()["signals"] == {}
    det.load_state_dict({"version": 2, "signals": {SIGNAL: {"history": [[0, 1.0], [1, 1.1]]}, "gone": {}}})
    state = det.state_dict()["signals"]
    assert list(state) == [SIGNAL] and state[SIGNAL]["history"] == [[0, 1.0], [1, 1.1]]
    assert state[SIGNAL]["seen_finite"] is True
    assert det.update(2, {SIGNAL: 1.2}) == [] and det.baseline(SIGNAL) is not None


def test_reset_after_a_rollback_keeps_the_history_before_the_onset() -> None:
    series = linear_with_noise(np.random.default_rng(12), 100, slope=0.5)
    series[70:] += 10.0
    det = EarlyWarningDetector(config(signals=[SIGNAL], vectors=()))
    alerts = [a for i, v in enumerate(series[:75]) for a in det.update(10 * i, {SIGNAL: float(v)})]
    (alert,) = alerts
    assert alert.reason is AlertReason.TREND_BREAK and alert.onset_step == 700 and alert.restore_before == 691
    det.reset(keep_baseline=True, since_step=alert.onset_step)
    history = det.state_dict()["signals"][SIGNAL]["history"]
    assert history[-1][0] == 690 and not det.episode_open and det.quiet
    # training resumes from a snapshot before the onset: the old trend continues, no alert; the counter runs on
    resumed = linear_with_noise(np.random.default_rng(13), 40, slope=0.5, level=series[69] + 0.5)
    assert [a for i, v in enumerate(resumed) for a in det.update(750 + 10 * i, {SIGNAL: float(v)})] == []
    det.reset(keep_baseline=False)
    assert det.state_dict()["signals"] == {} and det.baseline(SIGNAL) is None


@pytest.mark.parametrize("keep", [True, False])
def test_reset_clears_episodes(keep: bool) -> None:
    det = EarlyWarningDetector(_config())
    _run(det, _stream()[:60])
    assert det.episode_open
    det.reset(keep_baseline=keep)
    assert not det.episode_open and det.quiet and det.last_scores == {}
