"""Transport 𝓛_ℓ and lens entropy: statistics of logit-lens next-token distributions.

The Fisher–Rao distance between two categorical distributions is ``2·arccos(BC)``, with the
Bhattacharyya coefficient ``BC(p, q) = Σ_v √(p_v q_v)``; it lies in ``[0, π]``: 0 for identical
distributions, π for disjoint supports. Near ``BC ≈ 1`` the arccos is ill-conditioned (an error ε in
``BC`` becomes ``2·√(2ε)`` of distance), so the distance is evaluated through the Hellinger distance
of the unit vectors ``√p`` and ``√q``, which is the same number::

    2·arccos(BC) = 4·arcsin(‖√p − √q‖₂ / 2),        ‖√p − √q‖₂² = 2 − 2·BC.

The difference ``√p − √q`` is formed elementwise, so identical distributions give exactly 0 and nearby
ones keep their relative accuracy; this makes float32 exact to ~1e-6 rad (see ``docs/metrics.md``).

Every row of logits ``x`` is reduced, by a few elementwise kernels, to unnormalised
square-root probabilities ``q = exp(½(x − max x)) ∝ √p`` and two cascade row sums ``Z = Σq²`` and
``Σq²·log q``; entropy and distance follow from them in closed form (float64 per row). Neither
depends on the normalisation of ``q``, so no ``log_softmax`` normaliser enters: a float32
``log_softmax`` over V = 152k can be off by ~4e-5 in its sum (sequential accumulation), which would
alone put ~4e-4 nats into the entropy; the cascade sums are exact to ~1e-7.
"""

from __future__ import annotations

import math

import torch

__all__ = ["fisher_rao_distance", "lens_entropy", "transport_score"]

_HALF_SQRT2 = math.sqrt(2.0) / 2.0  # ‖√p − √q‖/2 for disjoint supports (BC = 0): the clamp of BC ≥ 0
_HALF_LOG2E = 0.5 / math.log(2.0)  # exp(½u) = 2^(u·½·log₂e)


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


def sqrt_prob_rows(
    x: torch.Tensor, q_out: torch.Tensor, scratch: torch.Tensor, sums: torch.Tensor
) -> None:
    """Square-root probabilities of logit rows, up to a per-row factor, and the row sums they need.

    With ``m = max_v x_v`` and ``y = ½·log₂(e)·(x − m)`` (``-inf`` clamped to the dtype's minimum, so
    ``0·y = 0``), writes ``q = 2^y = exp(½(x − m)) = √p · exp(½(lse(x) − m))`` to ``q_out``
    (``max_v q_v = 1``) and ``(Z, T, m)`` to ``sums``, where ``Z = Σ_v q_v²`` and ``T = Σ_v q_v² y_v``
    are cascade sums (torch's ``sum``). ``exp2`` is used because it is the fastest exact exponential.

    Args:
        x: ``(k, V)`` logits or log-probabilities (any row offset); left unchanged unless it is ``q_out``.
        q_out: ``(k, V)`` output; may be ``x`` itself.
        scratch: ``(2, k, V)`` work space of ``x``'s dtype.
        sums: ``(3, k)`` output.
    """
    y, work = scratch[0], scratch[1]
    m = sums[2].unsqueeze(-1)
    torch.amax(x, dim=-1, keepdim=True, out=m)
    torch.sub(x, m, out=y)
    y.mul_(_HALF_LOG2E).clamp_min_(torch.finfo(y.dtype).min)
    torch.exp2(y, out=q_out)
    torch.mul(q_out, q_out, out=work)
    torch.sum(work, dim=-1, out=sums[0])
    torch.sum(work.mul_(y), dim=-1, out=sums[1])


def row_entropy(sums: torch.Tensor) -> torch.Tensor:
    """Entropy ``−Σ p log p`` of each row from :func:`sqrt_prob_rows`'s ``(Z, T, m)``, in float64.

    ``p_v = q_v²/Z`` and ``ln q_v = y_v·ln 2``, so ``E = ln Z − 2·ln 2·T/Z``: two non-negative terms
    (``Z ≥ 1``, ``T ≤ 0``), both invariant to how ``x`` is offset or normalised.
    """
    z, t = sums[0].double(), sums[1].double()
    return z.log() - (2.0 * math.log(2.0)) * t / z


