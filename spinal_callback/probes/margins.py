"""Preference margins from a probe batch: m(x) = log π(y⁺|x) − log π(y⁻|x).

The batch uses TRL's collator layout (SPEC §6): ``input_ids``, ``attention_mask`` and
``completion_mask``, each ``(2K, T)``; rows ``0..K-1`` are prompt + chosen, rows ``K..2K-1`` prompt +
rejected. A sequence's log-probability is the sum over its completion tokens of the log-probability
of the actual token: logits at position t−1 predict the token at position t, so the completion token
at t is scored by the hidden state at t−1 (a completion token at t = 0 has no predictor and is not
scored, as in TRL).

Log-probabilities are computed from the *final block output* with the model's own logit head
(:meth:`~spinal_callback.model.architectures.DecoderLayout.lens_logits`: final norm, unembedding, soft-capping),
in token chunks, gathering only the target tokens: no ``(rows, T, V)`` logits tensor is ever built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from spinal_callback.model.architectures import DecoderLayout

__all__ = [
    "BATCH_KEYS",
    "ProbeBatch",
    "ScoredTokens",
    "completion_logprobs",
    "pair_margins",
    "score_tokens",
    "take_scored",
    "validate_probe_batch",
]

#: Keys a patching batch must hold.
BATCH_KEYS = ("input_ids", "attention_mask", "completion_mask")


@dataclass(frozen=True)
class ProbeBatch:
    """A validated patching batch (CPU tensors).

    Attributes:
        input_ids: ``(2K, T)`` token ids.
        attention_mask: ``(2K, T)`` 0/1 mask of real tokens.
        completion_mask: ``(2K, T)`` 0/1 mask of completion tokens.
        label_mask: ``(2K, T)`` bool, the scored tokens: completion ∧ real ∧ t ≥ 1.
        num_pairs: K.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    label_mask: torch.Tensor
    num_pairs: int

    @property
    def num_rows(self) -> int:
        return 2 * self.num_pairs


def validate_probe_batch(batch: Mapping[str, Any]) -> ProbeBatch:
    """Check a ``(2K, T)`` chosen-then-rejected batch and compute its scored-token mask.

    Raises:
        ValueError: ``batch`` is not a mapping, misses a key, holds tensors that are not 2-D of one
            shape ``(2K, T)`` with an even, non-zero number of rows, or a pair has a completion with no
            scored token (the message names the pair index and the side).
    """
    if not isinstance(batch, Mapping):
        raise ValueError(f"`batch` must be a mapping with keys {', '.join(BATCH_KEYS)}, got {type(batch).__name__}")
    missing = [k for k in BATCH_KEYS if k not in batch]
    if missing:
        raise ValueError(
            f"`batch` is missing {', '.join(missing)}; a patching batch needs {', '.join(BATCH_KEYS)} "
            "in TRL's (2K, T) layout (first K rows prompt+chosen, last K rows prompt+rejected)"
        )
    tensors = {}
    for key in BATCH_KEYS:
        value = batch[key]
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"`batch[{key!r}]` must be a torch.Tensor, got {type(value).__name__}")
        tensors[key] = value.detach().cpu()
    shape = tuple(tensors["input_ids"].shape)
    if len(shape) != 2:
        raise ValueError(f"`batch['input_ids']` must be 2-D (2K, T), got shape {shape}")
    for key in BATCH_KEYS[1:]:
        if tuple(tensors[key].shape) != shape:
            raise ValueError(
                f"`batch[{key!r}]` has shape {tuple(tensors[key].shape)}, `batch['input_ids']` has {shape}"
            )
    rows = shape[0]
    if rows == 0 or rows % 2 or shape[1] < 2:
        raise ValueError(
            f"`batch` must hold 2K rows (K chosen then K rejected sequences, K >= 1) of length >= 2, "
            f"got shape {shape}"
        )
    attention = tensors["attention_mask"].bool()
    completion = tensors["completion_mask"].bool()
    label = completion & attention
    label[:, 0] = False
    k = rows // 2
    scored = label.any(dim=1)
    for i in range(k):
        for side, row in (("chosen", i), ("rejected", k + i)):
            if not bool(scored[row]):
                raise ValueError(
                    f"Preference pair {i} has an empty {side} completion (batch row {row} has no "
                    "completion token after position 0 inside the attention mask)"
                )
    return ProbeBatch(
        input_ids=tensors["input_ids"].long(),
        attention_mask=tensors["attention_mask"].long(),
        completion_mask=tensors["completion_mask"].long(),
        label_mask=label,
        num_pairs=k,
    )


