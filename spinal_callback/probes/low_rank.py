"""Low-rank patching: how few directions of a layer carry its patching effect (arXiv 2510.16167).

At layer ℓ the reference runs with its block output replaced by ``h_ref + P_k (h_pol − h_ref)``, where
``P_k = V_k V_kᵀ`` projects onto the top-k right singular vectors of the policy activations at ℓ,
``H_pol,ℓ`` (every real token of the 2K probe sequences, float64). The recovered fraction is
``effect_ℓ(k) / effect_ℓ(full)`` with ``effect = mean_x[m_patched − m_ref]`` (policy → reference) and
"full" the exact patch of :func:`~spinal_callback.probes.patch_layers` (``P = I``).

**Uncentered by default.** ``P_k`` acts on difference vectors ``h_pol − h_ref`` that live in the
residual stream, whose activations carry a large common (mean) component; the top uncentered singular
directions span that mean direction as well as the spread around it, i.e. the directions where the
policy's activations actually are. Centering (``center=True``) ranks directions by variance around
the mean instead (principal components — closer to "k directions, ~15 % of the variance"), and may
leave the mean shift out of ``P_k`` for small k. Either way ``P_d = I``: k = d recovers the full effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spinal_callback.model.pairing import resolve_layers
from spinal_callback.model.runner import probe_mode
from spinal_callback.probes._json import json_list
from spinal_callback.probes.exact import PatchResult, normalize
from spinal_callback.probes.margins import ProbeBatch, pair_margins, validate_probe_batch
from spinal_callback.probes.replicate import PatchSpec, exact_replacement, plan_patches, run_patches
from spinal_callback.probes.unpatched import UnpatchedRuns, shared_runs, unpatched_or_compute

__all__ = ["LowRankResult", "default_ranks", "low_rank_patch", "top_directions"]


@dataclass
class LowRankResult:
    """Result of :func:`low_rank_patch` (policy → reference).

    Attributes:
        layers: patched layers, 1-based, ascending.
        ranks: the k values, ascending (the last one is d when the default ranks are used).
        effect: ``[len(layers), len(ranks)]`` ``mean_x[m_patched,ℓ,k − m_ref]``.
        full_effect: ``[len(layers)]`` effect of the exact (full-rank) patch.
        fraction_recovered: ``effect / full_effect`` (NaN where the full effect is ~0).
        variance_explained: ``[len(layers), len(ranks)]`` ``Σ_{i≤k} σ_i² / Σ_i σ_i²`` of the policy
            activations (uncentered or centered, as ``centered``).
        normalized_full_effect: ``[len(layers)]`` ``full_effect / mean_x[m_policy − m_ref]``.
        margin_base: ``[K]`` reference margins. margin_source: ``[K]`` policy margins.
        centered: whether the singular vectors are those of the centered activations.
        forwards: model forwards used.
    """

    layers: list[int]
    ranks: list[int]
    effect: torch.Tensor
    full_effect: torch.Tensor
    fraction_recovered: torch.Tensor
    variance_explained: torch.Tensor
    normalized_full_effect: torch.Tensor
    margin_base: torch.Tensor
    margin_source: torch.Tensor
    centered: bool
    forwards: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN/±inf become ``None``."""
        return {
            "layers": list(self.layers),
            "ranks": list(self.ranks),
            "effect": json_list(self.effect),
            "full_effect": json_list(self.full_effect),
            "fraction_recovered": json_list(self.fraction_recovered),
            "variance_explained": json_list(self.variance_explained),
            "normalized_full_effect": json_list(self.normalized_full_effect),
            "margin_base": json_list(self.margin_base),
            "margin_source": json_list(self.margin_source),
            "centered": self.centered,
            "forwards": int(self.forwards),
        }


def default_ranks(dim: int) -> list[int]:
    """``[1, 2, 4, 8, …] + [d]``: the powers of two below ``dim``, then ``dim`` itself."""
    ranks, k = [], 1
    while k < dim:
        ranks.append(k)
        k *= 2
    return [*ranks, dim]


