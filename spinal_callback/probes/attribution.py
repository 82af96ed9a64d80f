"""Attribution patching: a first-order estimate of every layer's patching effect from one backward.

``ĉ_ℓ = mean_x Σ_t (h_pol,ℓ,t − h_ref,ℓ,t) · ∂m(x)/∂h_ℓ,t``, the gradient taken on the reference run
(Nanda's "attribution patching"; Syed et al., arXiv 2310.10348). It is the linearisation of the
policy → reference effect ``mean_x[m_patched,ℓ − m_ref]`` of
:func:`~spinal_callback.probes.patch_layers` around the reference activations. Residual-stream
patches are large, non-local changes, so the estimate can rank layers poorly; it is therefore
reported with its Spearman rank agreement with an exact probe whenever one is given.

Cost: one no-grad policy forward (the activations to patch in), one reference forward that keeps the
graph from block 1's output on, and one backward through the blocks for all layers at once
(``torch.autograd.grad`` w.r.t. the block outputs only: parameters get no ``.grad``; their
``requires_grad`` flags are switched off for the pass and restored). The logit head's gradient is
taken per token chunk first, so no ``(tokens × V)`` graph is kept for the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..architectures import DecoderLayout
from ._json import json_float, json_list
from .exact import PatchResult, normalize
from .margins import ProbeBatch, pair_margins, validate_probe_batch
from .replicate import capture_edit, run_unpatched
from .runner import BlockEdit, forward_blocks, probe_mode, resolve_layers, resolve_runs

__all__ = ["AttributionResult", "attribution_patching", "rank_agreement"]

_INSTALL = 'Rank agreement needs scipy: pip install "spinal-callback[probes]"'


@dataclass
class AttributionResult:
    """Result of :func:`attribution_patching`.

    Attributes:
        layers: 1-based layers, ascending.
        scores: ``[L]`` ĉ_ℓ, estimates of the policy → reference ``effect_ℓ``.
        normalized_scores: ``[L]`` ``ĉ_ℓ / mean_x[m_policy − m_ref]`` (estimates of ``normalized_effect``).
        spearman: Spearman rank correlation of ``scores`` with the exact ``effect`` over the shared
            layers, or ``None`` (no exact result given, fewer than 2 shared layers, or a constant side).
        margin_base: ``[K]`` reference margins. margin_source: ``[K]`` policy margins.
        forwards: model forwards (1 policy + 1 reference). backwards: backward passes through the
            blocks (1; 0 when only the last layer is scored).
    """

    layers: list[int]
    scores: torch.Tensor
    normalized_scores: torch.Tensor
    spearman: float | None
    margin_base: torch.Tensor
    margin_source: torch.Tensor
    forwards: int
    backwards: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN/±inf become ``None``."""
        return {
            "layers": list(self.layers),
            "scores": json_list(self.scores),
            "normalized_scores": json_list(self.normalized_scores),
            "spearman": json_float(self.spearman),
            "margin_base": json_list(self.margin_base),
            "margin_source": json_list(self.margin_source),
            "forwards": int(self.forwards),
            "backwards": int(self.backwards),
        }


def rank_agreement(layers: Sequence[int], scores: torch.Tensor, exact: PatchResult) -> float | None:
    """Spearman ρ between ``scores`` and ``exact.effect`` over their shared layers (``scipy.stats.spearmanr``).

    Returns ``None`` with fewer than 2 shared layers or when ρ is undefined (a constant side).

    Raises:
        ValueError: ``exact`` is not a policy → reference result (ĉ estimates that direction).
        ImportError: scipy is missing.
    """
    if exact.direction != "policy_to_reference":
        raise ValueError(
            "`exact` must be a patch_layers(..., direction='policy_to_reference') result: attribution "
            f"patching estimates that direction, got direction={exact.direction!r}"
        )
    try:
        from scipy.stats import spearmanr
    except ImportError as error:
        raise ImportError(_INSTALL) from error
    shared = [(i, exact.layers.index(layer)) for i, layer in enumerate(layers) if layer in exact.layers]
    if len(shared) < 2:
        return None
    ours = scores[[i for i, _ in shared]].double().numpy()
    theirs = exact.effect[[j for _, j in shared]].double().numpy()
    rho = float(spearmanr(ours, theirs).statistic)
    return None if rho != rho else rho


