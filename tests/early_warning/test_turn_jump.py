"""TURN_JUMP: how far the optimizer's updates turn (``update/turn``), against its own lagged median, with its own
threshold and signals.

Synthetic turns: a healthy run stays near a level (0.2-0.5, drifting slowly with the schedule) with ±20 % spread;
a sign error makes the updates turn away from their course, ``update/turn`` rising to about 1 within a few probes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import AlertReason, EarlyWarningDetector, calibrate, check_signal_names
from spinal_callback.early_warning.calibrate import false_alarm_rate

TURN, SIZE = "update/turn", "update/size"
THRESHOLD = 0.8  # pinned: a recalibration of the shipped default must not move these tests


def _detector(**fields: object) -> EarlyWarningDetector:
    cfg = DetectorConfig(**{"checks": ("turn_jump", "update_jump"), "turn_threshold": THRESHOLD,
                            "update_threshold": 5.0, **fields})  # type: ignore[arg-type]
    return EarlyWarningDetector(cfg)


def _turns(rng: np.random.Generator, n: int, level: float, drift: float = 0.0) -> np.ndarray:
    return (level + drift * np.linspace(0.0, 1.0, n)) * rng.uniform(0.8, 1.2, size=n)


def _feed(det: EarlyWarningDetector, turns: np.ndarray, sizes: np.ndarray | None = None) -> list:
    out = []
    for i, turn in enumerate(turns):
        signals = {TURN: float(turn)}
        if sizes is not None:
            signals[SIZE] = float(sizes[i])
        out += det.update(2 * i, signals)
    return out


@pytest.mark.parametrize(("level", "drift"), [(0.2, 0.0), (0.5, 0.0), (0.25, 0.3), (0.6, -0.3)])
def test_healthy_turns_drifting_either_way_raise_no_alarm(level: float, drift: float) -> None:
    rngs = [np.random.default_rng(seed) for seed in range(20)]
    alerts = [a for rng in rngs for a in _feed(_detector(), _turns(rng, 120, level, drift))]
    assert alerts == []


def test_a_turn_away_from_the_course_alarms_as_turn_jump_within_two_probes() -> None:
    hits = 0
    for seed in range(20):
        turns = _turns(np.random.default_rng(100 + seed), 120, 0.25)
        turns[80:] = np.minimum(1.0, 0.6 + 0.2 * np.arange(40))  # the updates turn away: 0.6, 0.8, then orthogonal
        alerts = _feed(_detector(), turns)
        assert [a for a in alerts if a.step < 160] == []  # nothing before
        assert all(a.reason is AlertReason.TURN_JUMP and a.signal == TURN for a in alerts)
        hits += bool(alerts) and alerts[0].step <= 162
    assert hits == 20
    message = alerts[0].message
    assert "turned" in message and "sign error" in message and "threshold 0.8" in message


def test_the_turn_has_its_own_threshold_and_signals() -> None:
    """The step size and the turn are judged by different tests with different thresholds: a turn of e^0.9 x its
    median alarms at turn_threshold 0.8 whatever update_threshold is, and a size jump of the same ratio does not
    alarm at update_threshold 5."""
    rng = np.random.default_rng(7)
    turns = _turns(rng, 100, 0.3)
    sizes = 1e-5 * rng.uniform(0.9, 1.1, size=100)
    turns[70:] *= math.exp(1.2)
    sizes[70:] *= math.exp(1.2)
    alerts = _feed(_detector(), turns, sizes)
    assert [(a.reason, a.signal) for a in alerts] == [(AlertReason.TURN_JUMP, TURN)]
    assert _feed(_detector(turn_signals=()), turns, sizes) == []  # no turn test: the size test alone, quiet
    assert _feed(_detector(checks=("update_jump",)), turns, sizes) == []


def test_calibration_sets_the_turn_threshold_for_its_target_rate() -> None:
    def runs(first: int) -> list:
        return [[(2 * i, {TURN: float(v)}) for i, v in enumerate(
            _turns(np.random.default_rng(first + s), 120, 0.2 + 0.02 * (s % 10)))] for s in range(40)]

    base = DetectorConfig(checks=("turn_jump",))
    cfg = calibrate(runs(0), base, target_rate=5.0, keep_floor=False)
    assert cfg.turn_threshold != base.turn_threshold and cfg.update_threshold == base.update_threshold
    assert false_alarm_rate(runs(1000), cfg) <= 3 * 5.0  # the target, with room for 40 fresh runs' sampling


def test_bad_turn_settings_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="turn_threshold"):
        DetectorConfig(turn_threshold=0.0)
    with pytest.raises(ValueError, match="turn_signals"):
        DetectorConfig(turn_signals="update/turn")  # a string, not a list
    with pytest.raises(ValueError, match="both in `update_signals` and in `turn_signals`"):
        DetectorConfig(update_signals=("update/size", "update/turn"))
    with pytest.raises(ValueError, match="unknown turn signal 'update/trun'"):
        check_signal_names(DetectorConfig(turn_signals=("update/trun",)),
                           [SIZE, TURN, "pairs/logp_chosen", "pairs/logp_rejected", *DetectorConfig().signals])


def test_state_round_trip_mid_stream_keeps_the_turn_test() -> None:
    turns = _turns(np.random.default_rng(3), 120, 0.3)
    turns[90:] = 1.0
    whole = _feed(_detector(), turns)
    first = _detector()
    _feed(first, turns[:60])
    second = _detector()
    second.load_state_dict(first.state_dict())
    rest = [a for i, v in enumerate(turns[60:], start=60) for a in second.update(2 * i, {TURN: float(v)})]
    assert [(a.step, a.reason) for a in rest] == [(a.step, a.reason) for a in whole] != []


def test_a_reversal_that_builds_over_readings_is_measured_against_the_course_before_it() -> None:
    # a turn rising linearly 0.3 -> 0.9 over 12 readings from reading 60 (a sign error under momentum), ±3 % noise
    rng = np.random.default_rng(5)
    ramp = np.clip((np.arange(100) - 60) / 12, 0.0, 1.0)
    turns = (0.3 + 0.6 * ramp) * np.exp(rng.normal(0.0, 0.03, 100))
    cfg = {"turn_threshold": 0.95}
    assert _feed(_detector(turn_lag=0, **cfg), turns) == []  # the window 2 back rises with it
    whole = _feed(_detector(**cfg), turns)
    assert whole and whole[0].reason is AlertReason.TURN_JUMP and 2 * 60 < whole[0].step <= 2 * 72
    lagged = 2 * (whole[0].step // 2 - 8 - 20), 2 * (whole[0].step // 2 - 8 - 1)  # the window 8 readings back
    assert f"steps {lagged[0]}–{lagged[1]}" in whole[0].message
    first = _detector(**cfg)
    _feed(first, turns[:64])  # cut inside the rise
    second = _detector(**cfg)
    second.load_state_dict(first.state_dict())
    rest = [a for i, v in enumerate(turns[64:], start=64) for a in second.update(2 * i, {TURN: float(v)})]
    assert [(a.step, a.reason) for a in rest] == [(a.step, a.reason) for a in whole]
