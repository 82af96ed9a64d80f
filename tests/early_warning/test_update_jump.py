"""UPDATE_JUMP: the optimizer's step size (``update/size``) against its own lagged median.

Synthetic update sizes under training: each observation is ``lr_t · c · u_t`` with ``u_t`` a positive factor
of ±30 % spread and ``lr_t`` a learning-rate schedule (constant, cosine to zero, linear decay, warm-up then
constant). Healthy schedules change the size smoothly, by any total factor; a learning-rate jump multiplies it
at once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import AlertReason, EarlyWarningDetector, calibrate, check_signal_names
from spinal_callback.early_warning.scores import size_ratio

SIGNAL = "update/size"
THRESHOLD = 1.0  # pinned: a recalibration of the shipped default must not move these tests


def _detector(**fields: object) -> EarlyWarningDetector:
    cfg = DetectorConfig(**{"checks": ("update_jump",), "update_threshold": THRESHOLD, **fields})  # type: ignore[arg-type]
    return EarlyWarningDetector(cfg)


def _schedule(kind: str, n: int) -> np.ndarray:
    t = np.arange(n, dtype=float)
    return {"constant": np.ones(n), "cosine": 0.5 * (1 + np.cos(math.pi * t / n)) + 1e-3,
            "linear": 1.0 - t / n + 1e-3, "warmup": np.minimum(1.0, (t + 1) / 10),
            "long warmup": np.minimum(1.0, (t + 1) / (0.8 * n)),  # still rising when the test arms
            "warmup then cosine": np.where(t < n / 3, (t + 1) / (n / 3),
                                           0.5 * (1 + np.cos(math.pi * (t - n / 3) / n)))}[kind]


def _sizes(rng: np.random.Generator, lr: np.ndarray, scale: float = 1e-5) -> np.ndarray:
    return lr * scale * rng.uniform(0.7, 1.3, size=lr.size)


def _feed(det: EarlyWarningDetector, values: np.ndarray, name: str = SIGNAL) -> list:
    out = []
    for i, v in enumerate(values):
        out += det.update(2 * i, {name: float(v)})
    return out


def test_size_ratio_is_the_log_of_this_value_over_the_window_median() -> None:
    values = [1.0, 2.0, 4.0, 3.0, 5.0, 100.0, 100.0]  # window 5, lag 2: median of values[0:5] = 3
    assert size_ratio(values, 30.0, 5, 2, 1e-12) == pytest.approx(math.log(10.0))
    assert size_ratio([0.0] * 7, 0.0, 5, 2, 1e-9) == pytest.approx(0.0)  # no update at all: no division by zero
    # against the larger of the median and the trend's forecast
    assert size_ratio(values, 30.0, 5, 2, 1e-12, forecast=6.0) == pytest.approx(math.log(5.0))
    assert size_ratio(values, 30.0, 5, 2, 1e-12, forecast=-4.0) == pytest.approx(math.log(10.0))
    with pytest.raises(ValueError, match="window"):
        size_ratio([1.0] * 6, 1.0, 5, 2, 1e-9)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "warmup", "long warmup", "warmup then cosine"])
@pytest.mark.parametrize("lr", [1e-5, 1e-3])
def test_healthy_schedules_never_alarm(kind: str, lr: float) -> None:
    rng = np.random.default_rng(7)
    for _ in range(5):
        assert _feed(_detector(), _sizes(rng, lr * _schedule(kind, 150))) == []


@pytest.mark.parametrize("factor", [5.0, 20.0])
def test_a_learning_rate_jump_alarms_at_its_first_observation(factor: float) -> None:
    rng = np.random.default_rng(3)
    lr = _schedule("cosine", 150)
    lr[100:] *= factor
    alerts = _feed(_detector(), _sizes(rng, lr))
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.reason is AlertReason.UPDATE_JUMP and alert.signal == SIGNAL
    assert alert.step == 200 and alert.onset_step == 200 and alert.last_good_step == 198
    assert alert.score == pytest.approx(math.log(alert.value / alert.baseline), rel=1e-6)
    assert alert.score > math.log(factor) - 0.6
    ratio = math.exp(alert.score)
    assert f"{ratio:.{1 if ratio < 10 else 0}f}× further per step" in alert.message and "learning rate" in alert.message


def test_a_slow_down_does_not_alarm_and_other_tests_ignore_the_signal() -> None:
    rng = np.random.default_rng(5)
    lr = np.ones(150)
    lr[100:] = 0.01  # the schedule dropped the step size 100×
    assert _feed(_detector(), _sizes(rng, lr)) == []
    # every scalar test on: the update size still answers to UPDATE_JUMP alone (a schedule bend is no trend break)
    everything = _detector(checks=("trend_break", "slope_change", "variance_burst", "speed_jump", "update_jump"),
                           signals={SIGNAL: "both"}, speed_signals=(SIGNAL,), z_threshold=0.5, cusum_h=0.5,
                           variance_threshold=1.01, speed_threshold=0.1)
    alerts = _feed(everything, _sizes(rng, lr))
    assert alerts == []
    assert set(everything.last_tests[SIGNAL]) == {"update_jump"}


def test_only_update_signals_are_tested_and_the_check_can_be_off() -> None:
    rng = np.random.default_rng(9)
    lr = np.ones(150)
    lr[100:] *= 50
    sizes = _sizes(rng, lr)
    assert _feed(_detector(), sizes, name="pairs/margin") == []  # not an update signal, not watched
    assert _feed(_detector(update_signals=()), sizes) == []
    assert _feed(_detector(checks=("trend_break",), signals={"pairs/margin": "both"}), sizes) == []
    assert _feed(_detector(update_signals=("update/*",)), sizes)  # patterns work


def test_calibration_sets_the_threshold_and_hits_its_target_on_fresh_runs() -> None:
    rng = np.random.default_rng(11)

    def runs(n: int) -> list[list[tuple[int, dict[str, float]]]]:
        out = []
        for i in range(n):
            lr = _schedule(("constant", "cosine", "linear", "warmup")[i % 4], 150) * 10 ** rng.uniform(-5, -3)
            out.append([(2 * j, {SIGNAL: float(v)}) for j, v in enumerate(_sizes(rng, lr))])
        return out

    base = DetectorConfig(checks=("update_jump",), update_threshold=50.0)
    tuned = calibrate(runs(40), base, target_rate=5.0, keep_floor=False)
    assert 0.05 < tuned.update_threshold < 2.0 and tuned.z_threshold == base.z_threshold
    fresh = runs(40)
    alerts = sum(len(_feed(EarlyWarningDetector(tuned), np.array([s[SIGNAL] for _, s in run]))) for run in fresh)
    steps = sum(len(run) for run in fresh)
    assert 1000 * alerts / steps <= 3 * 5.0


def test_bad_settings_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="update_threshold"):
        DetectorConfig(update_threshold=0.0)
    with pytest.raises(ValueError, match="update_signals"):
        DetectorConfig(update_signals="update/size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown update signal 'update/sise'"):
        check_signal_names(DetectorConfig(update_signals=("update/sise",)), ["update/size", *DetectorConfig().signals])
    cfg = DetectorConfig(update_signals=("update/size",), update_threshold=1.5)
    assert DetectorConfig.from_dict(cfg.to_dict()) == cfg


def test_state_round_trips_mid_stream() -> None:
    rng = np.random.default_rng(13)
    lr = np.ones(150)
    lr[120:] *= 20
    sizes = _sizes(rng, lr)
    whole = _feed(_detector(), sizes)
    first = _detector()
    _feed(first, sizes[:80])
    second = _detector()
    second.load_state_dict(first.state_dict())
    rest = [a for i, v in enumerate(sizes[80:], start=80) for a in second.update(2 * i, {SIGNAL: float(v)})]
    assert [(a.step, a.reason) for a in rest] == [(a.step, a.reason) for a in whole] == [(240, AlertReason.UPDATE_JUMP)]


def test_a_long_warm_up_is_no_jump_at_a_tight_threshold() -> None:
    """A warm-up still rising when the test arms: against the median alone its step size looks ~1.9× too
    large; against the trend's forecast it is on time."""
    rng = np.random.default_rng(17)
    lr = np.minimum(1.0, np.arange(1, 151) / 120.0)
    sizes = lr * 1e-5 * rng.uniform(0.95, 1.05, size=lr.size)
    assert size_ratio(list(sizes[:25]), float(sizes[25]), 20, 2, 1e-12) > 0.5  # the median alone would alarm
    assert _feed(_detector(update_threshold=0.4), sizes) == []
    jumped = sizes.copy()
    jumped[60:] *= 3.0  # while still warming up, the step size triples
    alerts = _feed(_detector(update_threshold=0.4), jumped)
    assert [(a.step, a.reason) for a in alerts] == [(120, AlertReason.UPDATE_JUMP)]
