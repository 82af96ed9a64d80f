"""Trend-aware scores of one scalar observation (pure functions).

Given a signal's history ``x_0..x_{n−1}`` (observation index; ``n ≥ W + g``) and a new value ``x_n``:

1. **Trend**: a Theil–Sen line on the lagged window ``x_{n−g−W} .. x_{n−g−1}``
   (:func:`~spinal_callback.early_warning.trend.theil_sen`), forecast to now: ``x̂_n = α + β·D`` with
   ``D = W + g − (W − 1)/2`` positions past the window centre.
2. **Noise** σ̂: supplied by the caller — the detector pools the windows' own residual scales
   (:func:`~spinal_callback.early_warning.robust.residual_scale`) and an optional externally measured
   noise floor.
3. **Residual score** ``z = (x_n − x̂_n) / (σ̂ √(1 + v(W, D)))``
   (:func:`~spinal_callback.early_warning.trend.forecast_variance`). A healthy trend of any size and
   direction — linear, or curving slowly on the scale of the window — leaves z ≈ N(0, 1); a jump, or a
   bend sharper than the window can follow, does not.
4. **Variance ratio** over the last ``m`` detrended increments ``d_j = Δx_j − β``:
   ``V = mean'(d_j²) / ref`` where ``mean'`` leaves out the two largest terms (an isolated outlier
   makes two big increments, a level shift one; a burst of noise makes them all big). With a reference of
   ``R`` increments (``DetectorConfig.variance_reference``) ``ref`` is the same trimmed mean square — the same
   share, ``⌊2R/m⌋`` largest, left out — of the ``R`` detrended increments just before those ``m``: like is
   compared with like, over the last ``m + R`` observations only, so a noise level that drifts slowly (a batch
   metric whose spread grows as training sharpens the model) moves the reference with it, while a burst
   does not; ``E[V] ≈ 1.4`` on white noise (m = 8, R = 32). Without one (``R = 0``, studies 2-8)
   ``ref = 2σ̂_ref²``, σ̂_ref a noise scale measured before those increments; ``E[V] ≈ 0.47`` on white noise
   (m = 8).
5. **Speed** ``s = ln((|x_n − x_{n−1}| + ε) / (median_j |Δx_j| + ε))``, the median over the increments inside
   the lagged window, ε = ``min_scale``: how many times further the signal moved at this observation than it
   typically did. Scale-free, so the same threshold serves learning rates and signals of any size; a healthy
   schedule changes it slowly, a learning-rate jump or a corrupted update at once.
6. **Size** ``u = ln((x_n + ε) / (max(x̂_n, median_j x_j) + ε))``, the median over the lagged window's values:
   the same ratio for a signal that already *is* a step size (the optimizer's update size, ``update/size``),
   against the larger of its typical value and its trend's forecast — so that a step size growing smoothly
   (a learning-rate warm-up of any length) is not taken for a jump, and a decaying one is not measured
   against a forecast near zero.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinal_callback.early_warning.robust import median
from spinal_callback.early_warning.trend import TrendFit, forecast_variance, theil_sen

__all__ = ["ScalarScores", "fit_window", "score_scalar", "size_ratio", "speed_ratio", "variance_onset"]


@dataclass(frozen=True)
class ScalarScores:
    """Scores of one observation of a scalar signal.

    Attributes:
        forecast: x̂, the lagged trend's forecast for this observation.
        residual: ``x − x̂``.
        noise: σ̂, the noise scale used.
        z: Standardized residual ``(x − x̂) / (σ̂ √(1 + v))``.
        slope: β, the trend's change per observation.
        variance_ratio: V, the recent detrended increments' trimmed mean square over its reference.
        speed: s, the log ratio of this observation's change to the lagged window's median change.
        size: u, the log ratio of this observation to the larger of the lagged window's median and ``forecast``.
        variance_scale: σ̂_ref, the noise scale V is measured in (``ref = 2σ̂_ref²``).
    """

    forecast: float
    residual: float
    noise: float
    z: float
    slope: float
    variance_ratio: float
    speed: float
    size: float
    variance_scale: float


def fit_window(values: Sequence[float], window: int, lag: int) -> TrendFit:
    """Theil–Sen trend of the lagged window: the ``window`` values ending ``lag`` before the end of ``values``."""
    n = len(values)
    if n < window + lag:
        raise ValueError(f"need at least window + lag = {window + lag} values, got {n}")
    return theil_sen(np.asarray(values[n - lag - window:n - lag], dtype=float))


def speed_ratio(values: Sequence[float], x: float, window: int, lag: int, floor: float) -> float:
    """``ln((|x − values[-1]| + floor) / (median |Δ| of the lagged window + floor))`` (see the module docstring).

    The lagged window is ``values[n − lag − window : n − lag]`` (``n = len(values) ≥ window + lag``), its
    ``window − 1`` increments give the median.
    """
    n = len(values)
    if n < window + lag or window < 2:
        raise ValueError(f"need at least window + lag = {window + lag} values and window >= 2, got {n}, {window}")
    steps = np.abs(np.diff(np.asarray(values[n - lag - window:n - lag], dtype=float)))
    return math.log((abs(x - values[-1]) + floor) / (median(steps) + floor))


def size_ratio(values: Sequence[float], x: float, window: int, lag: int, floor: float,
               forecast: float | None = None) -> float:
    """``ln((x + floor) / (max(forecast, median of the lagged window) + floor))`` (see the module docstring),
    for a non-negative signal such as an update size; the window is the one :func:`speed_ratio` uses, and
    ``forecast`` (``None``: the median alone) the lagged trend's forecast for ``x``."""
    n = len(values)
    if n < window + lag or window < 1:
        raise ValueError(f"need at least window + lag = {window + lag} values and window >= 1, got {n}, {window}")
    typical = median(np.asarray(values[n - lag - window:n - lag], dtype=float))
    expected = abs(typical) if forecast is None else max(abs(typical), forecast)
    return math.log((abs(x) + floor) / (expected + floor))


