"""The unpatched policy and reference runs of a probe batch, computed once and shared by the probes.

Every patching probe starts from the same two unpatched runs: the policy's and the reference's block
outputs on the probe batch and their completion log-likelihoods (hence the margins). Exact patching
patches one side's block outputs into the other and starts its patched forwards from the base's
recorded outputs (prefix reuse); low-rank patching projects the policy's outputs; the LASSO measures
the distance of the two sides' outputs; attribution patching dots ``h_pol − h_ref`` with the
reference's margin gradients. :func:`unpatched_runs` computes all of it in one forward per side (the
reference's with a graph and one backward when the gradients are asked for), and each probe function
accepts the result as ``unpatched=`` instead of running its own forwards; without it, a probe computes
just what it needs itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from spinal_callback.model.pairing import resolve_runs
from spinal_callback.model.runner import ModelRun, probe_mode
from spinal_callback.model.sharding import probe_root
from spinal_callback.model.sharding_rules import check_patching_sharding
from spinal_callback.probes.gradients import margin_gradients
from spinal_callback.probes.margins import ProbeBatch, validate_probe_batch
from spinal_callback.probes.replicate import run_unpatched

__all__ = [
    "UnpatchedRuns",
    "compute_unpatched",
    "patching_runs",
    "shared_runs",
    "unpatched_or_compute",
    "unpatched_runs",
]


@dataclass
class UnpatchedRuns:
    """The unpatched policy and reference runs of one probe batch (tensors on each model's device).

    Valid while the models' weights are unchanged: compute it once per patching step, not across steps.

    Attributes:
        policy_run: the policy side (its :class:`~spinal_callback.model.runner.ModelRun`, shared so that
            what a forward learnt about the blocks — bare-tensor outputs — serves the patched forwards).
        reference_run: the reference side.
        probe: the validated probe batch.
        policy_hidden: 0-based block index → the policy's block output ``(2K, T, d)``.
        reference_hidden: the same for the reference.
        policy_logprobs: ``(2K,)`` float64 completion log-likelihoods of the policy.
        reference_logprobs: the same for the reference.
        reference_grads: block index → ``∂M/∂h_ref`` (``M = mean_x m(x)``; ``None`` where unused), or
            ``None`` when the gradients were not computed (or were released).
        forwards: model forwards spent (one per side). backwards: backward passes spent (0 or 1).
    """

    policy_run: ModelRun
    reference_run: ModelRun
    probe: ProbeBatch
    policy_hidden: dict[int, torch.Tensor]
    reference_hidden: dict[int, torch.Tensor]
    policy_logprobs: torch.Tensor
    reference_logprobs: torch.Tensor
    reference_grads: dict[int, torch.Tensor | None] | None = None
    forwards: int = 2
    backwards: int = 0

    def hidden(self, run: ModelRun) -> dict[int, torch.Tensor]:
        """The block outputs of ``run`` (one of :attr:`policy_run`, :attr:`reference_run`)."""
        return self.policy_hidden if run is self.policy_run else self.reference_hidden

    def logprobs(self, run: ModelRun) -> torch.Tensor:
        """The completion log-likelihoods of ``run`` (one of :attr:`policy_run`, :attr:`reference_run`)."""
        return self.policy_logprobs if run is self.policy_run else self.reference_logprobs

    def require(
        self, policy_blocks: Iterable[int] = (), reference_blocks: Iterable[int] = (), *, gradients: bool = False
    ) -> None:
        """Raise ``ValueError`` unless these 0-based blocks (and the reference gradients) were recorded."""
        sides = (("policy", policy_blocks, self.policy_hidden), ("reference", reference_blocks, self.reference_hidden))
        missing = [f"{side} block {b + 1}" for side, want, held in sides for b in sorted(set(want)) if b not in held]
        if gradients and self.reference_grads is None:
            missing.append("the reference's margin gradients (unpatched_runs(..., gradients=True))")
        elif gradients and self.reference_grads is not None:
            missing += [f"the gradient at block {b + 1}" for b in sorted(set(reference_blocks))
                        if b not in self.reference_grads]
        if missing:
            raise ValueError(f"`unpatched` lacks {', '.join(missing)}; compute it with unpatched_runs(...) "
                             "on the same models and batch")

    def release_gradients(self) -> None:
        """Drop the reference gradients (their memory) once attribution patching has used them."""
        self.reference_grads = None


def compute_unpatched(
    policy_run: ModelRun,
    reference_run: ModelRun,
    probe: ProbeBatch,
    *,
    policy_blocks: Iterable[int],
    reference_blocks: Iterable[int],
    gradients: bool = False,
    chunk_size: int = 256,
) -> UnpatchedRuns:
    """One unpatched forward per side, recording the given 0-based blocks' outputs.

    Call inside :func:`~spinal_callback.model.runner.probe_mode`. The policy forward is no-grad; the
    reference forward keeps a graph and is followed by one backward when ``gradients`` is set
    (:func:`~spinal_callback.probes.gradients.margin_gradients`), else it is no-grad too.
    """
    policy_blocks, reference_blocks = sorted(set(policy_blocks)), sorted(set(reference_blocks))
    with torch.no_grad():
        policy_hidden, policy_logp = run_unpatched(policy_run, probe, policy_blocks, chunk_size=chunk_size)
    grads: dict[int, torch.Tensor | None] | None = None
    backwards = 0
    if gradients:
        found = margin_gradients(reference_run, probe, reference_blocks, chunk_size=chunk_size)
        reference_hidden, reference_logp, grads, backwards = found.hidden, found.logprobs, found.grads, found.backwards
    else:
        with torch.no_grad():
            reference_hidden, reference_logp = run_unpatched(
                reference_run, probe, reference_blocks, chunk_size=chunk_size
            )
    return UnpatchedRuns(
        policy_run=policy_run,
        reference_run=reference_run,
        probe=probe,
        policy_hidden=policy_hidden,
        reference_hidden=reference_hidden,
        policy_logprobs=policy_logp,
        reference_logprobs=reference_logp,
        reference_grads=grads,
        forwards=2,
        backwards=backwards,
    )


def unpatched_or_compute(
    unpatched: UnpatchedRuns | None,
    policy_run: ModelRun,
    reference_run: ModelRun,
    probe: ProbeBatch,
    policy_blocks: Iterable[int],
    reference_blocks: Iterable[int],
    *,
    gradients: bool = False,
    chunk_size: int = 256,
) -> UnpatchedRuns:
    """``unpatched`` after checking that it holds these blocks (and gradients), else just those computed.

    Call inside :func:`~spinal_callback.model.runner.probe_mode`.

    Raises:
        ValueError: ``unpatched`` lacks a block or the gradients.
    """
    if unpatched is not None:
        unpatched.require(policy_blocks, reference_blocks, gradients=gradients)
        return unpatched
    return compute_unpatched(
        policy_run, reference_run, probe, policy_blocks=policy_blocks, reference_blocks=reference_blocks,
        gradients=gradients, chunk_size=chunk_size,
    )


def patching_runs(policy: nn.Module, reference: nn.Module | None) -> tuple[ModelRun, ModelRun]:
    """:func:`~spinal_callback.model.pairing.resolve_runs`, refusing a sharding the patching probes do not
    run under (ZeRO-3; FSDP1 and FSDP2 are fine).

    Raises:
        ValueError: as ``resolve_runs``; a ZeRO-3 policy or reference.
    """
    policy_run, reference_run = resolve_runs(policy, reference)
    for run in (policy_run, reference_run):
        check_patching_sharding(run.sharded)
    return policy_run, reference_run


def unpatched_runs(
    policy: nn.Module,
    reference: nn.Module | None,
    batch: Mapping[str, torch.Tensor],
    *,
    gradients: bool = False,
    chunk_size: int = 256,
) -> UnpatchedRuns:
    """The unpatched runs every probe of one patching step shares: every block's output on both sides.

    Cost: one no-grad policy forward and one reference forward (with a graph and one backward when
    ``gradients``, for :func:`~spinal_callback.probes.attribution_patching`). Memory: ``2L`` block
    outputs ``(2K, T, d)`` (``3L`` with the gradients; :meth:`UnpatchedRuns.release_gradients` frees them).
    Eval mode during the forwards; train/eval flags and ``requires_grad`` are restored exactly.

    Args:
        policy, reference, batch, chunk_size: as for :func:`~spinal_callback.probes.patch_layers`.
        gradients: also compute the reference's margin gradients at every block.

    Raises:
        ValueError: as ``patch_layers``.
    """
    probe = validate_probe_batch(batch)
    policy_run, reference_run = patching_runs(policy, reference)
    every = range(policy_run.layout.num_layers)
    with probe_mode(policy_run, reference_run):
        return compute_unpatched(
            policy_run, reference_run, probe, policy_blocks=every, reference_blocks=every,
            gradients=gradients, chunk_size=chunk_size,
        )


def shared_runs(
    policy: nn.Module, reference: nn.Module | None, probe: ProbeBatch, unpatched: UnpatchedRuns | None
) -> tuple[ModelRun, ModelRun]:
    """The runs of ``unpatched`` (checked to be of these models and this batch), or freshly resolved ones.

    Raises:
        ValueError: ``unpatched`` was computed for other models or another batch; as :func:`patching_runs`.
    """
    if unpatched is None:
        return patching_runs(policy, reference)
    policy_module = probe_root(policy)
    ref = unpatched.reference_run
    same_reference = (
        ref.adapter_disabled and ref.module is policy_module
        if reference is None
        else not ref.adapter_disabled and ref.module is probe_root(reference)
    )
    if unpatched.policy_run.module is not policy_module or not same_reference:
        raise ValueError("`unpatched` was computed for other models than `policy` and `reference`")
    held = unpatched.probe
    if any(not torch.equal(getattr(held, key), getattr(probe, key))
           for key in ("input_ids", "attention_mask", "completion_mask")):
        raise ValueError("`unpatched` was computed on another batch than `batch`")
    return unpatched.policy_run, unpatched.reference_run
