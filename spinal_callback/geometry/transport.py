"""Transport 𝓛_ℓ and lens entropy: statistics of logit-lens next-token distributions.

The Fisher–Rao distance between two categorical distributions is ``2·arccos(BC)``, with the
Bhattacharyya coefficient ``BC(p, q) = Σ_v √(p_v q_v)``; it lies in ``[0, π]``: 0 for identical
distributions, π for disjoint supports. ``BC`` is computed in log space,
``log BC = logsumexp(½(log p + log q))``, after renormalising each row in float64 — a float32
``log_softmax`` sums to one only within ~1e-7, which alone would put ~1e-3 of spurious distance
between a distribution and itself.
"""

from __future__ import annotations

import torch

__all__ = ["fisher_rao_distance", "lens_entropy", "transport_score"]


def _check_pair(logp: torch.Tensor, logq: torch.Tensor) -> None:
    for name, t in (("logp", logp), ("logq", logq)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim == 0:
            raise ValueError(f"`{name}` must have a vocabulary dimension, got a scalar")
    if logp.shape[-1] != logq.shape[-1]:
        raise ValueError(
            f"Vocabularies differ: `logp` has {logp.shape[-1]} entries per row, `logq` has "
            f"{logq.shape[-1]}; both distributions must be over the same vocabulary"
        )
    if logp.shape != logq.shape:
        raise ValueError(f"`logp` shape {tuple(logp.shape)} differs from `logq` shape {tuple(logq.shape)}")


def _normalised(logp: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.log_softmax(logp.detach().to(dtype), dim=-1)


def fisher_rao_distance(
    logp: torch.Tensor, logq: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Row-wise Fisher–Rao distance between categorical distributions given as log-probabilities.

    ``d_FR(p, q) = 2·arccos(BC(p, q))``, ``log BC = logsumexp_v(½(log p_v + log q_v))``, ``BC``
    clamped to ``[0, 1]``.

    Args:
        logp: ``(..., V)`` log-probabilities (``-inf`` allowed for zero mass).
        logq: same shape as ``logp``.
        dtype: precision of the computation (rows are renormalised in it).

    Returns:
        ``(...)`` distances in ``[0, π]``, in ``dtype``.

    Raises:
        ValueError: the two inputs differ in vocabulary size or shape.
    """
    _check_pair(logp, logq)
    return _fisher_rao(_normalised(logp, dtype), _normalised(logq, dtype))


def _fisher_rao(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    bc = torch.logsumexp(0.5 * (lp + lq), dim=-1).exp().clamp(0.0, 1.0)
    return 2.0 * torch.arccos(bc)


def transport_score(logp: torch.Tensor, logq: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Transport 𝓛_ℓ (SPINAL): mean Fisher–Rao step between two layers' lens distributions.

    ``𝓛_ℓ = mean_t 2·arccos(BC(p_{ℓ,t}, p_{ℓ+1,t}))`` over the rows ``t`` of ``logp`` (layer ℓ) and
    ``logq`` (layer ℓ+1). Returns a scalar in ``[0, π]``; NaN for zero rows.
    """
    return fisher_rao_distance(logp, logq, dtype=dtype).reshape(-1).mean()


def lens_entropy(logp: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Lens entropy E_ℓ = mean_t −Σ_v p_{ℓ,t}(v) log p_{ℓ,t}(v), in nats.

    Args:
        logp: ``(..., V)`` log-probabilities; rows are renormalised in ``dtype``.

    Returns:
        A scalar in ``[0, log V]``; NaN for zero rows.
    """
    if not isinstance(logp, torch.Tensor) or logp.ndim == 0:
        raise ValueError("`logp` must be a tensor with a vocabulary dimension")
    return _row_entropy(_normalised(logp, dtype)).reshape(-1).mean()


def _row_entropy(lp: torch.Tensor) -> torch.Tensor:
    # p·log p with p = 0 (log p = -inf) counted as 0: clamping -inf to the dtype's minimum gives 0·min = 0
    # in one pass, where a mask + where would take three.
    return -(lp.exp() * lp.clamp_min(torch.finfo(lp.dtype).min)).sum(dim=-1)


def lens_row_statistics(
    lp_prev: torch.Tensor | None, lp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-row entropy of ``lp`` and, if given, Fisher–Rao distance from ``lp_prev``.

    Both inputs must already be float64-normalised log-probabilities (see :func:`normalise_logits`).
    """
    entropy = _row_entropy(lp)
    if lp_prev is None:
        return entropy, None
    return entropy, _fisher_rao(lp_prev, lp)


def normalise_logits(logits: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Log-probabilities of (float32) lens logits, normalised in ``dtype``.

    One ``log_softmax`` in ``dtype`` of the float32 logits: the same distribution as a float32
    ``log_softmax`` renormalised in ``dtype``, in one pass instead of two.
    """
    return torch.log_softmax(logits.float().to(dtype), dim=-1)
