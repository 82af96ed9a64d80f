"""The gradient of the mean preference margin w.r.t. every block output of an unpatched run.

``∂M/∂h_ℓ`` for ``M = mean_x m(x)`` (``m`` the pair margin of :mod:`spinal_callback.probes.margins`), taken
on one forward that keeps the graph from block 1's output on and one backward through the blocks
(``torch.autograd.grad`` w.r.t. the block outputs only: parameters get no ``.grad``; their
``requires_grad`` flags are switched off for the pass and restored). The logit head's gradient is
taken per token chunk first, so no ``(tokens × V)`` graph is kept for the whole batch. Attribution
patching (:mod:`spinal_callback.probes.attribution`) dots these gradients with ``h_pol − h_ref``.

On an FSDP1 / FSDP2 model (every rank calls it) the forward runs through the wrapped root, the head's
gradient is taken under one gather of the final norm and unembedding, and the backward runs through the
sharded blocks, whose backward hooks gather their (frozen) parameters again and reshard them at its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from spinal_callback.model.architectures import DecoderLayout
from spinal_callback.model.runner import BlockEdit, ModelRun, forward_blocks
from spinal_callback.probes.margins import ProbeBatch
from spinal_callback.probes.replicate import capture_edit

__all__ = ["MarginGradients", "margin_gradients"]


@dataclass
class MarginGradients:
    """One unpatched run with the margin's gradients (tensors on the model's device).

    Attributes:
        hidden: block index → block output ``(2K, T, d)`` (detached).
        grads: block index → ``∂M/∂h`` of the same shape, ``None`` where the margin does not depend on it.
        logprobs: ``(2K,)`` float64 completion log-likelihoods.
        backwards: backward passes through the blocks (1; 0 when only the last block was asked for).
    """

    hidden: dict[int, torch.Tensor]
    grads: dict[int, torch.Tensor | None]
    logprobs: torch.Tensor
    backwards: int


def _head_gradient(
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


def margin_gradients(
    run: ModelRun, probe: ProbeBatch, blocks: Sequence[int], *, chunk_size: int = 256
) -> MarginGradients:
    """Block outputs and ``∂M/∂h`` at the 0-based ``blocks`` from one forward + one backward of ``run``.

    Call inside :func:`~spinal_callback.model.runner.probe_mode` (grad is enabled here, whatever the
    caller's grad mode).

    Args:
        run: the unpatched model side (the reference, for attribution patching).
        probe: the probe batch.
        blocks: 0-based blocks whose outputs and gradients are wanted.
        chunk_size: scored tokens per logit-head call.
    """
    last = run.layout.num_layers - 1
    params = list(run.module.parameters())
    flags = [p.requires_grad for p in params]
    store: dict[int, torch.Tensor] = {}
    inner = [b for b in blocks if b != last]  # reached through the backward; the last block's grad is direct
    grads: dict[int, torch.Tensor | None] = dict.fromkeys(inner)
    try:
        for p in params:
            p.requires_grad_(False)
        with torch.enable_grad():

            def first_block(hidden: torch.Tensor) -> torch.Tensor:
                leaf = hidden.detach().requires_grad_(True)  # the graph starts here
                store[0] = leaf
                # Block 2 gets a view of the leaf, not the leaf: FSDP1 puts a multi-grad hook on the inputs
                # of a unit whose parameters are frozen, and autograd.grad() refuses such a hook on a leaf.
                return leaf.view_as(leaf)

            edits: dict[int, BlockEdit] = {b: capture_edit(store, b, detach=False) for b in blocks}
            edits[0] = first_block
            final = forward_blocks(run, probe.input_ids, probe.attention_mask, edits)
            with run.head():  # a sharded model's norm and unembedding, gathered for the head's gradient
                grad_final, logprobs = _head_gradient(run.layout, final, probe, chunk_size)
            if inner:
                found = torch.autograd.grad(
                    final, [store[b] for b in inner], grad_outputs=grad_final, allow_unused=True
                )
                grads = dict(zip(inner, found))
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
    if last in blocks:
        grads[last] = grad_final
    hidden = {b: store[b].detach() for b in blocks}
    return MarginGradients(hidden=hidden, grads=grads, logprobs=logprobs, backwards=1 if inner else 0)
