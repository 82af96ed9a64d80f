"""Early-warning detector: synthetic series with known answers, hysteresis, config and state round trips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from spinal_callback.detector import (
    DEFAULT_SIGNALS,
    Alert,
    AlertReason,
    DetectorConfig,
    EarlyWarningDetector,
    signals_from_bands,
)
from spinal_callback.robust import robust_scale, step_noise

SIGNAL = "band/late/transport_curvature"
LATE = (7, 8, 9)


def noise(seed: int, n: int = 200, level: float = 3.0, sigma: float = 0.1) -> np.ndarray:
    return level + sigma * np.random.default_rng(seed).normal(size=n)


def detector(direction: str = "up", **overrides) -> EarlyWarningDetector:
    return EarlyWarningDetector(DetectorConfig(signals={SIGNAL: direction}, **overrides))


def feed(det: EarlyWarningDetector, series, start: int = 0, signal: str = SIGNAL) -> list[Alert]:
    alerts: list[Alert] = []
    for i, value in enumerate(series):
        alerts += det.update(start + i, {signal: float(value)}, {signal: LATE})
    return alerts


# ---------------------------------------------------------------------------------------------- baseline
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("direction", ["up", "down", "both"])
def test_stable_noise_raises_no_alert(seed: int, direction: str) -> None:
    det = detector(direction)
    assert feed(det, noise(seed)) == []
    assert not det.episode_open and det.quiet
    scores = det.last_scores[SIGNAL]
    assert abs(scores["z"]) < 6 and math.isfinite(scores["variance_ratio"])


def test_false_alarm_rate_over_many_seeds() -> None:
    """The calibration (small-sample corrections, widened CUSUM allowance and variance threshold) keeps
    false alarms rare: at most 1 of 50 two-sided runs of 200 observations alerts (expected ≈ 0.25)."""
    alerting = sum(bool(feed(detector("both"), noise(1000 + seed))) for seed in range(50))
    assert alerting <= 1


def test_default_signals_on_stable_noise() -> None:
    det = EarlyWarningDetector()
    assert next(iter(det.config.signals)) == SIGNAL  # the late-band transport curvature comes first
    rng = np.random.default_rng(7)
    levels = {name: 1.0 + i for i, name in enumerate(DEFAULT_SIGNALS)}
    for step in range(150):
        values = {name: level + 0.05 * rng.normal() for name, level in levels.items()}
        assert det.update(step, values) == []


def test_robust_scale_floor_and_short_baselines() -> None:
    flat = [2.0] * 10
    assert robust_scale(flat, 2.0, 1e-6, 0.02) == pytest.approx(0.04)  # relative floor: 2% of |median|
    assert robust_scale([0.0] * 10, 0.0, 1e-6, 0.02) == pytest.approx(1e-6)  # absolute floor
    # Three values that happen to coincide do not make σ̂ tiny: the mean absolute deviation guards it.
    clustered = [1.0, 1.0, 1.0, 3.0, -1.0]
    assert robust_scale(clustered, 1.0, 1e-9, 0.0) > 1.0
    # Step noise ignores one isolated jump (a level shift) but sees noise.
    assert step_noise([0.0] * 10 + [5.0] * 10) == 0.0
    assert step_noise(list(np.random.default_rng(0).normal(size=400))) == pytest.approx(1.0, rel=0.1)


def test_cusum_allowance_is_widened_for_a_short_baseline() -> None:
    det = detector("up", cusum_k=0.5)
    feed(det, [3.0, 3.1, 2.9, 3.05, 2.95])
    center, scale = det.baseline(SIGNAL)
    det.update(5, {SIGNAL: center + 1.5 * scale})
    # k_n = k + 1.253/√n with n = 5 baseline values (the observation joins the baseline afterwards)
    assert det.last_scores[SIGNAL]["cusum"] == pytest.approx(1.5 - 0.5 - math.sqrt(math.pi / 2) / math.sqrt(5))
    assert det.last_scores[SIGNAL]["z"] == pytest.approx(1.5)


def test_flat_baseline_tiny_change_is_not_an_alert() -> None:
    det = detector("both")
    assert feed(det, [1.0] * 20 + [1.0 + 1e-9] * 20) == []
    assert abs(det.last_scores[SIGNAL]["z"]) < 1e-6  # finite and tiny thanks to the floor
    # A sustained 3% shift (1.5 floor-σ) is a drift, a 30% jump a spike.
    assert [a.reason for a in feed(det, [1.03] * 30, start=40)] == [AlertReason.DRIFT]
    other = detector("both")
    feed(other, [1.0] * 20)
    assert [a.reason for a in feed(other, [1.3] * 5, start=20)] == [AlertReason.SPIKE]


# ----------------------------------------------------------------------------------------------- spikes
@pytest.mark.parametrize("seed", range(4))
def test_step_change_gives_exactly_one_spike_alert(seed: int) -> None:
    series = noise(seed)
    series[100:] += 1.0  # 10 σ, and it stays there
    det = detector("up")
    alerts = feed(det, series)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.reason is AlertReason.SPIKE
    assert alert.signal == SIGNAL and alert.layers == LATE
    assert alert.score >= det.config.z_threshold == alert.threshold
    assert alert.step == 101  # min_consecutive = 2
    assert alert.onset_step == 100
    assert alert.last_good_step == alert.onset_step - 1
    assert alert.restore_before == alert.onset_step
    assert alert.value == pytest.approx(series[101])
    assert alert.baseline == pytest.approx(3.0, abs=0.05)
    for needle in (SIGNAL, "layers 7–9", "since about step", "learning rate", "spinal/band/late/*"):
        assert needle in alert.message
    assert det.episode_open and not det.quiet
    assert det.open_episodes() == {SIGNAL: AlertReason.SPIKE}


def test_spike_onset_is_the_jump_unless_a_drift_was_under_way() -> None:
    series = noise(5)
    series[99] = 3.25  # +2.5 σ just before the jump: the CUSUM leaves zero, but no drift is under way
    series[100:] += 1.0
    (alert,) = feed(detector("up"), series)
    assert (alert.reason, alert.onset_step, alert.last_good_step) == (AlertReason.SPIKE, 100, 99)

    drifting = noise(5)
    drifting[60:100] += 0.1 * 0.1 * np.arange(40)  # a ramp under way ...
    drifting[100:] += 2.0  # ... ends in a jump
    alerts = feed(detector("up", cusum_h=50.0), drifting)  # (a high h keeps DRIFT itself from firing)
    assert [a.reason for a in alerts] == [AlertReason.SPIKE]
    assert 55 <= alerts[0].onset_step <= 80


def test_min_consecutive_ignores_a_single_outlier() -> None:
    series = noise(1)
    series[120] += 2.0
    assert feed(detector("up"), series) == []
    assert [a.step for a in feed(detector("up", min_consecutive=1), series)] == [120]


def test_persistent_spike_is_one_episode_and_a_later_one_is_another() -> None:
    series = noise(2, n=240)
    series[80:140] += 1.0  # one long episode
    series[190:] += 1.0  # a second one, after 50 normal observations
    alerts = feed(detector("up"), series)
    assert [a.reason for a in alerts] == [AlertReason.SPIKE, AlertReason.SPIKE]
    assert [a.onset_step for a in alerts] == [80, 190]


def test_episode_stays_open_until_release_after_quiet_observations() -> None:
    series = noise(3, n=120)
    series[60:70] += 1.0
    det = detector("up", release_after=3, checks=("spike",))
    feed(det, series[:70])
    assert det.episode_open
    feed(det, series[70:72], start=70)
    assert det.episode_open  # two quiet observations are not enough
    feed(det, series[72:73], start=72)
    assert not det.episode_open


def test_direction_is_respected() -> None:
    up_step = noise(4)
    up_step[100:] += 1.0
    down_step = noise(4)
    down_step[100:] -= 1.0
    assert feed(detector("down"), up_step) == []  # a rise of a "down is bad" signal is fine
    assert feed(detector("up"), down_step) == []
    assert [a.reason for a in feed(detector("down"), down_step)] == [AlertReason.SPIKE]
    assert len(feed(detector("both"), up_step)) == len(feed(detector("both"), down_step)) == 1


def test_down_is_bad_for_chosen_logps() -> None:
    det = EarlyWarningDetector()
    alerts = []
    for step in range(60):
        logp = -40.0 + 0.3 * math.sin(step) - (15.0 if step >= 40 else 0.0)
        alerts += det.update(step, {"logps/chosen": logp})
    assert [(a.signal, a.reason, a.onset_step) for a in alerts] == [("logps/chosen", AlertReason.SPIKE, 40)]
    assert "(layer" not in alerts[0].message and "the logps/chosen chart" in alerts[0].message


# ------------------------------------------------------------------------------------- drift, variance
@pytest.mark.parametrize("seed", range(3))
def test_slow_ramp_is_drift_before_the_z_score_would_fire(seed: int) -> None:
    series = noise(seed, n=300)
    series[60:] += 0.1 * 0.05 * np.arange(240)  # 0.05 σ per observation
    det = detector("up")
    alerts, z = [], []
    for step, value in enumerate(series):
        alerts += det.update(step, {SIGNAL: float(value)})
        z.append(det.last_scores.get(SIGNAL, {}).get("z", 0.0))
    assert [a.reason for a in alerts] == [AlertReason.DRIFT]  # one episode: the ramp goes on
    drift = alerts[0]
    assert drift.step < 130 and 40 <= drift.onset_step <= drift.step
    assert "drifted up" in drift.message
    first_spike = next(step for step, value in enumerate(z) if value >= det.config.z_threshold)
    assert first_spike > drift.step + 30  # the z-score alone, on the same baseline, fires much later
    # A detector without the drift test never fires on it: the baseline follows a ramp it cannot see.
    assert feed(detector("up", checks=("spike",)), series) == []


@pytest.mark.parametrize("seed", range(3))
def test_rising_variance(seed: int) -> None:
    series = noise(seed)
    rng = np.random.default_rng(100 + seed)
    series[100:] = 3.0 + 0.6 * rng.normal(size=100)  # same level, 6× the noise
    alerts = feed(detector("up"), series)
    assert alerts and alerts[0].reason is AlertReason.RISING_VARIANCE
    assert alerts[0].score >= alerts[0].threshold >= det_default_ratio()
    assert 100 <= alerts[0].onset_step <= alerts[0].step <= 115
    assert "fluctuates" in alerts[0].message


def det_default_ratio() -> float:
    return DetectorConfig().variance_ratio


def test_rising_variance_needs_the_check() -> None:
    series = noise(0)
    series[100:] = 3.0 + 0.6 * np.random.default_rng(1).normal(size=100)
    reasons = {a.reason for a in feed(detector("up", checks=("spike", "drift")), series)}
    assert AlertReason.RISING_VARIANCE not in reasons


# ------------------------------------------------------------------------------------ warm-up, non-finite
def test_no_alert_during_warmup() -> None:
    det = detector("both", warmup=5)
    wild = [0.0, 100.0, -50.0, 1e6, 3.0]
    assert feed(det, wild) == []
    assert det.baseline(SIGNAL) is not None
    fresh = detector("both", warmup=5)
    feed(fresh, wild[:4])
    assert fresh.baseline(SIGNAL) is None and fresh.last_scores == {}


def test_non_finite_alerts_once_per_episode() -> None:
    det = detector("up")
    series = list(noise(5, n=60))
    series[30:34] = [math.nan, math.inf, math.nan, -math.inf]
    series[50] = math.nan
    alerts = feed(det, series)
    assert [(a.reason, a.step) for a in alerts] == [(AlertReason.NON_FINITE, 30), (AlertReason.NON_FINITE, 50)]
    first = alerts[0]
    assert math.isnan(first.value) and first.score == math.inf and first.last_good_step == 29
    assert "NaN" in first.message or "nan" in first.message
    data = json.loads(json.dumps(first.to_dict(), allow_nan=False))
    assert data["value"] is None and data["reason"] == "non_finite"
    assert math.isnan(Alert.from_dict(data).value)


def test_non_finite_in_warmup_and_never_finite_signals() -> None:
    det = detector("up")
    assert det.update(0, {SIGNAL: math.nan}) == []  # never finite: nothing to compare with
    assert det.update(1, {SIGNAL: 1.0}) == []
    assert [a.reason for a in det.update(2, {SIGNAL: math.nan})] == [AlertReason.NON_FINITE]


def test_non_finite_skip_leaves_the_state_untouched() -> None:
    det, ref = detector("up", non_finite="skip"), detector("up", non_finite="skip")
    series = noise(6, n=80)
    feed(ref, series)
    for step, value in enumerate(series):
        assert det.update(step, {SIGNAL: float(value)}) == []
        assert det.update(step, {SIGNAL: math.nan}) == []
    assert det.state_dict() == ref.state_dict()


def test_update_input_handling() -> None:
    det = EarlyWarningDetector(DetectorConfig(signals={"a": "up", "b": "down"}))
    assert det.update(0, {"unknown": 1.0}) == []
    with pytest.raises(ValueError, match="signal 'a' must be a number"):
        det.update(1, {"a": "high"})
    for step in range(10):
        det.update(step, {"a": 1.0 + 0.01 * (step % 3), "b": 1.0 + 0.01 * (step % 2)})
    alerts = det.update(10, {"b": 0.0, "a": 9.0}) + det.update(11, {"b": 0.0, "a": 9.0})
    assert [a.signal for a in alerts] == ["a", "b"]  # configured order


# ----------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field,value",
    [
        ("signals", {SIGNAL: "sideways"}),
        ("signals", {}),
        ("signals", 3),
        ("warmup", 2),
        ("warmup", 5.0),
        ("baseline_window", 4),
        ("adapt_baseline", "yes"),
        ("checks", ("spike", "bogus")),
        ("checks", ()),
        ("z_threshold", 0),
        ("z_threshold", math.nan),
        ("cusum_k", -0.1),
        ("cusum_h", math.inf),
        ("variance_window", 2),
        ("variance_ratio", 1.0),
        ("min_consecutive", 0),
        ("release_fraction", 1.0),
        ("release_after", 0),
        ("min_scale", 0.0),
        ("min_scale_rel", True),
        ("non_finite", "raise"),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{field}") as info:
        DetectorConfig(**{field: value})
    assert repr(value)[:10] in str(info.value) or field == "signals"


def test_config_defaults_help_and_normalisation() -> None:
    cfg = DetectorConfig(signals=["a", "b"], checks="drift")
    assert cfg.signals == {"a": "both", "b": "both"} and cfg.checks == ("drift",)
    helps = DetectorConfig.help()
    assert set(helps) == set(DetectorConfig().to_dict()) and all(helps.values())
    json.dumps(DetectorConfig().to_dict())
    assert DetectorConfig().signals["logps/chosen"] == "down"


# ------------------------------------------------------------------------------------------------ state
def test_state_round_trip_mid_stream_gives_identical_alerts() -> None:
    series = noise(8, n=260)
    series[80:110] += 1.0
    series[150:] += 0.1 * 0.08 * np.arange(110)
    series[120] = math.nan
    reference = detector("both")
    expected = feed(reference, series)
    assert len(expected) >= 2

    reference_scores = scores_per_step(detector("both"), series)

    # Before anything, at the first exceedance, between it and its alert, inside a spike episode, while it
    # is being released, inside the drift build-up.
    states = []
    probe = detector("both")
    for step, value in enumerate(series):
        probe.update(step, {SIGNAL: float(value)})
        states.append(probe.state_dict()["signals"][SIGNAL])
    releasing = next(i + 1 for i, st in enumerate(states) if st["episode"] and st["quiet_streak"] > 0)
    for cut in (40, 80, 81, 95, releasing, 160):
        first = detector("both")
        head = feed(first, series[:cut])
        state = json.loads(json.dumps(first.state_dict(), allow_nan=False))  # plain types only
        second = detector("both")
        second.load_state_dict(state)
        assert second.state_dict() == first.state_dict()
        tail = feed(second, series[cut:], start=cut)
        assert [a.to_dict() for a in head + tail] == [a.to_dict() for a in expected]
        assert second.state_dict() == reference.state_dict()
        third = detector("both")
        third.load_state_dict(state)
        np.testing.assert_equal(scores_per_step(third, series[cut:], start=cut), reference_scores[cut:])


def scores_per_step(det: EarlyWarningDetector, series, start: int = 0) -> list[dict[str, float]]:
    out = []
    for i, value in enumerate(series):
        det.update(start + i, {SIGNAL: float(value)})
        out.append(dict(det.last_scores.get(SIGNAL, {})))
    return out


def test_load_state_dict_is_tolerant() -> None:
    det = detector("up")
    det.load_state_dict({})
    det.load_state_dict({"signals": {SIGNAL: {"baseline": [[0, 1.0], [1, 1.1]]}, "gone": {}}})
    assert det.state_dict()["signals"][SIGNAL]["baseline"] == [[0, 1.0], [1, 1.1]]
    assert feed(det, noise(0, n=50), start=2) == []


def test_reset_after_rollback_keeps_the_baseline() -> None:
    series = noise(9, n=200)
    series[100:] += 1.0
    det = detector("up")
    (alert,) = feed(det, series[:110])
    before = det.baseline(SIGNAL)
    det.reset(keep_baseline=True, since_step=alert.onset_step)
    assert not det.episode_open and det.quiet and det.baseline(SIGNAL) == before
    # Training resumes from a good snapshot: the old level raises nothing, a new jump alerts again.
    assert feed(det, noise(10, n=40), start=110) == []
    again = noise(11, n=20)
    again[5:] += 1.0
    assert [a.reason for a in feed(det, again, start=150)] == [AlertReason.SPIKE]
    det.reset(keep_baseline=False)
    assert det.baseline(SIGNAL) is None


def test_alert_dict_round_trip_and_bands_helper() -> None:
    series = noise(12)
    series[100:] += 1.0
    (alert,) = feed(detector("up"), series)
    data = json.loads(json.dumps(alert.to_dict(), allow_nan=False))
    assert data["reason"] == "spike" and data["layers"] == list(LATE)
    assert Alert.from_dict(data) == alert

    bands = {"late": {"layers": [7, 9], "transport_curvature": 0.25, "contraction": None},
             "early": {"layers": [1, 3], "transport_curvature": 0.1}}
    signals, layers = signals_from_bands(bands)
    assert signals["band/late/transport_curvature"] == 0.25 and math.isnan(signals["band/late/contraction"])
    assert layers["band/late/transport_curvature"] == LATE and layers["band/early/transport_curvature"] == (1, 2, 3)
