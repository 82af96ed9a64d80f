"""Robust location / scale estimates for short series, as used by the early-warning detector.

Pure functions on lists of floats (no numpy needed); the constants are those of Gaussian noise, so on
well-behaved data every estimate is of the standard deviation σ.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

__all__ = ["median_standard_error", "robust_scale", "step_noise"]

#: σ = 1.4826 · MAD for a Gaussian.
MAD_TO_SIGMA = 1.4826
#: σ = √(π/2) · E|x − μ| = 1.2533 · E|x − μ| for a Gaussian.
MEAN_AD_TO_SIGMA = math.sqrt(math.pi / 2.0)
_TRIM = 0.2  # fraction of the largest differences step_noise leaves out
_Q = statistics.NormalDist().inv_cdf(1.0 - _TRIM / 2.0)  # the 80% quantile of |N(0, 1)|
_PDF = statistics.NormalDist().pdf
#: E[|Δx| given |Δx| below its 80% quantile] / σ for iid Gaussian noise (Δx ~ N(0, 2σ²)).
_TRIMMED_ABS_DIFF = math.sqrt(2.0) * 2.0 * (_PDF(0.0) - _PDF(_Q)) / (1.0 - _TRIM)


def small_sample_factor(n: int) -> float:
    """Small-sample correction ``n / (n − 0.8)`` of a MAD-type scale from ``n`` values (Croux & Rousseeuw)."""
    return n / (n - 0.8)


def median_standard_error(n: int) -> float:
    """Standard error of the median of ``n`` Gaussian values, in units of σ: ``√(π/2) / √n = 1.253/√n``."""
    return math.sqrt(math.pi / 2.0) / math.sqrt(n)


def robust_scale(values: Sequence[float], center: float, min_scale: float, min_scale_rel: float) -> float:
    """σ̂: the spread a new observation should have around the baseline median ``center``.

    ``σ̂ = max(s · n/(n − 0.8) · √(1 + π/2n), min_scale, min_scale_rel·|center|)`` with
    ``s = max(1.4826·MAD, 1.2533·mean|x − center|)``. The MAD is the robust estimate; the mean absolute
    deviation guards a short baseline whose values happen to cluster (an outlier can only make σ̂ larger,
    i.e. the detector more cautious). ``n/(n − 0.8)`` corrects the small-sample bias, ``√(1 + π/2n)``
    adds the uncertainty of the median itself, and the floors keep a flat baseline from turning tiny
    changes into infinite z-scores.

    Args:
        values: Baseline observations (at least one).
        center: Their median.
        min_scale: Absolute floor (> 0).
        min_scale_rel: Floor relative to ``|center|``.
    """
    n = len(values)
    deviations = [abs(v - center) for v in values]
    spread = max(MAD_TO_SIGMA * statistics.median(deviations), MEAN_AD_TO_SIGMA * statistics.fmean(deviations))
    sigma = spread * small_sample_factor(n) * math.sqrt(1.0 + math.pi / (2.0 * n))
    return max(sigma, min_scale, min_scale_rel * abs(center))


def step_noise(values: Sequence[float]) -> float:
    """Step-to-step noise σ of a series, from its successive differences Δx.

    The mean of the smallest 80% of ``|Δx|`` (the largest 20%, at least one, are left out: one isolated
    outlier makes two large differences, a level shift one), divided by its expectation for iid Gaussian
    noise, ``√2 · 2(φ(0) − φ(z₀.₉)) / 0.8 · σ``. 0.0 for fewer than 3 values.
    """
    if len(values) < 3:
        return 0.0
    diffs = sorted(abs(b - a) for a, b in itertools.pairwise(values))
    keep = len(diffs) - max(1, round(_TRIM * len(diffs)))
    return statistics.fmean(diffs[:keep]) / _TRIMMED_ABS_DIFF
