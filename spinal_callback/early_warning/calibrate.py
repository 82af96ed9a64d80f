"""Calibration: thresholds that give a target false-alarm rate on healthy runs (pure; no I/O).

A *stream* is one healthy run as the detector sees it: a list of observations
``(step, {signal: value})``, ``(step, {signal: value}, {vector: [per-layer values]})`` or
``(step, signals, vectors, {signal: measured noise})`` — what ``scripts/calibrate_detector.py`` builds from
trace files. :func:`calibrate` replays the detector over every stream with unbounded thresholds, records
for each test the *effective* statistic of every probe step — the largest over signals of the smallest
|statistic| in the last ``min_consecutive`` armed observations of one signal (same sign), i.e. the lowest
threshold at which that step would complete a run of exceedances (with ``decisive_factor`` f, at least the step's own
|statistic|/f: one exceedance that large opens an episode alone) — and sets each threshold from them.

The budget ``target_rate`` (alarms per 1000 probe steps, all signals together) is split evenly among the
tests in use: test ``j`` may exceed on a fraction ``p = r/1000`` of the scored probe steps,
``r = target_rate / n_tests``. With ``N`` scored probe steps in all:

1. **Resolved** (``k = ⌊p·N⌋ ≥ 1``): ``threshold = margin · u_k``, ``u_k`` the ``(k + 1)``-th largest
   effective statistic — at most ``k`` steps of the healthy data exceed it.
2. **Not resolved** (``N < 1/p``: the target is rarer than the data can show — the usual case with a few
   runs): the largest of ``margin · max``; an exponential tail fitted to the top ``n_e = max(10, 0.1·N)``
   statistics above ``u₀`` (peaks over threshold, generalised-Pareto shape 0:
   ``P(X > u) = (n_e/N)·e^{−(u − u₀)/β}``, β the mean excess raised to its one-sided 90 % upper bound
   ``β̂(1 + 1.28/√n_e)``) read at ``p``: ``u₀ + β·ln(n_e/(N·p))``; and, unless ``keep_floor=False``, the
   threshold ``config`` already has (by default the shipped one).

Why the floor: the maximum of a few hundred healthy steps sits far below the level exceeded once in ten
thousand (``margin × max`` from 3 synthetic runs gave 4 false alarms per 1000 fresh steps), and tail fits
from so few points break down on statistics that are mostly 0 (the CUSUM with k = 2). Few runs can
therefore raise a threshold — when they are noisier or more curved than what set the current one — but
not lower it; enough runs (``N ≥ 1/p`` scored steps: about 100 runs of 100 probes at the default target)
decide alone. Counting exceedance *steps* rather than episodes errs on the safe side too. Check the
result with :func:`false_alarm_rate` on runs that were not used to calibrate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import AlertReason
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.early_warning.scalar import DECISIVE_TESTS

__all__ = ["THRESHOLD_FIELDS", "calibrate", "false_alarm_rate", "healthy_scores"]

#: Test → the DetectorConfig field holding its threshold.
THRESHOLD_FIELDS = {"trend_break": "z_threshold", "slope_change": "cusum_h", "variance_burst": "variance_threshold",
                    "pattern_change": "t2_threshold", "speed_jump": "speed_threshold",
                    "update_jump": "update_threshold", "turn_jump": "turn_threshold"}
_SIGNED = ("trend_break", "slope_change")  # two-sided: a run must keep one sign
_UNBOUNDED = 1e12

Observation = Sequence[Any]
Stream = Sequence[Observation]


def _unpack(obs: Observation) -> tuple[int, Mapping[str, float], Any, Any]:
    if not 2 <= len(obs) <= 4:
        raise ValueError(f"an observation must be (step, signals[, vectors[, noise]]), got {len(obs)} items")
    step, signals, *rest = obs
    vectors = rest[0] if rest else None
    noise = rest[1] if len(rest) > 1 else None
    return int(step), signals, vectors, noise


def _effective(run: deque[float], signed: bool) -> float:
    if len(run) < (run.maxlen or 1):
        return -math.inf
    if not signed:
        return min(run)
    if all(v >= 0 for v in run) or all(v <= 0 for v in run):
        return min(abs(v) for v in run)
    return 0.0


def healthy_scores(streams: Sequence[Stream], config: DetectorConfig | None = None) -> dict[str, list[list[float]]]:
    """Replay the detector (thresholds unbounded) and return, per test, per stream, the effective statistic
    of every probe step at which some signal had that test armed (see the module docstring)."""
    base = config if config is not None else DetectorConfig()
    unbounded = replace(base, **dict.fromkeys(THRESHOLD_FIELDS.values(), _UNBOUNDED))  # type: ignore[arg-type]
    out: dict[str, list[list[float]]] = {test: [] for test in THRESHOLD_FIELDS if test in base.checks}
    for stream in streams:
        detector = EarlyWarningDetector(unbounded)
        runs: dict[tuple[str, str], deque[float]] = {}
        per_stream: dict[str, list[float]] = {test: [] for test in out}
        for obs in stream:
            step, signals, vectors, noise = _unpack(obs)
            detector.update(step, signals, noise=noise, vectors=vectors)
            best: dict[str, float] = {}
            for name, tests in detector.last_tests.items():
                for test, value in tests.items():
                    length = {"speed_jump": base.speed_consecutive, "update_jump": 1,
                              "turn_jump": 1}.get(test, base.min_consecutive)
                    run = runs.setdefault((name, test), deque(maxlen=length))
                    run.append(value)
                    effective = _effective(run, test in _SIGNED)
                    if base.decisive_factor and test in DECISIVE_TESTS:  # one exceedance f × the threshold suffices
                        single = abs(value) if test in _SIGNED else value
                        effective = max(effective, single / base.decisive_factor)
                    best[test] = max(best.get(test, -math.inf), effective)
            for test, value in best.items():
                if math.isfinite(value):
                    per_stream[test].append(value)
        for test in out:
            out[test].append(per_stream[test])
    return out


def _tail_quantile(values: np.ndarray, p: float, fraction: float = 0.1, minimum: int = 10) -> float:
    """Level exceeded with probability ``p`` under an exponential tail fitted to the top ``fraction`` of
    ``values`` (peaks over threshold, generalised-Pareto shape 0), with the scale taken at its one-sided 90 %
    upper confidence bound."""
    ordered = np.sort(values)[::-1]
    n_exc = min(max(minimum, int(fraction * ordered.size)), ordered.size - 1)
    u0 = float(ordered[n_exc])
    beta = float(np.mean(ordered[:n_exc] - u0)) * (1.0 + 1.28 / math.sqrt(n_exc))
    return u0 + beta * math.log(max(n_exc / ordered.size / p, 1.0))


def _threshold(series: list[list[float]], rate: float, margin: float, prior: float | None) -> float:
    values = np.sort(np.concatenate([np.asarray(s, dtype=float) for s in series if s]))[::-1]
    p = rate / 1000.0
    k = math.floor(p * values.size)
    if k >= 1:  # the data resolve the target: at most k healthy steps exceed
        return margin * float(values[k])
    level = margin * float(values[0])
    if values.size > 10:
        level = max(level, _tail_quantile(values, p))
    return level if prior is None else max(level, prior)


def calibrate(
    streams: Sequence[Stream],
    config: DetectorConfig | None = None,
    *,
    target_rate: float = 0.5,
    margin: float = 1.1,
    keep_floor: bool = True,
) -> DetectorConfig:
    """Set ``z_threshold``, ``cusum_h``, ``variance_threshold``, ``t2_threshold``, ``speed_threshold``,
    ``update_threshold`` and ``turn_threshold`` from
    healthy runs (each test in ``config.checks`` that the streams exercise).

    Args:
        streams: Healthy runs, each a list of observations (see the module docstring). Runs that span the
            learning rates, β and schedules the detector will meet make the thresholds transferable.
        config: Everything else (signals, window, lag, warm-up, cusum_k, min_consecutive, …); thresholds of
            tests that get no data (e.g. no vectors in the streams) are left as they are.
        target_rate: False alarms per 1000 probe steps, all signals and tests together.
        margin: Factor on the empirical level (≥ 1).
        keep_floor: When the data cannot resolve the target (fewer than 1/p scored steps), keep at least the
            threshold ``config`` has (by default the shipped one): a few runs can make the detector more
            cautious, never less. False: trust the data and the tail fit alone.

    Returns:
        A new :class:`DetectorConfig` (``config`` with the calibrated thresholds).

    Raises:
        ValueError: Bad arguments, or no stream long enough to be scored (more than ``warmup`` and
            ``window + lag`` observations of a signal).
    """
    base = config if config is not None else DetectorConfig()
    if not (isinstance(target_rate, (int, float)) and 0.0 < target_rate < 1000.0):
        raise ValueError(f"`target_rate` must be a number in (0, 1000) alarms per 1000 probe steps, "
                         f"got {target_rate!r}")
    if not (isinstance(margin, (int, float)) and margin >= 1.0):
        raise ValueError(f"`margin` must be a number >= 1, got {margin!r}")
    scores = {test: series for test, series in healthy_scores(streams, base).items() if any(series)}
    if not scores:
        raise ValueError(f"no stream was long enough to be scored: each needs more than warmup ({base.warmup}) and "
                         f"window + lag ({base.window + base.lag}) observations of a watched signal")
    rate = target_rate / len(scores)
    updates = {}
    for test, series in scores.items():
        field = THRESHOLD_FIELDS[test]
        value = _threshold(series, rate, margin, getattr(base, field) if keep_floor else None)
        updates[field] = max(value, 1.0 + 1e-6) if test == "variance_burst" else max(value, 1e-6)
    return replace(base, **updates)  # type: ignore[arg-type]


def false_alarm_rate(streams: Sequence[Stream], config: DetectorConfig | None = None) -> float:
    """Alerts (NON_FINITE excepted) per 1000 probe steps when the detector runs over ``streams``."""
    alerts = steps = 0
    for stream in streams:
        detector = EarlyWarningDetector(config)
        for obs in stream:
            step, signals, vectors, noise = _unpack(obs)
            found = detector.update(step, signals, noise=noise, vectors=vectors)
            alerts += sum(a.reason is not AlertReason.NON_FINITE for a in found)
            steps += 1
    return 1000.0 * alerts / steps if steps else 0.0