@dataclass(frozen=True)
class ScoredTokens:
    """The hidden states that score a batch's completion tokens, taken out of a ``(R, T, d)`` block output.

    Holding only these rows (rather than the whole output) lets a sharded run score several forwards
    under one gather of its logit head.

    Attributes:
        hidden: ``(n, d)`` the final block's output at ``t − 1`` for each scored token ``t``.
        rows: ``(n,)`` the batch row of each scored token (on ``hidden``'s device).
        targets: ``(n,)`` the token ids to score (on ``hidden``'s device).
        num_rows: R, the rows of the batch.
    """

    hidden: torch.Tensor
    rows: torch.Tensor
    targets: torch.Tensor
    num_rows: int


def take_scored(final_hidden: torch.Tensor, input_ids: torch.Tensor, label_mask: torch.Tensor) -> ScoredTokens:
    """The hidden states at the positions that predict the scored tokens (``label_mask``, False at t = 0).

    Differentiable w.r.t. ``final_hidden`` when grad is enabled; the indices are built on the host (no
    device sync).
    """
    device = final_hidden.device
    label_cpu = label_mask.detach().to("cpu", torch.bool)
    rows, cols = label_cpu.nonzero(as_tuple=True)
    targets = input_ids.detach().cpu()[rows, cols]
    rows, cols = rows.to(device), cols.to(device)
    return ScoredTokens(final_hidden[rows, cols - 1], rows, targets.to(device), final_hidden.shape[0])


def score_tokens(layout: DecoderLayout, tokens: ScoredTokens, *, chunk_size: int = 256) -> torch.Tensor:
    """``(R,)`` float64 completion log-likelihoods of :class:`ScoredTokens`, ``chunk_size`` tokens per head call.

    Per token ``log_softmax(head(h))[y]`` from float32 logits (:meth:`DecoderLayout.lens_logits`), summed
    per row in float64. A sharded model's head must be gathered around the call
    (:meth:`~spinal_callback.model.runner.ModelRun.head`).
    """
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    hidden, rows, targets = tokens.hidden, tokens.rows, tokens.targets
    total = torch.zeros(tokens.num_rows, dtype=torch.float64, device=hidden.device)
    for start in range(0, rows.numel(), chunk_size):
        r = rows[start : start + chunk_size]
        logits = layout.lens_logits(hidden[start : start + chunk_size])
        target = targets[start : start + chunk_size, None]
        logp = logits.gather(1, target).squeeze(1) - torch.logsumexp(logits, dim=-1)
        total = total.index_add(0, r, logp.double())
    return total


def completion_logprobs(
    layout: DecoderLayout,
    final_hidden: torch.Tensor,
    input_ids: torch.Tensor,
    label_mask: torch.Tensor,
    *,
    chunk_size: int = 256,
) -> torch.Tensor:
    """Per-sequence completion log-likelihood from the last block's output.

    ``log π(y|x) = Σ_{t: label[t]} log_softmax(head(h_L[t−1]))[y_t]``, where ``head`` is the model's
    final norm + unembedding (+ soft-capping) through :meth:`DecoderLayout.lens_logits`, in float32:
    :func:`take_scored` then :func:`score_tokens`.

    Args:
        layout: the model's resolved layout (its logit head; gathered around the call for a sharded model).
        final_hidden: ``(R, T, d)`` output of the last decoder block.
        input_ids: ``(R, T)`` token ids (any device).
        label_mask: ``(R, T)`` bool mask of scored tokens, False at t = 0 (any device).
        chunk_size: scored tokens per head call; at most one ``chunk_size × V`` logits matrix is alive.

    Returns:
        ``(R,)`` log-likelihoods on ``final_hidden``'s device, float64 (per-token terms from float32
        logits, summed in float64 so that sequence length adds no rounding); differentiable w.r.t.
        ``final_hidden`` when grad is enabled.
    """
    if chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive integer, got {chunk_size!r}")
    return score_tokens(layout, take_scored(final_hidden, input_ids, label_mask), chunk_size=chunk_size)


def pair_margins(logprobs: torch.Tensor) -> torch.Tensor:
    """``m = logp[..., :K] − logp[..., K:]`` for log-likelihoods laid out chosen-then-rejected (last dim 2K)."""
    k = logprobs.shape[-1] // 2
    return logprobs[..., :k] - logprobs[..., k:]
