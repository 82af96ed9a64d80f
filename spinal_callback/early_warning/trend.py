"""Robust linear trends on short windows, and how far their forecasts can be trusted.

The early-warning detector compares each new observation with the forecast of a trend fitted on a
*lagged* window of its own history: positions ``i = 0..W−1`` (observation index, not optimizer step, so a
rollback that keeps the step counter running does not stretch the time axis), centre ``c = (W − 1)/2``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from spinal_callback.early_warning.robust import median

__all__ = ["TrendFit", "forecast_variance", "theil_sen", "theil_sen_columns"]

#: Asymptotic efficiency of the Theil–Sen slope relative to least squares on Gaussian noise.
_SLOPE_EFFICIENCY = 0.91


@dataclass(frozen=True)
class TrendFit:
    """A line ``x̂(i) = level + slope · (i − center)`` fitted on a window, with the window's residuals.

    Attributes:
        level: α, the fitted value at the window centre.
        slope: β, change per observation.
        center: c, the window centre ``(W − 1)/2``.
        residuals: ``e_i = x_i − x̂(i)``, one per window position.
    """

    level: float
    slope: float
    center: float
    residuals: np.ndarray

    def at(self, position: float) -> float:
        """The trend's value at ``position`` (window start = 0; the window's end is ``W − 1``)."""
        return self.level + self.slope * (position - self.center)


@functools.lru_cache(maxsize=32)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, j − i, positions − centre)`` for a window of ``n``: the pairs ``i < j`` and the centred positions,
    built once per window length (the detector fits the same length at every reading). Read-only."""
    i, j = np.triu_indices(n, 1)
    arrays = (i, j, (j - i).astype(float), np.arange(n) - (n - 1) / 2.0)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def theil_sen(values: np.ndarray) -> TrendFit:
    """Theil–Sen line through ``values`` at positions ``0..W−1``.

    ``β = median_{i<j} (x_j − x_i)/(j − i)`` (Sen 1968) and ``α = median_i (x_i − β(i − c))``. The slope
    resists up to ~29 % of the points being outliers, so the first observations of a change entering the
    window barely move it.

    Args:
        values: ``W ≥ 2`` finite values.
    """
    y = np.asarray(values, dtype=float)
    n = y.size
    i, j, gaps, positions = _pairs(n)
    slope = median((y[j] - y[i]) / gaps)
    center = (n - 1) / 2.0
    level = median(y - slope * positions)
    return TrendFit(level, slope, center, y - level - slope * positions)


def theil_sen_columns(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`theil_sen` on every column of a ``W × p`` matrix at once.

    Returns:
        ``(levels, slopes, residuals)``: ``(p,)``, ``(p,)`` and ``(W, p)`` arrays; ``center = (W − 1)/2``.
    """
    y = np.asarray(matrix, dtype=float)
    n = y.shape[0]
    i, j, gaps, centred = _pairs(n)
    slopes = np.median((y[j] - y[i]) / gaps[:, None], axis=0)
    positions = centred[:, None]
    levels = np.median(y - slopes * positions, axis=0)
    return levels, slopes, y - levels - slopes * positions


def forecast_variance(window: int, distance: float) -> float:
    """Variance of a Theil–Sen forecast ``distance`` positions from the window centre, in units of σ².

    For least squares it is ``1/W + D²/S_xx`` with ``S_xx = W(W² − 1)/12``; the Theil–Sen level (a median)
    and slope are less efficient (2/π and ≈ 0.91), so

    ``v(W, D) = π/(2W) + D² / (0.91 · S_xx)``.

    A new observation's deviation from the forecast then has standard deviation ``σ·√(1 + v)``.
    """
    sxx = window * (window * window - 1) / 12.0
    return math.pi / (2.0 * window) + distance * distance / (_SLOPE_EFFICIENCY * sxx)
