"""The detector's small-window statistics against independent implementations: the median against numpy's, the
Theil–Sen line against scipy's, the noise scale against a known noise level."""

from __future__ import annotations

import numpy as np
import pytest

from spinal_callback.early_warning.robust import median, residual_scale
from spinal_callback.early_warning.trend import theil_sen, theil_sen_columns


@pytest.mark.parametrize("n", [1, 2, 3, 8, 19, 20, 21, 190])
def test_median_equals_numpys(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(20):
        values = rng.standard_t(3, size=n)
        assert median(values) == float(np.median(values))
    assert median(np.full(n, 2.5)) == 2.5
    with pytest.raises(ValueError, match="empty"):
        median(np.array([]))


def test_theil_sen_matches_scipy_and_its_column_form() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(7)
    matrix = np.cumsum(rng.normal(size=(20, 5)), axis=0) + 0.3 * np.arange(20)[:, None]
    levels, slopes, residuals = theil_sen_columns(matrix)
    for column in range(5):
        fit = theil_sen(matrix[:, column])
        slope, _, _, _ = stats.theilslopes(matrix[:, column], np.arange(20))
        assert fit.slope == pytest.approx(slope, rel=1e-12)
        assert (fit.level, fit.slope) == pytest.approx((levels[column], slopes[column]), rel=1e-12)
        assert np.allclose(fit.residuals, residuals[:, column])
    again = theil_sen(matrix[:, 0])  # the cached pair indices are reused, not changed
    assert again.slope == theil_sen(matrix[:, 0]).slope


def test_residual_scale_recovers_a_known_noise_level() -> None:
    rng = np.random.default_rng(3)
    estimates = [residual_scale(rng.normal(0.0, 0.5, size=20)) for _ in range(2000)]
    assert np.median(estimates) == pytest.approx(0.5, rel=0.05)
