"""SPEED_JUMP: how far one observation moved against the typical move of the lagged window.

Synthetic probe-set log-probabilities under training: each observation moves the value by ``lr_t · u_t``
with ``u_t`` a positive factor of ±50 % spread (updates vary in size) and ``lr_t`` a learning-rate schedule
(constant, cosine to zero, linear decay, or a 10-observation warm-up then constant). Healthy schedules change
the increments' size smoothly, by any total factor; a learning-rate jump multiplies it at once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import AlertReason, EarlyWarningDetector, calibrate, check_signal_names
from spinal_callback.early_warning.scores import speed_ratio

SIGNAL = "pairs/logp_chosen"
THRESHOLD = 3.0  # pinned: a recalibration of the shipped default must not move these tests


def _detector(**fields: object) -> EarlyWarningDetector:
    cfg = DetectorConfig(**{"signals": {SIGNAL: "both"}, "checks": ("speed_jump",), "speed_signals": (SIGNAL,),
                            "speed_threshold": THRESHOLD, **fields})  # type: ignore[arg-type]
    return EarlyWarningDetector(cfg)


def _schedule(kind: str, n: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    if kind == "constant":
        return np.ones(n)
    if kind == "cosine":
        return 0.5 * (1 + np.cos(math.pi * t / n))
    if kind == "linear":
        return 1.0 - t / n
    if kind == "warmup":
        return np.minimum(1.0, (t + 1) / 10)
    raise ValueError(kind)


def _series(rng: np.random.Generator, lr: np.ndarray, level: float = -20.0, scale: float = 0.05) -> np.ndarray:
    steps = lr * scale * rng.uniform(0.5, 1.5, size=lr.size) * np.sign(rng.normal() or 1.0)
    return level + np.cumsum(steps)


def _feed(det: EarlyWarningDetector, values: np.ndarray) -> list:
    out = []
    for i, v in enumerate(values):
        out += det.update(2 * i, {SIGNAL: float(v)})
    return out


def test_speed_ratio_is_the_log_of_this_change_over_the_window_median() -> None:
    values = [0.0, 1.0, 3.0, 4.0, 6.0, 7.0, 7.5]  # window 5, lag 2: values[0:5], increments 1, 2, 1, 2
    expected = math.log((abs(20.0 - 7.5) + 1e-9) / (1.5 + 1e-9))
    assert speed_ratio(values, 20.0, 5, 2, 1e-9) == pytest.approx(expected)
    assert speed_ratio([1.0] * 7, 1.0, 5, 2, 1e-9) == pytest.approx(0.0)  # flat: no division by zero
    with pytest.raises(ValueError, match="window"):
        speed_ratio(values[:3], 1.0, 5, 2, 1e-9)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "warmup"])
def test_healthy_schedules_of_any_learning_rate_raise_no_speed_jump(kind: str) -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        lr = _schedule(kind, 120) * 10 ** rng.uniform(-1, 1)  # learning rates 100× apart
        assert _feed(_detector(), _series(rng, lr)) == [], (kind, seed)


@pytest.mark.parametrize("factor", [50.0, 100.0])  # e³ ≈ 20 is the threshold itself
def test_a_learning_rate_jump_alarms_at_the_first_observation_after_it(factor: float) -> None:
    rng = np.random.default_rng(7)
    lr = _schedule("cosine", 120)
    lr[80:] *= factor
    alerts = _feed(_detector(), _series(rng, lr))
    assert [a.reason for a in alerts] == [AlertReason.SPEED_JUMP]
    alert = alerts[0]
    assert alert.step == 160 and alert.onset_step == 160 and alert.last_good_step == 158
    assert alert.score >= THRESHOLD and alert.threshold == THRESHOLD
    assert f"{math.exp(alert.score):.0f}× as far" in alert.message and "learning rate" in alert.message


def test_slowing_down_is_not_a_speed_jump() -> None:
    rng = np.random.default_rng(3)
    lr = _schedule("constant", 120)
    lr[80:] /= 100.0  # the learning rate collapses: a schedule can do that
    assert _feed(_detector(), _series(rng, lr)) == []


def test_speed_consecutive_needs_that_many_exceedances_and_dates_the_onset_to_the_first() -> None:
    rng = np.random.default_rng(11)
    lr = _schedule("constant", 120)
    lr[80] *= 50.0  # one isolated big update (decisive exceedances off: this is about the run of them)
    assert _feed(_detector(speed_consecutive=2, decisive_factor=0.0), _series(rng, lr)) == []
    lr[80:] *= 50.0
    alerts = _feed(_detector(speed_consecutive=2, decisive_factor=0.0), _series(np.random.default_rng(11), lr))
    assert [(a.step, a.onset_step) for a in alerts] == [(162, 160)]


def test_only_speed_signals_get_the_test() -> None:
    rng = np.random.default_rng(5)
    lr = _schedule("constant", 120)
    lr[80:] *= 50.0
    values = _series(rng, lr)
    det = _detector(speed_signals=("pairs/logp_rejected",))
    assert _feed(det, values) == []
    assert "speed" not in det.last_scores.get(SIGNAL, {})


def test_calibration_sets_the_speed_threshold_for_its_target_rate() -> None:
    train = [[(2 * i, {SIGNAL: float(v)}) for i, v in enumerate(
        _series(np.random.default_rng(s), _schedule(("constant", "cosine", "linear")[s % 3], 120)))]
        for s in range(30)]
    base = DetectorConfig(signals={SIGNAL: "both"}, checks=("speed_jump",), speed_signals=(SIGNAL,))
    cfg = calibrate(train, base, target_rate=5.0, keep_floor=False)
    assert cfg.speed_threshold != base.speed_threshold
    fresh = [[(2 * i, {SIGNAL: float(v)}) for i, v in enumerate(
        _series(np.random.default_rng(100 + s), _schedule(("constant", "cosine", "linear")[s % 3], 120)))]
        for s in range(30)]
    from spinal_callback.early_warning import false_alarm_rate

    assert false_alarm_rate(fresh, cfg) <= 3 * 5.0  # the target, with room for 30 fresh runs' sampling


def test_bad_speed_settings_are_refused_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="speed_threshold"):
        DetectorConfig(speed_threshold=0.0)
    with pytest.raises(ValueError, match="speed_consecutive"):
        DetectorConfig(speed_consecutive=0)
    with pytest.raises(ValueError, match="speed_signals"):
        DetectorConfig(speed_signals="pairs/logp_chosen")  # a string, not a list
    with pytest.raises(ValueError, match="unknown speed signal 'pairs/logp_chosn'"):
        check_signal_names(DetectorConfig(speed_signals=("pairs/logp_chosn",)),
                           ["pairs/logp_chosen", "pairs/logp_rejected", *DetectorConfig().signals])


def test_state_round_trip_mid_stream_keeps_the_speed_test() -> None:
    rng = np.random.default_rng(2)
    lr = _schedule("constant", 120)
    lr[90:] *= 30.0
    values = _series(rng, lr)
    whole = _feed(_detector(), values)
    first = _detector()
    _feed(first, values[:60])
    second = _detector()
    second.load_state_dict(first.state_dict())
    rest = [a for i, v in enumerate(values[60:], start=60) for a in second.update(2 * i, {SIGNAL: float(v)})]
    assert [(a.step, a.reason) for a in rest] == [(a.step, a.reason) for a in whole] == [(180, AlertReason.SPEED_JUMP)]
