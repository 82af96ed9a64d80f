"""Batched patching: many patched copies of the probe batch in few forwards.

Every patch experiment (a :class:`PatchSpec`: "at block ℓ, replace the hidden states by f(h)") is
applied to all 2K rows of the batch. The (spec, row) units are laid out as rows of replicated batches,
sorted by patch layer and cut into chunks of at most ``max_rows`` rows; in each chunk's forward the
hook of block ℓ edits only the rows assigned to ℓ, so one forward serves several layers.

**Prefix reuse.** A row patched at block ℓ runs the unpatched network up to ℓ: those blocks' outputs
are the same as in the unpatched run. So a chunk whose lowest patch block is ℓ_min computes nothing
up to ℓ_min: it takes the unpatched run's recorded output of block ℓ_min, applies block ℓ_min's
patches to it and runs blocks ℓ_min+1..L only (a chunk patched only at the last block runs no
forward at all). Rows are sorted by layer, so chunks are contiguous ranges of layers.

Compute, in row-blocks of 2K rows: a loop of L full forwards (or one replicated forward without
reuse) evaluates L² of them; with reuse, Σ_chunks (rows/2K)·(L − ℓ_min). The floor, one chunk per
layer, is L(L−1)/2; exact patching at every position cannot go below it — replication saves
per-forward overhead and host syncs, prefix reuse saves compute. The default (``max_rows=None`` with
reuse) puts ``LAYERS_PER_FORWARD`` = 2 patch experiments in each forward: L²/2 row-blocks (72 for
L = 12 instead of 144), within L/2 of the floor, with the activations of only 4K rows alive — a
bound that does not grow with depth. (Fewer, larger chunks cost more compute: G equal chunks need
L²(G+1)/2G − L row-blocks: 78 for L = 12, G = 4, and 336 instead of 288 for L = 24.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from spinal_callback.model.runner import BlockEdit, ModelRun, forward_blocks
from spinal_callback.probes.margins import ProbeBatch, ScoredTokens, score_tokens, take_scored

__all__ = [
    "LAYERS_PER_FORWARD",
    "PatchPlan",
    "PatchSpec",
    "capture_edit",
    "exact_replacement",
    "plan_patches",
    "run_patches",
    "run_unpatched",
]

#: Patch experiments (layers, for exact patching) per forward when ``max_rows`` is not given and the
#: prefix is reused.
LAYERS_PER_FORWARD = 2

#: ``replace(hidden_rows, batch_rows) -> new hidden_rows``: hidden_rows ``(n, T, d)`` are the running
#: model's block output for the rows of this spec, batch_rows ``(n,)`` their row in the probe batch.
Replacement = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PatchSpec:
    """One patch experiment: at 0-based block ``block``, replace the hidden states by ``replace(h, rows)``."""

    block: int
    replace: Replacement


@dataclass
class PatchPlan:
    """How the (spec, row) units are cut into forwards.

    Attributes:
        chunks: per forward, ``(spec index, batch row)`` long tensors on the host.
        firsts: per forward, its lowest patch block (−1 when the prefix is not reused): blocks up to
            and including it are not computed — the forward starts from the base's recorded output
            of that block, with that block's patches applied.
        prefix_blocks: blocks whose unpatched output must be recorded to skip prefixes.
    """

    chunks: list[tuple[torch.Tensor, torch.Tensor]]
    firsts: list[int]
    prefix_blocks: set[int] = field(default_factory=set)


def plan_patches(
    blocks: Sequence[int], num_rows: int, *, max_rows: int | None = None, reuse_prefix: bool = True
) -> PatchPlan:
    """Lay out ``len(blocks) × num_rows`` patched rows into chunks (see the module docstring).

    Args:
        blocks: the 0-based patch block of each spec.
        num_rows: rows of the probe batch (2K).
        max_rows: at most this many rows per forward; ``None``: ``LAYERS_PER_FORWARD × num_rows``
            when the prefix is reused, else everything in one forward.
        reuse_prefix: skip the unpatched blocks below each chunk's lowest patch block.
    """
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"`max_rows_per_forward` must be a positive integer or None, got {max_rows!r}")
    order = sorted(range(len(blocks)), key=lambda i: (blocks[i], i))
    spec = torch.tensor(order, dtype=torch.long).repeat_interleave(num_rows)
    rows = torch.arange(num_rows).repeat(len(order))
    total = spec.numel()
    if max_rows is None:
        max_rows = LAYERS_PER_FORWARD * num_rows if reuse_prefix else max(total, 1)
    plan = PatchPlan(chunks=[], firsts=[])
    for begin in range(0, total, max_rows):
        chunk = (spec[begin : begin + max_rows], rows[begin : begin + max_rows])
        first = blocks[int(chunk[0][0])] if reuse_prefix else -1
        plan.chunks.append(chunk)
        plan.firsts.append(first)
        if first >= 0:
            plan.prefix_blocks.add(first)
    return plan


def exact_replacement(source: torch.Tensor) -> Replacement:
    """The exact patch: the rows' hidden states become ``source``'s (``(2K, T, d)``, the source run's block output)."""
    return lambda hidden, rows: source.index_select(0, rows)


def capture_edit(store: dict[int, torch.Tensor], index: int, *, detach: bool = True) -> BlockEdit:
    """An edit that records block ``index``'s hidden states into ``store[index]`` (a copy when ``detach``)."""

    def edit(hidden: torch.Tensor) -> None:
        store[index] = hidden.detach().clone() if detach else hidden
        return None

    return edit


def run_unpatched(
    run: ModelRun, batch: ProbeBatch, capture: set[int] | Sequence[int], *, chunk_size: int = 256
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """One unpatched forward: the outputs ``(2K, T, d)`` of the ``capture`` blocks and the ``(2K,)``
    completion log-likelihoods. Call under ``torch.no_grad()`` inside ``probe_mode`` (on every rank for a
    sharded run: the forward, then one gather of the logit head)."""
    store: dict[int, torch.Tensor] = {}
    edits = {index: capture_edit(store, index) for index in capture}
    final = forward_blocks(run, batch.input_ids, batch.attention_mask, edits)
    tokens = take_scored(final, batch.input_ids, batch.label_mask)
    with run.head():
        logp = score_tokens(run.layout, tokens, chunk_size=chunk_size)
    return store, logp


def _chunk_edit(groups: list[tuple[PatchSpec, torch.Tensor, torch.Tensor]]) -> BlockEdit:
    def edit(hidden: torch.Tensor) -> torch.Tensor:
        out = hidden.clone()
        for spec, local, rows in groups:
            out[local] = spec.replace(hidden[local], rows).to(out.dtype)
        return out

    return edit


def run_patches(
    run: ModelRun,
    batch: ProbeBatch,
    specs: Sequence[PatchSpec],
    plan: PatchPlan,
    prefix_hidden: Mapping[int, torch.Tensor],
    *,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, int, int]:
    """Run the plan; completion log-likelihoods of every (spec, row).

    Call under ``torch.no_grad()`` inside :func:`~spinal_callback.model.runner.probe_mode`. A sharded run
    (every rank runs the same plan) keeps the scored hidden states of each forward (scored tokens × d) and
    scores them all after the last forward under one gather of its logit head
    (:meth:`~spinal_callback.model.runner.ModelRun.head`); an unsharded one scores each forward at once.

    Args:
        run: the model that is patched.
        batch: the probe batch.
        specs: the patch experiments (the plan's spec indices refer to this sequence).
        plan: from :func:`plan_patches` with the specs' blocks.
        prefix_hidden: the unpatched run's output of each block in ``plan.prefix_blocks``, ``(2K, T, d)``.
        chunk_size: scored tokens per logit-head call.

    Returns:
        ``(logprobs[len(specs), 2K], forwards, block_rows)``: float64 log-likelihoods on the model's
        device, the number of forwards, and Σ rows × blocks computed (the compute actually spent).
    """
    device = run.device
    num_blocks = run.layout.num_layers
    out = torch.zeros(len(specs), batch.num_rows, dtype=torch.float64, device=device)
    block_rows = forwards = 0
    pending: list[tuple[torch.Tensor, torch.Tensor, ScoredTokens]] = []
    for (spec_idx, rows), first in zip(plan.chunks, plan.firsts):
        by_block: dict[int, list[tuple[PatchSpec, torch.Tensor, torch.Tensor]]] = {}
        for s in spec_idx.unique().tolist():
            local = (spec_idx == s).nonzero(as_tuple=True)[0]
            spec = specs[s]
            by_block.setdefault(spec.block, []).append((spec, local.to(device), rows[local].to(device)))
        edits = {block: _chunk_edit(groups) for block, groups in by_block.items()}
        rows_dev = rows.to(device)
        start, start_hidden = 0, None
        if first >= 0 and run.tensor_outputs and first in prefix_hidden:  # else: blocks return tuples
            start_hidden = prefix_hidden[first].index_select(0, rows_dev)
            if first in edits:
                start_hidden = edits.pop(first)(start_hidden)
            start = first + 1
        if start_hidden is not None and start == num_blocks:  # all rows patched at the last block
            final = start_hidden
        else:
            final = forward_blocks(
                run, batch.input_ids[rows], batch.attention_mask[rows], edits, start=start, start_hidden=start_hidden
            )
            forwards += 1
        tokens = take_scored(final, batch.input_ids[rows], batch.label_mask[rows])
        if run.sharded is None:
            logp = score_tokens(run.layout, tokens, chunk_size=chunk_size)
            out.index_put_((spec_idx.to(device), rows_dev), logp)
        else:  # scored after the last forward, under one gather of the head
            pending.append((spec_idx.to(device), rows_dev, tokens))
        block_rows += rows.numel() * (num_blocks - start)
    if pending:
        with run.head():
            for spec_dev, rows_dev, tokens in pending:
                out.index_put_((spec_dev, rows_dev), score_tokens(run.layout, tokens, chunk_size=chunk_size))
    return out, forwards, block_rows
