"""The periodic patching probe of the monitor: exact, low-rank, LASSO and attribution patching.

One call of :func:`run_patching_probe` runs the "Alignment is Localized" protocol (SPEC §2) between the
policy and its reference on the fixed probe set and returns the trace-file record and the
TensorBoard scalars. The reference is a separate model, or ``None`` for a PEFT policy (its adapter
is disabled for the reference passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["PatchingOutcome", "PatchingSettings", "run_patching_probe"]


@dataclass(frozen=True)
class PatchingSettings:
    """What one patching probe runs (built from :class:`~spinal_callback.SpinalConfig`)."""

    directions: tuple[str, ...] = ("policy_to_reference", "reference_to_policy")
    low_rank_layers: int = 2
    ranks: tuple[int, ...] | None = None
    lasso: bool = True
    attribution: bool = True


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
    policy: nn.Module, reference: nn.Module | None, batch: dict[str, torch.Tensor], settings: PatchingSettings
) -> PatchingOutcome:
    """Run the configured patching probes and collect their records and scalars.

    Tags: ``spinal/patch/<direction>/effect/L<ℓ>`` and ``…/normalized_effect/L<ℓ>``;
    ``spinal/patch/low_rank/L<ℓ>/k<k>`` (fraction of the full effect recovered with k directions);
    ``spinal/patch/lasso/L<ℓ>`` (standardized coefficient of the selected layers) and
    ``spinal/patch/lasso/r2``; ``spinal/patch/attribution/L<ℓ>`` and
    ``spinal/patch/attribution/spearman`` (rank agreement with the exact policy → reference probe).
    """
    from .probes import attribution_patching, lasso_probe, low_rank_patch, patch_layers

    out = PatchingOutcome()
    exact = {}
    for direction in settings.directions:
        result = patch_layers(policy, reference, batch, direction=direction)  # type: ignore[arg-type]
        exact[direction] = result
        out.record.setdefault("exact", {})[direction] = result.to_dict()
        for i, layer in enumerate(result.layers):
            _put(out.scalars, f"spinal/patch/{direction}/effect/L{layer}", float(result.effect[i]))
            _put(out.scalars, f"spinal/patch/{direction}/normalized_effect/L{layer}",
                 float(result.normalized_effect[i]))
    forward = exact.get("policy_to_reference")
    if forward is not None:
        out.normalized_effect = [float(v) for v in forward.normalized_effect]
        if settings.low_rank_layers > 0:
            magnitude = forward.normalized_effect.abs().nan_to_num(nan=-1.0)
            top = magnitude.argsort(descending=True)[: settings.low_rank_layers]
            layers = sorted(forward.layers[int(i)] for i in top)
            low = low_rank_patch(policy, reference, batch, layers, ranks=settings.ranks)
            out.record["low_rank"] = low.to_dict()
            for i, layer in enumerate(low.layers):
                for j, k in enumerate(low.ranks):
                    _put(out.scalars, f"spinal/patch/low_rank/L{layer}/k{k}", float(low.fraction_recovered[i, j]))
    num_pairs = batch["input_ids"].shape[0] // 2
    if settings.lasso:
        if num_pairs < 3:
            out.notes.append(f"LASSO skipped: it needs at least 3 probe pairs, the probe set has {num_pairs}")
        else:
            lasso = lasso_probe(policy, reference, batch)
            out.record["lasso"] = lasso.to_dict()
            _put(out.scalars, "spinal/patch/lasso/r2", float(lasso.r2))
            for layer, coefficient in zip(lasso.layers, lasso.coefficients.tolist()):
                if layer in lasso.selected_layers:
                    _put(out.scalars, f"spinal/patch/lasso/L{layer}", float(coefficient))
    if settings.attribution:
        attribution = attribution_patching(policy, reference, batch, exact=forward)
        out.record["attribution"] = attribution.to_dict()
        for i, layer in enumerate(attribution.layers):
            _put(out.scalars, f"spinal/patch/attribution/L{layer}", float(attribution.scores[i]))
        if attribution.spearman is not None:
            _put(out.scalars, "spinal/patch/attribution/spearman", float(attribution.spearman))
    if out.notes:
        out.record["notes"] = list(out.notes)
    return out
