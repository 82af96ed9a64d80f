"""Contraction score α_ℓ and effective rank on matrices with exactly known spectra (SPEC §1.1, §1.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinal_callback.geometry import centered_spectrum, contraction_score, effective_rank


def _orthonormal_columns(rows: int, cols: int, gen: torch.Generator, center: bool) -> torch.Tensor:
    x = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    if center:  # columns orthogonal to the all-ones vector, so token-centring leaves them alone
        x = x - x.mean(dim=0, keepdim=True)
    q, _ = torch.linalg.qr(x)
    return q


def with_spectrum(sigma: torch.Tensor, n: int, d: int, seed: int = 0) -> torch.Tensor:
    """``H = U diag(σ) Vᵀ`` (``n × d``, float64) whose token-centred singular values are exactly ``σ``.

    ``U``'s columns are orthogonal to the all-ones vector, so at most ``n − 1`` values fit.
    """
    k = sigma.numel()
    assert k <= min(n - 1, d)
    gen = torch.Generator().manual_seed(seed)
    u = _orthonormal_columns(n, k, gen, center=True)
    v = _orthonormal_columns(d, k, gen, center=False)
    return (u * sigma.to(torch.float64)) @ v.T


def power_law(r: int, a: float) -> torch.Tensor:
    return torch.arange(1, r + 1, dtype=torch.float64) ** (-a)


# --------------------------------------------------------------------------------------- contraction
@pytest.mark.parametrize("shape", [(400, 64), (64, 400)], ids=["tall", "wide"])
@pytest.mark.parametrize("a", [0.5, 1.0, 2.0, 3.0])
def test_contraction_recovers_power_law_exponent(shape: tuple[int, int], a: float) -> None:
    n, d = shape
    r = min(n, d)
    # A wide matrix loses one direction to centring (σ_64 = 0); the default window ⌊0.9·64⌋ = 57 skips it.
    k = min(r, n - 1)
    hidden = with_spectrum(power_law(k, a), n, d)
    spectrum = centered_spectrum(hidden)
    assert spectrum.shape == (r,)
    torch.testing.assert_close(spectrum[:k], power_law(k, a), rtol=1e-4, atol=1e-9)
    # With rtol=1e-6 even a = 3 keeps the whole window: 57^-3 ≈ 5.4e-6 ≥ 1e-6.
    alpha = contraction_score(hidden)
    assert alpha.dtype == torch.float64 and alpha.ndim == 0
    assert float(alpha) == pytest.approx(a, rel=2e-3)


def test_contraction_is_scale_invariant_and_dtype_independent() -> None:
    hidden = with_spectrum(power_law(63, 1.5), 200, 63 + 1)
    base = float(contraction_score(hidden))
    assert float(contraction_score(hidden * 1e3)) == pytest.approx(base, rel=1e-9)
    assert float(contraction_score(hidden.float())) == pytest.approx(base, rel=1e-3)
    assert float(contraction_score(hidden + 7.0)) == pytest.approx(base, rel=1e-6)  # a common offset


def test_contraction_rtol_drops_points_below_the_floor() -> None:
    """a = 4 over r = 64: σ_k ≥ 1e-6·σ_1 only for k ≤ 31, which still leaves 25 window points."""
    hidden = with_spectrum(power_law(64, 4.0), 400, 64)
    assert float(contraction_score(hidden)) == pytest.approx(4.0, rel=2e-3)
    # With rtol = 1e-3 only k ≤ 5 survive, all outside the window [7, 57]: fewer than 5 points.
    assert math.isnan(float(contraction_score(hidden, rtol=1e-3)))


def test_contraction_fits_only_the_tail_window() -> None:
    """Slow decay (a = 0.5) in the head, fast decay (a = 2) past k = 32: the window picks the slope."""
    k = torch.arange(1, 65, dtype=torch.float64)
    knee = 32.0
    sigma = torch.where(k <= knee, k**-0.5, knee**-0.5 * (k / knee) ** -2.0)
    hidden = with_spectrum(sigma, 400, 64)
    assert float(contraction_score(hidden, tail=(0.6, 0.95))) == pytest.approx(2.0, rel=1e-3)
    assert float(contraction_score(hidden, tail=(0.02, 0.45))) == pytest.approx(0.5, rel=1e-3)
    # The default window straddles the knee: a value strictly between the two slopes.
    default = float(contraction_score(hidden))
    assert 0.5 * 1.05 < default < 2.0 * 0.95


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param(torch.randn(1, 16), id="one-token"),
        pytest.param(torch.zeros(50, 16), id="zero-matrix"),
        pytest.param(torch.randn(16).repeat(50, 1), id="constant-rows-f32"),
        pytest.param(torch.full((7, 64), 0.1, dtype=torch.float64), id="constant-rows-f64"),
        pytest.param((torch.randn(64, dtype=torch.float64) * 3.7).repeat(333, 1), id="constant-f64-rand"),
        pytest.param(torch.randn(6, 3), id="too-few-points"),  # r = 3: window [1, 2]
        pytest.param(torch.randn(0, 8), id="empty"),
        pytest.param(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]).repeat(10, 4), id="nan"),
        pytest.param(torch.randn(40, 16).index_fill_(0, torch.tensor([3]), float("inf")), id="inf"),
    ],
)
def test_contraction_degenerate_inputs_give_nan(hidden: torch.Tensor) -> None:
    assert math.isnan(float(contraction_score(hidden)))


def test_contraction_fewer_than_five_window_points_is_nan_and_five_is_not() -> None:
    # r = 6 with window (0.1, 1.0) gives k ∈ [1, 6]; dropping σ_6 to zero leaves exactly 5 points.
    five = with_spectrum(torch.tensor([1.0, 0.5, 0.33, 0.25, 0.2]), 40, 6)
    assert math.isfinite(float(contraction_score(five, tail=(0.1, 1.0))))
    four = with_spectrum(torch.tensor([1.0, 0.5, 0.33, 0.25]), 40, 6)
    assert math.isnan(float(contraction_score(four, tail=(0.1, 1.0))))


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4), ()])
def test_contraction_rejects_non_2d_input_naming_the_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re_escape_shape(shape)):
        contraction_score(torch.randn(shape))
    with pytest.raises(ValueError, match=re_escape_shape(shape)):
        effective_rank(torch.randn(shape))


def re_escape_shape(shape: tuple[int, ...]) -> str:
    import re

    return re.escape(str(tuple(shape)))


# ------------------------------------------------------------------------------------ effective rank
def numpy_effective_rank(hidden: np.ndarray) -> float:
    x = hidden.astype(np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(x, compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("shape", [(50, 20), (20, 50), (200, 32), (5, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_effective_rank_matches_numpy(shape: tuple[int, int], seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    # Anisotropic features, so the spectrum is not flat.
    hidden = torch.randn(shape, generator=gen) * torch.logspace(0, -2, shape[1]) + 3.0
    expected = numpy_effective_rank(hidden.numpy())
    got = effective_rank(hidden)
    assert got.dtype == torch.float64 and got.ndim == 0
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_effective_rank_of_k_equal_singular_values_is_k(k: int) -> None:
    hidden = with_spectrum(torch.full((k,), 2.5), 300, 64, seed=k)
    got = float(effective_rank(hidden))
    # p = 1/k + 1e-7 on the k equal values and 1e-7 on the 64 − k zero ones.
    p = np.array([1 / k + 1e-7] * k + [1e-7] * (64 - k))
    # (rel 1e-5: the Gram-eigenvalue route leaves ~1e-8·σ_1 in the zero singular values.)
    assert got == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-5)
    assert got == pytest.approx(k, rel=2e-4)


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param(torch.zeros(30, 8), id="zero-matrix"),
        pytest.param(torch.randn(1, 8), id="one-token"),
        pytest.param(torch.randn(8).repeat(30, 1), id="constant-rows"),
        pytest.param((torch.randn(64, dtype=torch.float64) * 3.7).repeat(100, 1), id="constant-rows-f64"),
        pytest.param(torch.full((4, 4), float("nan")), id="nan"),
    ],
)
def test_effective_rank_degenerate_inputs_give_nan(hidden: torch.Tensor) -> None:
    assert math.isnan(float(effective_rank(hidden)))


# ------------------------------------------------------------------------------------- token order
@pytest.mark.parametrize("shape", [(120, 32), (24, 64)])
def test_spectral_metrics_ignore_token_order(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(shape, generator=gen) * torch.logspace(0, -1.5, shape[1])
    perm = torch.randperm(shape[0], generator=gen)
    shuffled = hidden[perm]
    assert not torch.equal(hidden, shuffled)
    assert float(contraction_score(shuffled)) == pytest.approx(float(contraction_score(hidden)), rel=1e-6)
    assert float(effective_rank(shuffled)) == pytest.approx(float(effective_rank(hidden)), rel=1e-6)


def test_spectrum_is_float64_descending_and_ignores_gradients() -> None:
    hidden = torch.randn(30, 10, requires_grad=True)
    sigma = centered_spectrum(hidden)
    assert sigma.dtype == torch.float64 and not sigma.requires_grad
    assert bool((sigma[:-1] >= sigma[1:]).all())
    expected = np.linalg.svd(
        hidden.detach().double().numpy() - hidden.detach().double().numpy().mean(0), compute_uv=False
    )
    np.testing.assert_allclose(sigma.numpy(), expected, rtol=1e-6, atol=1e-8)
