"""Exact layer patching between a policy and its reference ("Alignment is Localized", arXiv 2510.16167).

Preference margin ``m(x) = log π(y⁺|x) − log π(y⁻|x)`` (completion log-likelihoods, see
:mod:`spinal_callback.probes.margins`). Patching layer ℓ runs a *base* model with block ℓ's output
replaced, at every position, by the *source* model's block-ℓ output on the same batch:

- ``"policy_to_reference"``: base = reference, source = policy.
  ``effect_ℓ = mean_x [m_patched,ℓ − m_ref]``, ``normalized_effect_ℓ = effect_ℓ / mean_x [m_policy − m_ref]``.
- ``"reference_to_policy"``: base = policy, source = reference.
  ``effect_ℓ = mean_x [m_patched,ℓ − m_policy]``, ``normalized_effect_ℓ = effect_ℓ / mean_x [m_ref − m_policy]``.

Sign convention, both directions: ``effect`` is the margin change of the *patched* model relative to
its own unpatched margin, and ``normalized_effect`` is the fraction of the source-minus-base margin
gap that layer ℓ alone transfers — 1 means the patched base reaches the source's margin, 0 means
no change. After DPO, ``m_policy > m_ref`` usually; then a policy → reference effect is positive
(the layer carries preference) and a reference → policy effect is negative (putting the reference's
layer back removes preference), while both normalized effects are positive. When the two models share
their final norm and unembedding (LoRA adapters on the blocks, a frozen head), patching the last
layer at every position transfers everything: ``normalized_effect_L = 1`` in both directions; when
the heads differ, ``1 − normalized_effect_L`` is the head's own share of the gap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from spinal_callback.model.pairing import resolve_layers
from spinal_callback.model.runner import probe_mode
from spinal_callback.probes._json import json_float, json_list
from spinal_callback.probes.margins import pair_margins, validate_probe_batch
from spinal_callback.probes.replicate import PatchSpec, exact_replacement, plan_patches, run_patches
from spinal_callback.probes.unpatched import UnpatchedRuns, shared_runs, unpatched_or_compute

__all__ = ["DIRECTIONS", "Direction", "PatchResult", "normalize", "patch_layers"]

Direction = Literal["policy_to_reference", "reference_to_policy"]
#: Allowed values of ``direction``.
DIRECTIONS: tuple[str, ...] = ("policy_to_reference", "reference_to_policy")


def normalize(effect: torch.Tensor, total: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``effect / total``, NaN where ``|total| ≤ 1e-6 · max(1, scale)`` (no gap to normalize by)."""
    if float(total.abs()) <= 1e-6 * max(1.0, float(scale)):
        return torch.full_like(effect, float("nan"))
    return effect / total


@dataclass
class PatchResult:
    """Result of :func:`patch_layers`.

    Attributes:
        layers: patched layers, 1-based, ascending.
        effect: ``[L]`` mean margin change of the patched base model, ``mean_x[m_patched,ℓ − m_base]``.
        normalized_effect: ``[L]`` ``effect_ℓ / mean_x[m_source − m_base]`` (NaN when the source and
            base margins coincide).
        per_example: ``[L, K]`` per-pair margin gains ``m_patched,ℓ − m_base``.
        margin_base: ``[K]`` margins of the unpatched base model (reference for ``policy_to_reference``).
        margin_source: ``[K]`` margins of the source model (policy for ``policy_to_reference``).
        direction: ``"policy_to_reference"`` or ``"reference_to_policy"``.
        forwards: model forwards used (2 unpatched + the patched ones).
        forward_equivalents: Σ rows × blocks computed / (2K × number of blocks) — the compute spent,
            in units of one full forward of the batch (logit head excluded).
    """

    layers: list[int]
    effect: torch.Tensor
    normalized_effect: torch.Tensor
    per_example: torch.Tensor
    margin_base: torch.Tensor
    margin_source: torch.Tensor
    direction: str
    forwards: int
    forward_equivalents: float = float("nan")

    @property
    def total_effect(self) -> float:
        """``mean_x[m_source − m_base]``, the gap ``normalized_effect`` divides by."""
        return float((self.margin_source - self.margin_base).mean())

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN/±inf become ``None``."""
        return {
            "direction": self.direction,
            "layers": list(self.layers),
            "effect": json_list(self.effect),
            "normalized_effect": json_list(self.normalized_effect),
            "per_example": json_list(self.per_example),
            "margin_base": json_list(self.margin_base),
            "margin_source": json_list(self.margin_source),
            "total_effect": json_float(self.total_effect),
            "forwards": int(self.forwards),
            "forward_equivalents": json_float(self.forward_equivalents),
        }


def check_direction(direction: object) -> str:
    """Return ``direction`` if it is one of :data:`DIRECTIONS`, else raise ``ValueError``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return str(direction)


