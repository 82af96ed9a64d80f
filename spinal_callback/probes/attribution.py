"""Attribution patching: a first-order estimate of every layer's patching effect from one backward.

``ĉ_ℓ = mean_x Σ_t (h_pol,ℓ,t − h_ref,ℓ,t) · ∂m(x)/∂h_ℓ,t``, the gradient taken on the reference run
(Nanda's "attribution patching"; Syed et al., arXiv 2310.10348). It is the linearisation of the
policy → reference effect ``mean_x[m_patched,ℓ − m_ref]`` of
:func:`~spinal_callback.probes.patch_layers` around the reference activations. Residual-stream
patches are large, non-local changes, so the estimate can rank layers poorly; it is therefore
reported with its Spearman rank agreement with an exact probe whenever one is given.

Cost: one no-grad policy forward (the activations to patch in), one reference forward that keeps the
graph from block 1's output on, and one backward through the blocks for all layers at once
(:func:`~spinal_callback.probes.gradients.margin_gradients`: parameters get no ``.grad``). Inside a
patching step all of it comes from the shared unpatched runs
(:func:`~spinal_callback.probes.unpatched.unpatched_runs` with ``gradients=True``): no forward here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spinal_callback.model.pairing import resolve_layers
from spinal_callback.model.runner import probe_mode
from spinal_callback.probes._json import json_float, json_list
from spinal_callback.probes.exact import PatchResult, normalize
from spinal_callback.probes.margins import pair_margins, validate_probe_batch
from spinal_callback.probes.unpatched import UnpatchedRuns, shared_runs, unpatched_or_compute

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


def attribution_patching(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    *,
    layers: Sequence[int] | None = None,
    exact: PatchResult | None = None,
    chunk_size: int = 256,
    unpatched: UnpatchedRuns | None = None,
) -> AttributionResult:
    """Attribution-patching scores of every chosen layer from one forward + one backward of the reference.

    ``ĉ_ℓ = Σ_{rows, t} (h_pol,ℓ,t − h_ref,ℓ,t) · ∂M/∂h_ℓ,t`` with ``M = mean_x m(x)``, i.e.
    ``ĉ_ℓ = mean_x Σ_t (h_pol − h_ref)_{ℓ,t} · ∂m(x)/∂h_{ℓ,t}`` (sum over both sequences of the pair
    and all their positions), gradients on the unpatched reference run in eval mode.

    Args:
        policy, reference, batch, layers, chunk_size: as for :func:`~spinal_callback.probes.patch_layers`.
        exact: a policy → reference :class:`PatchResult` to report the Spearman agreement with.
        unpatched: the shared unpatched runs, computed with ``gradients=True``: no forward here.

    Returns:
        An :class:`AttributionResult` (CPU tensors).

    Raises:
        ValueError: as ``patch_layers``; ``exact`` of the other direction; ``unpatched`` without gradients.
    """
    probe = validate_probe_batch(batch)
    policy_run, reference_run = shared_runs(policy, reference, probe, unpatched)
    blocks = resolve_layers(layers, policy_run.layout.num_layers)
    if exact is not None and exact.direction != "policy_to_reference":
        rank_agreement([], torch.zeros(0), exact)  # raises the direction error
    with probe_mode(policy_run, reference_run):
        runs = unpatched_or_compute(
            unpatched, policy_run, reference_run, probe, blocks, blocks, gradients=True, chunk_size=chunk_size
        )
    grads = runs.reference_grads or {}
    scores = torch.zeros(len(blocks), dtype=torch.float64)
    for i, b in enumerate(blocks):
        g = grads[b]
        if g is not None:
            delta = runs.policy_hidden[b].to(g.device).double() - runs.reference_hidden[b].double()
            scores[i] = float((delta * g.double()).sum())
    margin_ref = pair_margins(runs.reference_logprobs).cpu()
    margin_policy = pair_margins(runs.policy_logprobs).cpu()
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
        backwards=1 if any(b != policy_run.layout.num_layers - 1 for b in blocks) else 0,
    )
