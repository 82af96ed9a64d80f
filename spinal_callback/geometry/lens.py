"""The logit-lens statistics of a depth trace: lens entropy E_ℓ and transport 𝓛_ℓ, fused per token chunk.

For each chunk of ``chunk_size`` tokens the layers run in depth order; each layer's float32 lens logits
``W_U·norm_final(h)`` are turned, in place, into square-root probabilities ``q ∝ √p`` (one
normalisation per layer and chunk, see :mod:`spinal_callback.geometry.transport`), which give that
layer's entropy and are kept for exactly one more layer: the Fisher–Rao step to the next layer reuses
them. So each
layer's distribution is computed once and serves E_ℓ, 𝓛_{ℓ−1} and 𝓛_ℓ.

Memory: two ``chunk × V`` float32 arrays (the previous layer's ``q`` and the current logits) plus
two ``rows × V`` work rows — about 75 MiB at ``chunk_size=64`` and V = 152k, whatever the depth and
the batch. On a CPU the statistics run over blocks of rows small enough to stay in cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from spinal_callback.geometry.transport import (
    fisher_rao_from_hellinger,
    hellinger_sq_rows,
    row_entropy,
    sqrt_prob_rows,
)
from spinal_callback.model.architectures import DecoderLayout

__all__ = ["LensStatistics", "lens_statistics"]

#: On a CPU, rows per block of the fused statistics are chosen so that one ``rows × V`` float32 work
#: array holds about this many values (512 KiB): the block's arrays then stay in L2/L3 across passes.
CPU_BLOCK_VALUES = 1 << 17

LensStatistics = tuple[dict[int, float], dict[int, float]]


def block_rows(chunk: int, vocab: int, device: torch.device) -> int:
    """Rows per block of the fused statistics: the whole chunk on an accelerator, cache-sized on a CPU."""
    if device.type != "cpu":
        return max(chunk, 1)
    return max(1, min(chunk, CPU_BLOCK_VALUES // max(vocab, 1)))


def lens_statistics(
    hidden: Mapping[int, torch.Tensor],
    layout: DecoderLayout,
    layers: Sequence[int],
    steps: Sequence[int],
    chunk_size: int = 64,
) -> LensStatistics:
    """Mean lens entropy of ``layers`` and mean Fisher–Rao transport of ``steps``, fused per token chunk.

    ``E_ℓ = mean_t −Σ_v p_{ℓ,t}(v) log p_{ℓ,t}(v)`` and ``𝓛_ℓ = mean_t 2·arccos(BC(p_{ℓ,t}, p_{ℓ+1,t}))``
    with ``log p_{ℓ,t} = log_softmax(W_U·norm_final(h_{ℓ,t}))`` in float32 (the Fisher–Rao distance in
    its Hellinger form ``4·arcsin(‖√p − √q‖/2)``; row sums are cascade sums, per-row results and
    token means float64).

    Args:
        hidden: ``{ℓ: H_ℓ}`` with ``H_ℓ`` of shape ``(n, d)``, the same tokens at every layer.
        layout: the model's logit lens (:meth:`DecoderLayout.lens_logits`).
        layers: layers to lens, in increasing order (every ``ℓ`` and ``ℓ+1`` of ``steps`` included).
        steps: transport steps ``ℓ`` (layer ℓ → ℓ+1) to measure.
        chunk_size: tokens per chunk.

    Returns:
        ``({ℓ: E_ℓ}, {ℓ: 𝓛_ℓ})``, NaN when there are no tokens.
    """
    order = list(layers)
    wanted = set(steps)
    missing = sorted({s for s in wanted for end in (s, s + 1) if end not in order})
    if missing:
        raise ValueError(f"Transport steps {missing} need the lens of both their layers")
    first = hidden[order[0]]
    n = int(first.shape[0])
    # Sums stay on the activations' device until the end: one host synchronisation per trace.
    sums = torch.zeros(2, len(order), dtype=torch.float64, device=first.device)  # entropy, transport
    scratch: torch.Tensor | None = None
    with torch.no_grad():
        for start in range(0, n, chunk_size):
            prev_layer, prev_q, prev_z = 0, first, first  # placeholders until the first layer
            for i, layer in enumerate(order):
                h = hidden[layer][start : start + chunk_size]
                x = layout.lens_logits(h).contiguous()
                if x.untyped_storage().data_ptr() == h.untyped_storage().data_ptr():
                    x = x.clone()  # a lens that returns its input: never overwrite the captured states
                rows, vocab = x.shape
                k = block_rows(rows, vocab, x.device)
                if scratch is None or scratch.shape[1:] != (k, vocab) or scratch.dtype != x.dtype:
                    scratch = torch.empty(2, k, vocab, dtype=x.dtype, device=x.device)
                row_sums = torch.empty(3, rows, dtype=x.dtype, device=x.device)
                step = i > 0 and prev_layer == layer - 1 and layer - 1 in wanted
                h2 = torch.empty(rows, dtype=x.dtype, device=x.device)
                for r0 in range(0, rows, k):
                    r1 = min(rows, r0 + k)
                    work = scratch[:, : r1 - r0]
                    q = x[r0:r1]
                    sqrt_prob_rows(q, q, work, row_sums[:, r0:r1])  # x becomes q, in place
                    if step:
                        hellinger_sq_rows(prev_q[r0:r1], prev_z[r0:r1], q, row_sums[0, r0:r1], work[1], h2[r0:r1])
                sums[0, i] += row_entropy(row_sums).sum().to(sums.device)
                if step:
                    sums[1, i - 1] += fisher_rao_from_hellinger(h2, prev_z).sum().to(sums.device)
                prev_layer, prev_q, prev_z = layer, x, row_sums[0]
    entropy_sum, transport_sum = sums.tolist()
    mean = [(s / n if n else float("nan")) for s in entropy_sum]
    entropy = dict(zip(order, mean))
    transport = {layer: (t / n if n else float("nan")) for layer, t in zip(order, transport_sum) if layer in wanted}
    return entropy, transport
