"""Cross-layer pattern score: Hotelling T² of the per-layer residual vector (shrinkage covariance).

Each component of a per-layer vector (e.g. transport 𝓛_ℓ of every late-band layer) gets its own lagged
Theil–Sen trend, exactly like a scalar signal; the residuals of the new vector against those forecasts,
``r = v − v̂``, are then judged *jointly*. Healthy training moves the layers together (the per-layer trends
absorb a common drift of any size, and the residual covariance learns how the layers' noise co-varies);
a change of the cross-layer pattern — some layers moving against the others, even with the band mean
unchanged — puts ``r`` in a direction the covariance calls unlikely.

``T² = rᵀ (Σ̂ (1 + v))⁻¹ r`` with Σ̂ the Ledoit–Wolf shrinkage covariance of the window's residuals
(scikit-learn's ``LedoitWolf`` estimator, scaled by ``W/(W − 2)`` for the fitted trends) and ``1 + v`` the forecast
variance factor of :func:`~spinal_callback.early_warning.trend.forecast_variance`. Shrinkage keeps Σ̂
invertible when the band has more layers than the window has observations.

The score is dimension-free: the Wilson–Hilferty transform of ``T²/p`` (``p`` layers), a normal score
when ``T² ~ χ²_p``, so one threshold serves bands of any size:

``score = ((T²/p)^{1/3} − (1 − 2/(9p))) / √(2/(9p))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinal_callback.early_warning.trend import forecast_variance, theil_sen_columns

__all__ = ["PatternScores", "pattern_score", "require_pattern_support", "wilson_hilferty"]

_MISSING_SKLEARN = (
    "the cross-layer PATTERN_CHANGE test (DetectorConfig.vectors) needs scikit-learn: "
    'pip install "spinal-callback[probes]" (or set DetectorConfig(vectors=()))'
)


def require_pattern_support() -> Any:
    """Return scikit-learn's Ledoit–Wolf estimator (``sklearn.covariance.ledoit_wolf``, the function form of
    ``LedoitWolf``: no precision matrix), or raise ``ImportError`` saying what to install."""
    try:
        from sklearn.covariance import ledoit_wolf
    except ImportError:
        raise ImportError(_MISSING_SKLEARN) from None
    return ledoit_wolf


def _shrunk_covariance(residuals: np.ndarray) -> np.ndarray:
    import sklearn

    ledoit_wolf = require_pattern_support()
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):  # checked finite already
        covariance, _ = ledoit_wolf(residuals)
    return np.atleast_2d(covariance)


@dataclass(frozen=True)
class PatternScores:
    """Scores of one vector observation.

    Attributes:
        t2: Hotelling T².
        score: Wilson–Hilferty normal score of ``T²/p``.
        forecast: Per-component trend forecasts ``v̂``.
        standardized: Per-component residuals ``r_i / √((Σ̂(1 + v))_ii)``.
    """

    t2: float
    score: float
    forecast: np.ndarray
    standardized: np.ndarray


def wilson_hilferty(t2: float, p: int) -> float:
    """Normal score of ``T²`` with ``p`` degrees of freedom: ``((T²/p)^{1/3} − 1 + 2/9p) / √(2/9p)``."""
    a = 2.0 / (9.0 * p)
    return ((max(t2, 0.0) / p) ** (1.0 / 3.0) - (1.0 - a)) / math.sqrt(a)


def pattern_score(window: np.ndarray, vector: np.ndarray, lag: int, min_scale: float) -> PatternScores:
    """T² of ``vector`` against per-component Theil–Sen forecasts from ``window`` (``W × p``), ``lag``
    observations after the window's end.

    Raises:
        ImportError: scikit-learn is not installed.
    """
    w = window.shape[0]
    levels, slopes, residuals = theil_sen_columns(window)
    distance = (w + lag) - (w - 1) / 2.0
    forecast = levels + slopes * distance
    r = np.asarray(vector, dtype=float) - forecast
    p = r.size
    cov = _shrunk_covariance(residuals) * (w / (w - 2.0))
    cov = cov * (1.0 + forecast_variance(w, distance))
    ridge = max(min_scale * min_scale, 1e-12 * float(np.trace(cov)) / p)
    cov = cov + ridge * np.eye(p)
    t2 = float(r @ np.linalg.solve(cov, r))
    return PatternScores(t2, wilson_hilferty(t2, p), forecast, r / np.sqrt(np.diag(cov)))
