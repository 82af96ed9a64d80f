"""The periodic patching probe of the monitor: exact, low-rank, LASSO and attribution patching.

One call of :func:`run_patching_probe` runs the "Alignment is Localized" protocol (SPEC §2) between the
policy and its reference on the fixed probe set and returns the trace-file record and the
TensorBoard scalars. The reference is a separate model, or ``None`` for a PEFT policy (its adapter
is disabled for the reference passes).

The unpatched policy and reference runs (every block's output, the margins, and the reference's
margin gradients when attribution patching is on) are computed once
(:func:`~spinal_callback.probes.unpatched.unpatched_runs`) and shared by all the probes: 2 forwards
(+ 1 backward) instead of 2 per probe (10 forwards + 1 backward with everything on), and low-rank
patching takes its full effect from the exact probe instead of re-running the exact patch. The results
are those of the separately called probe functions.

Sharded models (FSDP1, FSDP2): every rank calls :func:`run_patching_probe` with the same batch and
configuration and runs the same forwards in the same order (see :mod:`spinal_callback.model.sharding`);
the low-rank layers are rank 0's choice. The outcome is the same on every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.model.sharding import rank_zero_choice
from spinal_callback.probes.attribution import attribution_patching, rank_agreement
from spinal_callback.probes.exact import PatchResult, patch_layers
from spinal_callback.probes.lasso import lasso_probe
from spinal_callback.probes.low_rank import low_rank_patch
from spinal_callback.probes.unpatched import unpatched_runs

__all__ = ["PatchingOutcome", "run_patching_probe"]


@dataclass
class PatchingOutcome:
    """Results of one patching probe.

    Attributes:
        record: the ``"patch"`` trace-file record (without ``type``/``step``).
        scalars: TensorBoard scalars ``spinal/patch/...``.
        normalized_effect: per-layer normalized effect of policy → reference patching (the heatmap
            column), or empty when that direction was not run.
        notes: human-readable remarks (e.g. why LASSO was skipped).
    """

    record: dict[str, Any] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)
    normalized_effect: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _put(scalars: dict[str, float], tag: str, value: float) -> None:
    if math.isfinite(value):
        scalars[tag] = float(value)


def run_patching_probe(
    policy: nn.Module, reference: nn.Module | None, batch: dict[str, torch.Tensor], config: SpinalConfig
) -> PatchingOutcome:
    """Run the patching probes ``config`` asks for and collect their records and scalars.

    ``config``'s ``patch_directions``, ``patch_low_rank_layers``, ``patch_ranks``, ``patch_lasso`` and
    ``patch_attribution`` say what runs.

    Tags: ``spinal/patch/<direction>/effect/L<ℓ>`` and ``…/normalized_effect/L<ℓ>``;
    ``spinal/patch/low_rank/L<ℓ>/k<k>`` (fraction of the full effect recovered with k directions);
    ``spinal/patch/lasso/L<ℓ>`` (standardized coefficient of the selected layers) and
    ``spinal/patch/lasso/r2``; ``spinal/patch/attribution/L<ℓ>`` and
    ``spinal/patch/attribution/spearman`` (rank agreement with the exact policy → reference probe).
    """
    out = PatchingOutcome()
    unpatched = unpatched_runs(policy, reference, batch, gradients=config.patch_attribution)
    attribution = None
    if config.patch_attribution:  # first, so that the gradients are released before the patched forwards
        attribution = attribution_patching(policy, reference, batch, unpatched=unpatched)
        unpatched.release_gradients()
    exact: dict[str, PatchResult] = {}
    for direction in config.patch_directions:
        result = patch_layers(policy, reference, batch, direction=direction, unpatched=unpatched)  # type: ignore[arg-type]
        exact[direction] = result
        out.record.setdefault("exact", {})[direction] = result.to_dict()
        for i, layer in enumerate(result.layers):
            _put(out.scalars, f"spinal/patch/{direction}/effect/L{layer}", float(result.effect[i]))
            _put(out.scalars, f"spinal/patch/{direction}/normalized_effect/L{layer}",
                 float(result.normalized_effect[i]))
    forward = exact.get("policy_to_reference")
    if forward is not None:
        out.normalized_effect = [float(v) for v in forward.normalized_effect]
        if config.patch_low_rank_layers > 0:
            magnitude = forward.normalized_effect.abs().nan_to_num(nan=-1.0)
            top = magnitude.argsort(descending=True)[: config.patch_low_rank_layers]
            # which layers decides which forwards run: a sharded model's ranks must agree (rank 0's choice)
            layers = rank_zero_choice(sorted(forward.layers[int(i)] for i in top), unpatched.policy_run.sharded)
            low = low_rank_patch(
                policy, reference, batch, layers, ranks=config.patch_ranks, exact=forward, unpatched=unpatched
            )
            out.record["low_rank"] = low.to_dict()
            for i, layer in enumerate(low.layers):
                for j, k in enumerate(low.ranks):
                    _put(out.scalars, f"spinal/patch/low_rank/L{layer}/k{k}", float(low.fraction_recovered[i, j]))
    num_pairs = batch["input_ids"].shape[0] // 2
    if config.patch_lasso:
        if num_pairs < 3:
            out.notes.append(f"LASSO skipped: it needs at least 3 probe pairs, the probe set has {num_pairs}")
        else:
            lasso = lasso_probe(policy, reference, batch, unpatched=unpatched)
            out.record["lasso"] = lasso.to_dict()
            _put(out.scalars, "spinal/patch/lasso/r2", float(lasso.r2))
            for layer, coefficient in zip(lasso.layers, lasso.coefficients.tolist()):
                if layer in lasso.selected_layers:
                    _put(out.scalars, f"spinal/patch/lasso/L{layer}", float(coefficient))
    if attribution is not None:
        if forward is not None:
            attribution.spearman = rank_agreement(attribution.layers, attribution.scores, forward)
        out.record["attribution"] = attribution.to_dict()
        for i, layer in enumerate(attribution.layers):
            _put(out.scalars, f"spinal/patch/attribution/L{layer}", float(attribution.scores[i]))
        if attribution.spearman is not None:
            _put(out.scalars, "spinal/patch/attribution/spearman", float(attribution.spearman))
    if out.notes:
        out.record["notes"] = list(out.notes)
    return out