def top_directions(hidden: torch.Tensor, *, center: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Right singular vectors and squared singular values of ``hidden`` (``n × d``), largest first.

    Computed from the eigendecomposition of the ``d × d`` Gram matrix ``HᵀH`` in float64, so that all
    d directions exist even when n < d (the null-space ones complete an orthonormal basis: ``V Vᵀ = I``).

    Returns:
        ``(V, s2)``: ``V`` ``(d, d)`` float64 with columns in decreasing ``s2`` order, ``s2`` ``(d,)``.
    """
    h = hidden.detach().double()
    if center:
        h = h - h.mean(dim=0, keepdim=True)
    values, vectors = torch.linalg.eigh(h.T @ h)
    return vectors.flip(-1), values.flip(-1).clamp_min(0)


def _real_tokens(hidden: torch.Tensor, probe: ProbeBatch) -> torch.Tensor:
    mask = probe.attention_mask.bool().to(hidden.device)
    return hidden[mask]


def _exact_effects(exact: PatchResult, blocks: Sequence[int]) -> torch.Tensor:
    """``exact.effect`` at the 0-based ``blocks``, float64 (raises ``ValueError`` when it cannot serve)."""
    missing = [b + 1 for b in blocks if b + 1 not in exact.layers]
    if exact.direction != "policy_to_reference" or missing:
        raise ValueError(
            "`exact` must be a patch_layers(..., direction='policy_to_reference') result covering `layers`, "
            f"got direction={exact.direction!r} with layers {exact.layers} (missing {missing})"
        )
    return exact.effect[[exact.layers.index(b + 1) for b in blocks]].double()


def low_rank_patch(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    layers: Sequence[int],
    *,
    ranks: Sequence[int] | None = None,
    center: bool = False,
    max_rows_per_forward: int | None = None,
    reuse_prefix: bool = True,
    chunk_size: int = 256,
    exact: PatchResult | None = None,
    unpatched: UnpatchedRuns | None = None,
) -> LowRankResult:
    """Patch ``h_ref + P_k (h_pol − h_ref)`` into the reference at each chosen layer, for each k.

    ``fraction_recovered_ℓ(k) = mean_x[m_patched,ℓ,k − m_ref] / mean_x[m_patched,ℓ,full − m_ref]``;
    ``P_k = V_k V_kᵀ`` from the top-k right singular vectors of the policy activations at ℓ over all
    real tokens of the batch (see the module docstring for centering).

    Batched like :func:`~spinal_callback.probes.patch_layers`: all (layer, k) experiments plus the
    exact patch of each layer are rows of replicated batches; 2 unpatched forwards + the patched ones.
    With ``exact`` the full effect is taken from it (no exact patch here), with ``unpatched`` the two
    unpatched runs.

    Args:
        policy, reference, batch: as for :func:`~spinal_callback.probes.patch_layers`.
        layers: 1-based layers to study.
        ranks: the k values (each in 1..d); default :func:`default_ranks` of the hidden size d.
        center: use the singular vectors of the centered policy activations.
        max_rows_per_forward, reuse_prefix, chunk_size, unpatched: as for ``patch_layers``.
        exact: a policy → reference :class:`~spinal_callback.probes.PatchResult` of these models and
            batch covering ``layers``; its ``effect`` is the full effect.

    Returns:
        A :class:`LowRankResult` (CPU tensors).

    Raises:
        ValueError: as ``patch_layers``; a rank outside 1..d; ``exact`` of the other direction or
            missing one of ``layers``.
    """
    probe = validate_probe_batch(batch)
    policy_run, reference_run = shared_runs(policy, reference, probe, unpatched)
    blocks = resolve_layers(layers, policy_run.layout.num_layers)
    full = _exact_effects(exact, blocks) if exact is not None else None
    with probe_mode(policy_run, reference_run), torch.no_grad():
        # the plan's prefix blocks are among `blocks`
        runs = unpatched_or_compute(unpatched, policy_run, reference_run, probe, blocks, blocks, chunk_size=chunk_size)
        dim = runs.policy_hidden[blocks[0]].shape[-1]
        ks = sorted({int(k) for k in ranks}) if ranks is not None else default_ranks(dim)
        if not ks or ks[0] < 1 or ks[-1] > dim:
            raise ValueError(f"`ranks` must be integers in 1..{dim} (the hidden size), got {ranks!r}")
        device = reference_run.device
        policy_hidden = {b: runs.policy_hidden[b].to(device) for b in blocks}
        specs: list[PatchSpec] = []
        explained = torch.zeros(len(blocks), len(ks), dtype=torch.float64)
        for i, b in enumerate(blocks):
            vectors, s2 = top_directions(_real_tokens(policy_hidden[b], probe), center=center)
            explained[i] = (s2.cumsum(0) / s2.sum().clamp_min(1e-300))[torch.tensor(ks) - 1].cpu()
            if full is None:
                specs.append(PatchSpec(b, exact_replacement(policy_hidden[b])))
            for k in ks:
                v = vectors[:, :k].to(device=device, dtype=torch.float32)

                def project(h: torch.Tensor, rows: torch.Tensor, b: int = b, v: torch.Tensor = v) -> torch.Tensor:
                    delta = policy_hidden[b].index_select(0, rows).float() - h.float()
                    return h.float() + (delta @ v) @ v.T

                specs.append(PatchSpec(b, project))
        plan = plan_patches(
            [s.block for s in specs], probe.num_rows, max_rows=max_rows_per_forward, reuse_prefix=reuse_prefix
        )
        logp_patched, forwards, _ = run_patches(
            reference_run, probe, specs, plan, runs.reference_hidden, chunk_size=chunk_size
        )
        logp_policy, logp_ref = runs.policy_logprobs, runs.reference_logprobs
    margin_ref = pair_margins(logp_ref).cpu()
    margin_policy = pair_margins(logp_policy).cpu()
    effect = (pair_margins(logp_patched).cpu() - margin_ref).mean(dim=1).view(len(blocks), -1)
    if full is None:  # the first spec of each layer is its exact patch
        full, effect = effect[:, 0], effect[:, 1:]
    fraction = torch.stack([normalize(effect[i], full[i], margin_ref.abs().mean()) for i in range(len(blocks))])
    total = (margin_policy - margin_ref).mean()
    return LowRankResult(
        layers=[b + 1 for b in blocks],
        ranks=ks,
        effect=effect,
        full_effect=full,
        fraction_recovered=fraction,
        variance_explained=explained,
        normalized_full_effect=normalize(full, total, margin_ref.abs().mean()),
        margin_base=margin_ref,
        margin_source=margin_policy,
        centered=center,
        forwards=2 + forwards,
    )
