"""One observation of one scalar signal: scores, tests, hysteresis and the alert (pure, given its state).

The statistics are those of :mod:`~spinal_callback.early_warning.scores`; the decision rules:

- TREND_BREAK: ``|z_dir| ≥ z_threshold`` (``z_dir``: z after the direction prior);
- SLOPE_CHANGE: ``S ≥ cusum_h`` for the larger CUSUM side the prior allows;
- VARIANCE_BURST (signals in ``variance_signals`` only): ``V ≥ variance_threshold``;
- SPEED_JUMP (signals in ``speed_signals`` only): ``s ≥ speed_threshold``, one-sided, ``speed_consecutive`` in a
  row;
- UPDATE_JUMP (signals in ``update_signals``, which no other test watches): ``u ≥ update_threshold``, one-sided,
  one exceedance (quiet: ``u ≤ f·update_threshold``); TURN_JUMP likewise on ``turn_signals`` with
  ``turn_threshold``;

an observation is *quiet* when ``|z_dir| ≤ f·z_threshold``, ``S ≤ f·cusum_h``,
``V ≤ 1 + f·(variance_threshold − 1)`` and ``s ≤ f·speed_threshold`` (``f = release_fraction``). The CUSUM
only accumulates once the signal is armed (after ``warmup`` observations), so the noisy first scores cannot pre-load it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.messages import non_finite_message, scalar_message
from spinal_callback.early_warning.robust import pooled_rms, residual_scale
from spinal_callback.early_warning.scores import ScalarScores, fit_window, score_scalar, size_ratio, variance_onset
from spinal_callback.early_warning.state import SignalState, VectorState

__all__ = [
    "DECISIVE_TESTS", "SCALAR_TESTS", "Outcome", "directed", "noise_scale", "non_finite_alert", "observe_finite",
    "observe_scalar", "step_before",
]

#: Scalar tests, in the order they win when several qualify at once.
SCALAR_TESTS = ("trend_break", "slope_change", "variance_burst", "speed_jump", "update_jump", "turn_jump")
#: The size-ratio tests: each watches its own signals alone, with its own threshold.
_SIZE_TESTS = {"update_jump": ("update_threshold", AlertReason.UPDATE_JUMP),
               "turn_jump": ("turn_threshold", AlertReason.TURN_JUMP)}
#: The tests a single exceedance ``DetectorConfig.decisive_factor`` times the threshold opens at once (the size
#: tests open at one exceedance anyway).
DECISIVE_TESTS = tuple(t for t in SCALAR_TESTS if t not in _SIZE_TESTS)


@dataclass
class Outcome:
    """What one observation produced: new alerts, the scores to log, the armed test statistics."""

    alerts: list[Alert] = field(default_factory=list)
    scores: dict[str, float] | None = None
    tests: dict[str, float] | None = None


def directed(z: float, direction: str) -> float:
    """z with the direction prior applied: the side a prior rules out counts as 0."""
    if direction == "up":
        return max(z, 0.0)
    if direction == "down":
        return min(z, 0.0)
    return z


def step_before(history: deque[Any], step: int) -> int | None:
    """Step of the newest observation in ``history`` strictly before ``step``."""
    return next((s for s, _ in reversed(history) if s < step), None)


def noise_scale(st: SignalState, min_scale: float, before: int | None = None) -> float:
    """σ̂ = max(RMS of the pooled window scales, RMS of the external noise values, ``min_scale``).

    With ``before``, only windows that ended (and external values measured) before that step count, as
    long as there are any.
    """
    pool = [s for t, s in st.noise_pool if before is None or t < before] or [s for _, s in st.noise_pool]
    external = [s for t, s in st.external_noise if before is None or t < before] or [s for _, s in st.external_noise]
    return max(pooled_rms(pool) if pool else 0.0, pooled_rms(external) if external else 0.0, min_scale)


def non_finite_alert(cfg: DetectorConfig, st: SignalState | VectorState, name: str, step: int, x: float,
                     last: float, layers: tuple[int, ...]) -> list[Alert]:
    """NON_FINITE: one alert when a signal that was finite turns NaN/inf (and no episode is open)."""
    if cfg.non_finite == "skip" or not st.seen_finite:
        return []
    st.episodes.quiet_streak = 0  # a non-finite value never counts towards closing an episode
    if st.episodes.episode is not None:
        return []
    st.episodes.episode = AlertReason.NON_FINITE
    last_step = st.history[-1][0] if st.history else None
    message = non_finite_message(name, layers, step, x, last, last_step)
    return [Alert(step, AlertReason.NON_FINITE, name, x, last, math.inf, math.nan, layers, step, last_step, message)]


def observe_finite(cfg: DetectorConfig, st: SignalState, name: str, step: int, x: float,
                   layers: tuple[int, ...]) -> Outcome:
    """Feed ``x`` to a signal checked for NON_FINITE alone (``DetectorConfig.finite_signals``): an alert when it
    turns NaN/inf after finite values; a finite value only counts towards closing that episode."""
    if not math.isfinite(x):
        last = st.history[-1][1] if st.history else math.nan
        return Outcome(non_finite_alert(cfg, st, name, step, x, last, layers))
    st.seen_finite = True
    st.episodes.idle(True, cfg.release_after)
    st.history.append((step, x))
    st.last_step = step
    return Outcome()


def observe_scalar(cfg: DetectorConfig, st: SignalState, name: str, direction: str, step: int, x: float,
                   layers: tuple[int, ...], external: float | None, speed: bool = False,
                   update: str | None = None, variance: bool = True) -> Outcome:
    """Feed ``x`` (observed at ``step``) to the signal's state ``st`` and decide (``speed``: the SPEED_JUMP
    test applies to this signal; ``update``: ``"update_jump"`` or ``"turn_jump"`` when it is an update size or
    turn, watched by that test alone; ``variance``: the VARIANCE_BURST test applies to it)."""
    if not math.isfinite(x):
        last = st.history[-1][1] if st.history else math.nan
        return Outcome(non_finite_alert(cfg, st, name, step, x, last, layers))
    st.seen_finite = True
    st.count += 1
    if external is not None and math.isfinite(external) and external > 0.0:
        st.external_noise.append((step, external))
    out = Outcome()
    if len(st.history) < cfg.window + cfg.lag:
        st.episodes.idle(True, cfg.release_after)
    else:
        values = [v for _, v in st.history]
        first = len(values) - cfg.lag - cfg.window
        fit = fit_window(values, cfg.window, cfg.lag)
        window_steps = (st.history[first][0], st.history[first + cfg.window - 1][0])
        st.noise_pool.append((window_steps[1], residual_scale(fit.residuals)))
        sigma = noise_scale(st, cfg.min_scale)
        reference = None  # the variance ratio's own reference: the increments before its window
        if not cfg.variance_reference:  # the pooled noise of windows that ended before the variance window
            reference = noise_scale(st, cfg.min_scale, st.history[len(values) - cfg.variance_window][0])
        sc = score_scalar(values, x, fit, sigma, cfg.lag, cfg.variance_window, reference, cfg.min_scale,
                          cfg.variance_reference)
        if update == "turn_jump":
            sc, window_steps = _longer_turn(cfg, st, values, x, sc, window_steps)
        if update:
            _judge_update(cfg, st, name, step, x, sc, layers, window_steps, out, update)
        else:
            _judge(cfg, st, name, direction, step, x, sc, layers, window_steps, out, speed, variance)
        st.recent.append((step, sc.z))
    st.history.append((step, x))
    st.last_step = step
    return out


def _longer_turn(cfg: DetectorConfig, st: SignalState, values: list[float], x: float, sc: ScalarScores,
                 window_steps: tuple[int, int]) -> tuple[ScalarScores, tuple[int, int]]:
    """The turn's size score against the trend window ``turn_lag`` observations back too, once the history holds
    it: the larger log ratio, with the window it came from (a reversal that builds over several readings is
    measured against the course before it)."""
    lag = cfg.turn_lag
    if lag <= cfg.lag or len(values) < cfg.window + lag:
        return sc, window_steps
    fit = fit_window(values, cfg.window, lag)
    size = size_ratio(values, x, cfg.window, lag, cfg.min_scale, fit.at(cfg.window + lag))
    if size <= sc.size:
        return sc, window_steps
    first = len(values) - lag - cfg.window
    return replace(sc, size=size), (st.history[first][0], st.history[first + cfg.window - 1][0])


def _judge_update(cfg: DetectorConfig, st: SignalState, name: str, step: int, x: float, sc: ScalarScores,
                  layers: tuple[int, ...], window_steps: tuple[int, int], out: Outcome, test: str) -> None:
    field, reason = _SIZE_TESTS[test]
    threshold = float(getattr(cfg, field))
    out.scores = {"size": sc.size}
    if st.count <= cfg.warmup or test not in cfg.checks:
        st.episodes.idle(True, cfg.release_after)
        return
    out.tests = {test: sc.size}
    exceed = {test: 1 if sc.size >= threshold else 0}
    quiet = sc.size <= cfg.release_fraction * threshold
    opened = st.episodes.observe(exceed, quiet, [test], {test: 1}, cfg.release_after)
    if opened is None:
        return
    message = scalar_message(reason.name, name, layers, step, x, sc, sc.size, threshold, step, window_steps)
    out.alerts.append(Alert(step, reason, name, x, x / math.exp(sc.size), sc.size, threshold, layers, step,
                            step_before(st.history, step), message))


def _judge(cfg: DetectorConfig, st: SignalState, name: str, direction: str, step: int, x: float, sc: ScalarScores,
           layers: tuple[int, ...], window_steps: tuple[int, int], out: Outcome, speed: bool,
           variance: bool = True) -> None:
    armed = st.count > cfg.warmup
    if armed:
        st.cusum.update(sc.z, cfg.cusum_k, step, st.last_step, cfg.cusum_h)
    z = directed(sc.z, direction)
    cusum, side = st.cusum.score(direction)
    out.scores = {"z": sc.z, "cusum": cusum, "variance_ratio": sc.variance_ratio, "forecast": sc.forecast,
                  "noise": sc.noise}
    if speed:
        out.scores["speed"] = sc.speed
    if not armed:
        st.episodes.idle(True, cfg.release_after)
        return
    checks = [t for t in SCALAR_TESTS if t in cfg.checks and t not in _SIZE_TESTS and (speed or t != "speed_jump")
              and (variance or t != "variance_burst")]
    signed = {"trend_break": z, "slope_change": cusum if side == "up" else -cusum, "variance_burst": sc.variance_ratio,
              "speed_jump": sc.speed}
    out.tests = {t: signed[t] for t in checks}
    thresholds = {"trend_break": cfg.z_threshold, "slope_change": cfg.cusum_h, "variance_burst": cfg.variance_threshold,
                  "speed_jump": cfg.speed_threshold}
    exceed = {t: (1 if signed[t] >= 0 else -1) if abs(signed[t]) >= thresholds[t] else 0 for t in checks}
    if "speed_jump" in exceed and sc.speed < 0:
        exceed["speed_jump"] = 0  # one-sided: slowing down is what schedules do
    f = cfg.release_fraction
    quiet = (abs(z) <= f * cfg.z_threshold and cusum <= f * cfg.cusum_h
             and (not variance or sc.variance_ratio <= 1.0 + f * (cfg.variance_threshold - 1.0))
             and (not speed or sc.speed <= f * cfg.speed_threshold))
    runs = {t: cfg.speed_consecutive if t == "speed_jump" else cfg.min_consecutive for t in checks}
    if cfg.decisive_factor:  # an exceedance this far beyond its threshold needs no confirmation
        runs.update({t: 1 for t in checks if abs(signed[t]) >= cfg.decisive_factor * thresholds[t]})
    opened = st.episodes.observe(exceed, quiet, checks, runs, cfg.release_after)
    if opened is None:
        return
    if opened == "trend_break":
        onset = step  # back along the run of residuals beyond the release level, on the same side
        for earlier, z_earlier in reversed(st.recent):
            if directed(z_earlier, direction) * exceed[opened] < f * cfg.z_threshold:
                break
            onset = earlier
        before = step_before(st.history, onset)
    elif opened == "speed_jump":
        run = [s for s, _ in st.history][-(cfg.speed_consecutive - 1):] if cfg.speed_consecutive > 1 else []
        onset = run[0] if run else step  # the first observation of the run of exceedances
        before = step_before(st.history, onset)
    elif opened == "slope_change":
        start = st.cusum.start[side]
        onset, before = (step, st.last_step) if start is None else (start, st.cusum.before[side])
    else:
        points = [*list(st.history)[-cfg.variance_window:], (step, x)]
        scale = sc.variance_scale if cfg.variance_reference else sc.noise
        onset, before = variance_onset(points, sc.slope, scale, cfg.variance_threshold)
    score = {"trend_break": sc.z, "slope_change": cusum, "variance_burst": sc.variance_ratio,
             "speed_jump": sc.speed}[opened]
    reason = AlertReason(opened)
    message = scalar_message(reason.name, name, layers, step, x, sc, score, thresholds[opened], onset, window_steps)
    out.alerts.append(Alert(step, reason, name, x, sc.forecast, score, thresholds[opened], layers, onset, before,
                            message))