def score_scalar(
    values: Sequence[float], x: float, fit: TrendFit, noise: float, lag: int, variance_window: int,
    reference_noise: float | None = None, floor: float = 1e-9, reference_increments: int = 0,
) -> ScalarScores:
    """Score ``x`` against the trend ``fit`` of ``values`` (see :func:`fit_window`), with noise ``σ̂ = noise``.

    The variance ratio's reference: with ``reference_increments = R > 0``, the trimmed mean square of the (up to)
    ``R`` detrended increments of ``values`` before the last ``variance_window`` (at least one must exist);
    otherwise ``2σ̂_ref²`` with ``σ̂_ref = reference_noise`` (default ``noise``): pass one measured before the
    increments it is compared with, so that a burst already inside the trend window does not raise its own
    reference. ``floor`` is the ε of the speed ratio and the least σ̂_ref.
    """
    w = fit.residuals.size
    distance = w + lag - fit.center
    forecast = fit.at(w + lag)
    residual = x - forecast
    z = residual / (noise * math.sqrt(1.0 + forecast_variance(w, distance)))
    recent = [*values[len(values) - variance_window:], x]
    squares = sorted((b - a - fit.slope) ** 2 for a, b in itertools.pairwise(recent))
    kept = squares[:-2]  # an isolated outlier makes two large increments, a level shift one
    if reference_increments > 0:
        end = len(values) - variance_window + 1  # the reference ends where the variance window starts
        before = values[max(0, end - 1 - reference_increments):end]
        if len(before) < 2:
            raise ValueError(f"the variance reference needs an increment before the last {variance_window} "
                             f"observations, got {len(values)} values")
        reference_squares = sorted((b - a - fit.slope) ** 2 for a, b in itertools.pairwise(before))
        left_out = len(reference_squares) * 2 // variance_window  # the share the recent window leaves out
        kept_before = reference_squares[:len(reference_squares) - left_out]
        scale = max(math.sqrt(sum(kept_before) / len(kept_before) / 2.0), floor)
    else:
        scale = max(noise if reference_noise is None else reference_noise, floor)
    ratio = sum(kept) / len(kept) / (2.0 * scale * scale)
    speed = speed_ratio(values, x, w, lag, floor)
    size = size_ratio(values, x, w, lag, floor, forecast)
    return ScalarScores(forecast, residual, noise, z, fit.slope, ratio, speed, size, scale)


def variance_onset(points: Sequence[tuple[int, float]], slope: float, noise: float, ratio: float) -> tuple[int, int]:
    """``(onset step, step before it)`` of a noise increase within ``points`` (``(step, value)``, ≥ 2).

    Where the log-likelihood-ratio CUSUM for the variance of the detrended increments growing by
    ``ratio`` last left zero; its increments are ``q − r·ln(r)/(r − 1)`` with ``q = (Δx − β)² / 2σ̂²``
    (mean 1 before the change, ``r`` after).
    """
    r = max(ratio, 1.0 + 1e-6)
    reference = r * math.log(r) / (r - 1.0)
    onset, before = points[1][0], points[0][0]
    total = 0.0
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        previous = total
        total = max(0.0, total + (v1 - v0 - slope) ** 2 / (2.0 * noise * noise) - reference)
        if total > 0.0 and previous == 0.0:
            onset, before = s1, s0
    return onset, before
