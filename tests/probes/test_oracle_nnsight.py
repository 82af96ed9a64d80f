"""Peer-library oracle: exact patching margins equal nnsight's activation patching on the same tiny GPT-2.

nnsight (https://nnsight.net) patches by assigning a block's ``.output`` inside a ``trace``; here one trace
per layer, scored from ``lm_head``'s logits with ``log_softmax`` in float64. Skipped without nnsight
(``pip install "nnsight>=0.8.1"``).
"""

from __future__ import annotations

import pytest
import torch

from spinal_callback.probes import DIRECTIONS, patch_layers
from tests.probes._models import perturbed_pair, probe_batch

nnsight = pytest.importorskip("nnsight")

NUM_LAYERS = 4


def _margins(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    logp = logits[:, :-1].double().log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(2)
    seq = (logp * (batch["completion_mask"] * batch["attention_mask"])[:, 1:]).sum(1)
    k = seq.shape[0] // 2
    return seq[:k] - seq[k:]


def nnsight_patched_margins(base: torch.nn.Module, source: torch.nn.Module, batch: dict) -> tuple:
    """``(patched [L, K], base [K], source [K])`` margins, computed with nnsight only.

    (nnsight re-executes a trace's body; plain loops and names assigned outside the trace are safest.)
    """
    src, dst = nnsight.NNsight(source), nnsight.NNsight(base)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    saved: dict[int, object] = {}
    with torch.no_grad():
        with src.trace(**inputs):
            for i in range(NUM_LAYERS):
                saved[i] = src.transformer.h[i].output.save()
            source_logits = src.lm_head.output.save()
        with dst.trace(**inputs):
            base_logits = dst.lm_head.output.save()
        patched = []
        for layer in range(NUM_LAYERS):
            replacement = saved[layer]  # the whole block output: a tensor, or a tuple in older transformers
            with dst.trace(**inputs):
                dst.transformer.h[layer].output = replacement
                logits = dst.lm_head.output.save()
            patched.append(_margins(logits, batch))
    return torch.stack(patched), _margins(base_logits, batch), _margins(source_logits, batch)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_patched_margins_equal_nnsight(direction: str) -> None:
    policy, reference = perturbed_pair("gpt2", num_layers=NUM_LAYERS, scale=0.1)
    policy.eval()
    reference.eval()
    batch = probe_batch(num_pairs=3)
    base, source = (reference, policy) if direction == "policy_to_reference" else (policy, reference)
    patched, margin_base, margin_source = nnsight_patched_margins(base, source, batch)
    ours = patch_layers(policy, reference, batch, direction)
    torch.testing.assert_close(ours.margin_base, margin_base, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.margin_source, margin_source, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.margin_base + ours.per_example, patched, atol=1e-4, rtol=0)
    assert (patched - margin_base).abs().max() > 1e-2  # the patches change something