def _margin_gradient(
    layout: DecoderLayout, final: torch.Tensor, probe: ProbeBatch, chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``∂M/∂h_L`` for ``M = mean_x m(x)`` and the ``(2K,)`` log-likelihoods, head chunk by head chunk."""
    device, k = final.device, probe.num_pairs
    rows, cols = probe.label_mask.nonzero(as_tuple=True)
    targets = probe.input_ids[rows, cols].to(device)
    rows, cols = rows.to(device), cols.to(device)
    weight = torch.cat([torch.full((k,), 1.0 / k), torch.full((k,), -1.0 / k)]).to(device)
    hidden = final.detach()
    grad = torch.zeros_like(hidden)
    logp_total = torch.zeros(probe.num_rows, dtype=torch.float64, device=device)
    for start in range(0, rows.numel(), chunk_size):
        r, c = rows[start : start + chunk_size], cols[start : start + chunk_size] - 1
        h = hidden[r, c].requires_grad_(True)
        logits = layout.lens_logits(h)
        logp = logits.gather(1, targets[start : start + chunk_size, None]).squeeze(1) - logits.logsumexp(-1)
        (g,) = torch.autograd.grad((logp * weight[r]).sum(), h)
        grad.index_put_((r, c), g.to(grad.dtype), accumulate=True)
        logp_total.index_add_(0, r, logp.detach().double())
    return grad, logp_total


def attribution_patching(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[int] | None = None,
    exact: PatchResult | None = None,
    chunk_size: int = 256,
) -> AttributionResult:
    """Attribution-patching scores of every chosen layer from one forward + one backward of the reference.

    ``ĉ_ℓ = Σ_{rows, t} (h_pol,ℓ,t − h_ref,ℓ,t) · ∂M/∂h_ℓ,t`` with ``M = mean_x m(x)``, i.e.
    ``ĉ_ℓ = mean_x Σ_t (h_pol − h_ref)_{ℓ,t} · ∂m(x)/∂h_{ℓ,t}`` (sum over both sequences of the pair
    and all their positions), gradients on the unpatched reference run in eval mode.

    Args:
        policy, reference, batch, layers, chunk_size: as for :func:`~spinal_callback.probes.patch_layers`.
        exact: a policy → reference :class:`PatchResult` to report the Spearman agreement with.

    Returns:
        An :class:`AttributionResult` (CPU tensors).

    Raises:
        ValueError: as ``patch_layers``; ``exact`` of the other direction.
    """
    probe = validate_probe_batch(batch)
    policy_run, reference_run = resolve_runs(policy, reference)
    blocks = resolve_layers(layers, policy_run.layout.num_layers)
    if exact is not None and exact.direction != "policy_to_reference":
        rank_agreement([], torch.zeros(0), exact)  # raises the direction error
    last = policy_run.layout.num_layers - 1
    params = list(reference_run.module.parameters())
    flags = [p.requires_grad for p in params]
    store: dict[int, torch.Tensor] = {}
    inner = [b for b in blocks if b != last]  # scored through the backward; the last block's grad is direct
    grads: dict[int, torch.Tensor | None] = dict.fromkeys(inner)
    with probe_mode(policy_run, reference_run):
        with torch.no_grad():
            policy_hidden, logp_policy = run_unpatched(policy_run, probe, blocks, chunk_size=chunk_size)
        try:
            for p in params:
                p.requires_grad_(False)
            with torch.enable_grad():

                def first_block(hidden: torch.Tensor) -> torch.Tensor:
                    leaf = hidden.detach().requires_grad_(True)  # the graph starts here
                    store[0] = leaf
                    return leaf

                edits: dict[int, BlockEdit] = {b: capture_edit(store, b, detach=False) for b in blocks}
                edits[0] = first_block
                final = forward_blocks(reference_run, probe.input_ids, probe.attention_mask, edits)
                grad_final, logp_ref = _margin_gradient(reference_run.layout, final, probe, chunk_size)
                if inner:
                    found = torch.autograd.grad(
                        final, [store[b] for b in inner], grad_outputs=grad_final, allow_unused=True
                    )
                    grads = dict(zip(inner, found))
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
    scores = torch.zeros(len(blocks), dtype=torch.float64)
    for i, b in enumerate(blocks):
        g = grad_final if b == last else grads[b]
        if g is not None:
            delta = policy_hidden[b].to(g.device).double() - store[b].detach().double()
            scores[i] = float((delta * g.double()).sum())
    margin_ref = pair_margins(logp_ref).cpu()
    margin_policy = pair_margins(logp_policy).cpu()
    layer_ids = [b + 1 for b in blocks]
    total = (margin_policy - margin_ref).mean()
    return AttributionResult(
        layers=layer_ids,
        scores=scores,
        normalized_scores=normalize(scores, total, margin_ref.abs().mean()),
        spearman=rank_agreement(layer_ids, scores, exact) if exact is not None else None,
        margin_base=margin_ref,
        margin_source=margin_policy,
        forwards=2,
        backwards=1 if inner else 0,
    )
