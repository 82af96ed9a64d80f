"""Spectral metrics of a layer's token representations: contraction α_ℓ and effective rank.

Both start from the singular values of the token-centred hidden states ``H_ℓ ∈ R^{n×d}``, computed
in float64 from the eigenvalues of the smaller Gram matrix (``H Hᵀ`` or ``Hᵀ H``), so TF32 and
low-precision activations never enter the spectrum.
"""

from __future__ import annotations

import math

import torch

__all__ = ["centered_spectrum", "contraction_from_spectrum", "contraction_score", "effective_rank",
           "effective_rank_from_spectrum"]

_NAN = float("nan")


def _check_hidden(hidden: torch.Tensor) -> None:
    if not isinstance(hidden, torch.Tensor):
        raise TypeError(f"`hidden` must be a torch.Tensor, got {type(hidden).__name__}")
    if hidden.ndim != 2:
        raise ValueError(
            f"`hidden` must be a 2-D (tokens, features) tensor, got shape {tuple(hidden.shape)}; "
            "flatten batch and sequence dimensions first"
        )


def centered_spectrum(hidden: torch.Tensor) -> torch.Tensor:
    """Singular values ``σ_1 ≥ … ≥ σ_r`` (``r = min(n, d)``) of ``H`` centred over tokens, in float64.

    Returns an empty tensor for an empty matrix and NaNs when ``H`` holds non-finite values.
    """
    _check_hidden(hidden)
    n, d = hidden.shape
    if n == 0 or d == 0:
        return torch.empty(0, dtype=torch.float64, device=hidden.device)
    x = hidden.detach().to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        return torch.full((min(n, d),), _NAN, dtype=torch.float64, device=hidden.device)
    if bool((x == x[:1]).all()):
        # Identical rows centre to exactly zero; ``x - mean`` would leave ~1e-16 rounding noise that the
        # metrics would read as one direction (effective rank 1 instead of NaN).
        return torch.zeros(min(n, d), dtype=torch.float64, device=hidden.device)
    x = x - x.mean(dim=0, keepdim=True)
    gram = x @ x.T if n <= d else x.T @ x
    eig = torch.linalg.eigvalsh(gram)  # ascending
    return eig.flip(0).clamp_min(0.0).sqrt()


def contraction_from_spectrum(
    sigma: torch.Tensor, tail: tuple[float, float] = (0.1, 0.9), rtol: float = 1e-6
) -> torch.Tensor:
    """α from a descending spectrum: minus the least-squares slope of log σ_k on log k.

    The fit uses ``k ∈ [⌈a·r⌉, ⌊b·r⌋]`` (1-based, ``(a, b) = tail``, ``r = len(sigma)``) and only
    ``σ_k ≥ rtol·σ_1``. NaN if fewer than 5 points remain.
    """
    a, b = tail
    r = sigma.numel()
    nan = torch.tensor(_NAN, dtype=torch.float64, device=sigma.device)
    if r == 0 or not bool(torch.isfinite(sigma).all()) or float(sigma[0]) <= 0.0:
        return nan
    lo = max(1, math.ceil(a * r))
    hi = min(r, math.floor(b * r))
    if hi < lo:
        return nan
    k = torch.arange(lo, hi + 1, dtype=torch.float64, device=sigma.device)
    s = sigma[lo - 1 : hi].to(torch.float64)
    keep = s >= rtol * sigma[0]
    keep &= s > 0
    if int(keep.sum()) < 5:
        return nan
    x, y = k[keep].log(), s[keep].log()
    x = x - x.mean()
    slope = (x * (y - y.mean())).sum() / (x * x).sum()
    return -slope


def contraction_score(
    hidden: torch.Tensor, tail: tuple[float, float] = (0.1, 0.9), rtol: float = 1e-6
) -> torch.Tensor:
    """Contraction score α_ℓ (SPINAL): spectral tail decay of a layer's token representations.

    With ``σ_1 ≥ … ≥ σ_r`` the singular values of the token-centred ``H_ℓ`` (``r = min(n, d)``)::

        α_ℓ = − argmin_s Σ_{k ∈ K} (log σ_k − s·log k − c)²,   K = {k : ⌈a r⌉ ≤ k ≤ ⌊b r⌋, σ_k ≥ rtol·σ_1}

    A power-law spectrum ``σ_k ∝ k^(−a)`` gives ``α = a``. Higher α = faster tail decay = the layer
    contracts its tokens into fewer directions.

    Args:
        hidden: ``(n, d)`` hidden states of one layer at the selected tokens.
        tail: ``(a, b)`` window of the tail fit as fractions of ``r``.
        rtol: singular values below ``rtol·σ_1`` are dropped from the fit.

    Returns:
        A float64 scalar tensor; NaN (never an exception) if fewer than 5 points remain — one token,
        a zero matrix, non-finite input.
    """
    return contraction_from_spectrum(centered_spectrum(hidden), tail=tail, rtol=rtol)


def effective_rank_from_spectrum(sigma: torch.Tensor) -> torch.Tensor:
    """RankMe from a spectrum: ``exp(−Σ_k p_k log p_k)``, ``p_k = σ_k / Σσ + 1e-7``."""
    total = sigma.sum()
    if sigma.numel() == 0 or not bool(torch.isfinite(total)) or float(total) <= 0.0:
        return torch.tensor(_NAN, dtype=torch.float64, device=sigma.device)
    p = sigma / total + 1e-7
    return torch.exp(-(p * p.log()).sum())


def effective_rank(hidden: torch.Tensor) -> torch.Tensor:
    """Effective rank (RankMe; Garrido et al. 2023) of the token-centred hidden states.

    ``erank(H_ℓ) = exp(−Σ_k p_k log p_k)`` with ``p_k = σ_k / Σ_j σ_j + 1e-7``.

    Args:
        hidden: ``(n, d)`` hidden states of one layer.

    Returns:
        A float64 scalar tensor in ``[1, min(n, d)]`` (up to the 1e-7 smoothing); NaN for a zero
        matrix, a single token or non-finite input.
    """
    return effective_rank_from_spectrum(centered_spectrum(hidden))
