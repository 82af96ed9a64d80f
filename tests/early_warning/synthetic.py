"""Synthetic healthy runs and faults for the early-warning tests (and the placeholder calibration).

Healthy families (what healthy DPO signals do: drift for the whole run, of any size and either sign):

- ``linear``: ``x_t = L·(1 + s·p·t/(n − 1))``;
- ``saturating``: ``x_t = L·(1 + s·p·(1 − e^{−t/τ})/(1 − e^{−(n−1)/τ}))``, ``τ ~ U(n/3, n)`` (two thirds or
  more of the change in the first half of the run);
- ``exponential``: ``x_t = L·(1 + s·p·(e^{t/τ} − 1)/(e^{(n−1)/τ} − 1))``, ``τ ~ U(n/2, 2n)`` (accelerating);

with total relative change ``p ~ U(1 %, 20 %)``, sign ``s = ±1``, level ``L = ±10^{U(−1, 2)}`` (log-probs are
large and negative, curvatures small and positive), run length ``n ~ U{60..120}`` probes and Gaussian noise
of standard deviation ``σ = U(0.2 %, 1 %)·|L|``.

Per-layer vectors: ``p`` layers share one drift shape with per-layer sizes (different magnitudes, some of
the opposite sign), and their noise is correlated across layers (a common factor, ρ ≈ 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FAMILIES = ("linear", "saturating", "exponential")


def drift_shape(rng: np.random.Generator, family: str, n: int) -> np.ndarray:
    """A drift going from 0 at t = 0 to 1 at t = n − 1, of the given family."""
    t = np.arange(n, dtype=float)
    if family == "linear":
        return t / (n - 1)
    if family == "saturating":
        tau = rng.uniform(n / 3, n)
        return (1 - np.exp(-t / tau)) / (1 - np.exp(-(n - 1) / tau))
    if family == "exponential":
        tau = rng.uniform(n / 2, 2 * n)
        return (np.exp(t / tau) - 1) / (np.exp((n - 1) / tau) - 1)
    raise ValueError(family)


def healthy_series(rng: np.random.Generator, family: str, n: int | None = None) -> tuple[np.ndarray, float]:
    """``(values, σ)`` of one healthy run of ``family`` (see the module docstring)."""
    n = int(rng.integers(60, 121)) if n is None else n
    level = rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-1, 2)
    change = rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 0.20)
    sigma = rng.uniform(0.002, 0.01) * abs(level)
    mean = level * (1 + change * drift_shape(rng, family, n))
    return mean + sigma * rng.normal(size=n), sigma


def healthy_vectors(rng: np.random.Generator, n: int, layers: int = 8) -> tuple[np.ndarray, float]:
    """``(values n × layers, σ)``: correlated healthy per-layer drift with cross-layer correlated noise."""
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    shape = drift_shape(rng, family, n)
    level = 10 ** rng.uniform(-1, 1)
    sizes = rng.uniform(0.01, 0.20) * rng.uniform(0.3, 1.5, size=layers) * rng.choice([-1.0, 1.0], p=[0.2, 0.8],
                                                                                       size=layers)
    sigma = rng.uniform(0.002, 0.01) * level
    common = rng.normal(size=(n, 1))
    noise = sigma * (np.sqrt(0.5) * common + np.sqrt(0.5) * rng.normal(size=(n, layers)))
    return level * (1 + np.outer(shape, sizes)) + noise, sigma


def healthy_stream(rng: np.random.Generator, signals: Sequence[str], vectors: Sequence[str] = (),
                   layers: int = 8) -> list[tuple]:
    """One healthy multi-signal run as calibration input: ``[(step, {signal: value}, {vector: [...]}), ...]``."""
    n = int(rng.integers(60, 121))
    columns = {name: healthy_series(rng, FAMILIES[int(rng.integers(len(FAMILIES)))], n)[0] for name in signals}
    matrices = {name: healthy_vectors(rng, n, layers)[0] for name in vectors}
    return [(10 * t, {name: float(col[t]) for name, col in columns.items()},
             {name: m[t].tolist() for name, m in matrices.items()}) for t in range(n)]


def linear_with_noise(rng: np.random.Generator, n: int, slope: float, sigma: float = 1.0,
                      level: float = 100.0) -> np.ndarray:
    """``level + slope·t + N(0, σ²)``: the base of the fault tests (slope in units of σ per probe)."""
    return level + slope * sigma * np.arange(n) + sigma * rng.normal(size=n)