def hellinger_sq_rows(
    q_prev: torch.Tensor, z_prev: torch.Tensor, q: torch.Tensor, z: torch.Tensor, work: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """``Z_prev·‖√p_prev − √p‖²`` per row, into ``out``: the squared norm of ``q_prev − r·q``, ``r = √(Z_prev/Z)``.

    ``√p = q/√Z``, so ``‖√p_prev − √p‖ = ‖q_prev − r·q‖ / √Z_prev``: the difference is formed
    elementwise (one ``addcmul``) and summed with a cascade sum — no cancellation near ``p_prev = p``.
    """
    ratio = torch.div(z_prev, z).sqrt_().neg_().unsqueeze(-1)
    torch.addcmul(q_prev, q, ratio, out=work)
    torch.sum(work.square_(), dim=-1, out=out)


def fisher_rao_from_hellinger(hellinger_sq: torch.Tensor, z_prev: torch.Tensor) -> torch.Tensor:
    """``4·arcsin(‖√p_prev − √p‖/2)`` in float64, the norm clamped to ``√2`` (i.e. ``BC ≥ 0``)."""
    half_norm = (hellinger_sq.double() / z_prev.double()).sqrt() / 2.0
    return 4.0 * torch.asin(half_norm.clamp(max=_HALF_SQRT2))


def _rows(logp: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, sums)`` of :func:`sqrt_prob_rows` for ``logp`` flattened to rows, computed in ``dtype``."""
    x = logp.detach().to(dtype).reshape(-1, logp.shape[-1])
    q = torch.empty_like(x)
    sums = torch.empty(3, x.shape[0], dtype=dtype, device=x.device)
    sqrt_prob_rows(x, q, torch.empty((2, *x.shape), dtype=dtype, device=x.device), sums)
    return q, sums


def fisher_rao_distance(
    logp: torch.Tensor, logq: torch.Tensor, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Row-wise Fisher–Rao distance between categorical distributions given as log-probabilities.

    ``d_FR(p, q) = 2·arccos(BC(p, q))`` with ``BC = Σ_v √(p_v q_v)`` clamped to ``[0, 1]``, evaluated
    in the equivalent, well-conditioned form ``4·arcsin(‖√p − √q‖₂ / 2)``. Rows are renormalised
    (any per-row offset of the inputs is ignored).

    Args:
        logp: ``(..., V)`` log-probabilities (``-inf`` allowed for zero mass).
        logq: same shape as ``logp``.
        dtype: precision of the computation; float32 is exact to ~1e-6 rad.

    Returns:
        ``(...)`` distances in ``[0, π]``, in float64 when ``dtype`` is float64, else in ``dtype``.

    Raises:
        ValueError: the two inputs differ in vocabulary size or shape.
    """
    _check_pair(logp, logq)
    qp, sp = _rows(logp, dtype)
    qq, sq = _rows(logq, dtype)
    h2 = torch.empty_like(sp[0])
    hellinger_sq_rows(qp, sp[0], qq, sq[0], torch.empty_like(qp), h2)
    return fisher_rao_from_hellinger(h2, sp[0]).to(dtype).reshape(logp.shape[:-1])


def transport_score(logp: torch.Tensor, logq: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Transport 𝓛_ℓ (SPINAL): mean Fisher–Rao step between two layers' lens distributions.

    ``𝓛_ℓ = mean_t 2·arccos(BC(p_{ℓ,t}, p_{ℓ+1,t}))`` over the rows ``t`` of ``logp`` (layer ℓ) and
    ``logq`` (layer ℓ+1), each distance computed as in :func:`fisher_rao_distance`. Returns a scalar in
    ``[0, π]``; NaN for zero rows.
    """
    return fisher_rao_distance(logp, logq, dtype=dtype).reshape(-1).mean()


def lens_entropy(logp: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Lens entropy E_ℓ = mean_t −Σ_v p_{ℓ,t}(v) log p_{ℓ,t}(v), in nats.

    Computed as ``ln Z − 2·ln 2·T/Z`` from the square-root probabilities (see :func:`row_entropy`):
    zero-mass entries (``-inf``) contribute 0, and the result does not depend on how well the input
    rows are normalised.

    Args:
        logp: ``(..., V)`` log-probabilities; rows are renormalised in ``dtype``.
        dtype: precision of the computation; float32 is exact to ~1e-6 nats.

    Returns:
        A scalar in ``[0, log V]``; NaN for zero rows.
    """
    if not isinstance(logp, torch.Tensor) or logp.ndim == 0:
        raise ValueError("`logp` must be a tensor with a vocabulary dimension")
    _, sums = _rows(logp, dtype)
    return row_entropy(sums).to(dtype).reshape(-1).mean()