def patch_layers(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    direction: Direction = "policy_to_reference",
    *,
    layers: Sequence[int] | None = None,
    max_rows_per_forward: int | None = None,
    reuse_prefix: bool = True,
    chunk_size: int = 256,
    unpatched: UnpatchedRuns | None = None,
) -> PatchResult:
    """Exact activation patching of every chosen layer, batched.

    For each layer ℓ, the base model runs with block ℓ's output replaced at every position by the
    source model's block-ℓ output (see the module docstring for base/source and the sign convention):
    ``effect_ℓ = mean_x[m_patched,ℓ − m_base]``, ``normalized_effect_ℓ = effect_ℓ / mean_x[m_source − m_base]``,
    with ``m = Σ_{t∈y⁺} log π(y⁺_t | ·) − Σ_{t∈y⁻} log π(y⁻_t | ·)``.

    Cost: one forward of the source (recording its block outputs), one of the base (neither with
    ``unpatched``, which holds them), then the ``len(layers) × 2K`` patched rows as a replicated batch
    in which block ℓ's hook replaces only the rows assigned to ℓ, cut into forwards of at most
    ``max_rows_per_forward`` rows. With ``reuse_prefix`` a patched forward computes only the blocks
    above its lowest patched block ℓ_min, starting from the base's recorded block-ℓ_min output with
    ℓ_min's patches applied (see :mod:`spinal_callback.probes.replicate`); there is no host sync between
    layers. Forwards stop after the last block; log-probabilities are gathered from the model's own head
    in chunks of ``chunk_size`` tokens. All forwards are no-grad and in eval mode; train/eval flags are
    restored exactly. Memory: the source's ``(2K, T, d)`` outputs of every patched layer and the base's
    at the chunks' first blocks, plus the activations of one patched forward.

    Args:
        policy: the policy (a Hugging Face causal LM; PEFT-, DDP- or compile-wrapped too, or sharded with
            FSDP1 / FSDP2 — then call this on every rank with the same arguments; see
            :mod:`~spinal_callback.model.sharding`).
        reference: the reference model, or ``None`` for the PEFT policy with its adapter disabled
            (policy activations are taken with the adapter on, reference ones with it off).
        batch: ``input_ids``, ``attention_mask``, ``completion_mask``, each ``(2K, T)``: K prompt+chosen
            rows then K prompt+rejected rows (TRL's collator layout).
        direction: ``"policy_to_reference"`` (patch policy activations into the reference) or
            ``"reference_to_policy"``.
        layers: 1-based layers to patch; ``None`` for all decoder blocks.
        max_rows_per_forward: cap on the replicated rows of one patched forward (memory bound: one
            patched forward holds the activations of this many rows); ``None``: two layers (4K rows)
            per forward with ``reuse_prefix`` (near the compute floor, see
            :mod:`~spinal_callback.probes.replicate`), else all ``len(layers) × 2K`` rows in one forward.
        reuse_prefix: skip the unpatched blocks below each patched forward's lowest layer.
        chunk_size: scored tokens per logit-head call.
        unpatched: the unpatched runs of these models on this batch, shared with the other probes of
            the same step (:func:`~spinal_callback.probes.unpatched.unpatched_runs`): the source's
            outputs, the base's prefix outputs and both margins are taken from it instead of two
            forwards here. The result is the same; its ``forwards`` still counts the 2 unpatched ones.

    Returns:
        A :class:`PatchResult` (CPU tensors).

    Raises:
        ValueError: unknown ``direction``; malformed batch or a pair with an empty completion;
            incompatible policy and reference; ``reference=None`` with a non-PEFT policy; bad ``layers``;
            ``unpatched`` of other models, of another batch or lacking blocks; a DeepSpeed ZeRO-3 model.
    """
    direction = check_direction(direction)  # type: ignore[assignment]
    probe = validate_probe_batch(batch)
    policy_run, reference_run = shared_runs(policy, reference, probe, unpatched)
    blocks = resolve_layers(layers, policy_run.layout.num_layers)
    base, source = (reference_run, policy_run) if direction == "policy_to_reference" else (policy_run, reference_run)
    plan = plan_patches(blocks, probe.num_rows, max_rows=max_rows_per_forward, reuse_prefix=reuse_prefix)
    with probe_mode(policy_run, reference_run), torch.no_grad():
        wanted = (blocks, plan.prefix_blocks) if source is policy_run else (plan.prefix_blocks, blocks)
        runs = unpatched_or_compute(unpatched, policy_run, reference_run, probe, *wanted, chunk_size=chunk_size)
        device = base.device
        source_hidden = {b: runs.hidden(source)[b].to(device) for b in blocks}
        specs = [PatchSpec(b, exact_replacement(source_hidden[b])) for b in blocks]
        logp_patched, forwards, block_rows = run_patches(
            base, probe, specs, plan, runs.hidden(base), chunk_size=chunk_size
        )
        logp_base, logp_source = runs.logprobs(base), runs.logprobs(source)
    margin_base = pair_margins(logp_base).cpu()
    margin_source = pair_margins(logp_source).cpu()
    per_example = pair_margins(logp_patched).cpu() - margin_base
    effect = per_example.mean(dim=1)
    total = (margin_source - margin_base).mean()
    num_blocks = policy_run.layout.num_layers
    return PatchResult(
        layers=[b + 1 for b in blocks],
        effect=effect,
        normalized_effect=normalize(effect, total, margin_base.abs().mean()),
        per_example=per_example,
        margin_base=margin_base,
        margin_source=margin_source,
        direction=direction,
        forwards=2 + forwards,
        forward_equivalents=(block_rows + 2 * probe.num_rows * num_blocks) / (probe.num_rows * num_blocks),
    )
