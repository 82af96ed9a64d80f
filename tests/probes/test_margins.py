"""Margins from the last block's output and the model's own head equal the full forward's (SPEC §2)."""

from __future__ import annotations

import pytest
import torch

from spinal_callback.model.architectures import resolve_layout
from spinal_callback.probes import completion_logprobs, pair_margins, patch_layers, validate_probe_batch
from tests.conftest import tiny_causal_lm
from tests.probes._models import naive_margins, naive_patch, perturbed_pair, probe_batch

# gemma2: logit soft-capping; granite: logit scaling; opt: project_out before the unembedding.
ARCHITECTURES = ("llama", "gpt2", "gemma2", "granite", "opt", "qwen2", "gpt_neox")


@pytest.mark.parametrize("model_type", ARCHITECTURES)
@pytest.mark.parametrize("chunk_size", [1, 7, 256])
def test_completion_logprobs_equal_full_forward(model_type: str, chunk_size: int) -> None:
    model = tiny_causal_lm(model_type, num_layers=2, initializer_range=0.1)
    batch = probe_batch(num_pairs=3)
    probe = validate_probe_batch(batch)
    layout = resolve_layout(model)
    with torch.no_grad():
        store = {}
        handle = layout.blocks[-1].register_forward_hook(lambda m, a, o: store.setdefault("h", o))
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        handle.remove()
        hidden = store["h"] if torch.is_tensor(store["h"]) else store["h"][0]
        logp = completion_logprobs(layout, hidden, probe.input_ids, probe.label_mask, chunk_size=chunk_size)
    assert logp.dtype == torch.float64
    torch.testing.assert_close(pair_margins(logp), naive_margins(model, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["gpt2", "gemma2", "opt", "gpt_neox"])
def test_batched_equals_naive_across_architectures(model_type: str) -> None:
    policy, reference = perturbed_pair(model_type, num_layers=3, scale=0.1)
    batch = probe_batch(num_pairs=3)
    result = patch_layers(policy, reference, batch)
    per_example, _, margin_source = naive_patch(reference, policy, batch)
    torch.testing.assert_close(result.per_example, per_example, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.margin_source, margin_source, atol=1e-5, rtol=0)
    assert result.normalized_effect[-1].item() == pytest.approx(1.0, abs=1e-5)


def test_label_mask_skips_position_zero_and_padding() -> None:
    batch = probe_batch(num_pairs=2, seq_len=6)
    batch["completion_mask"][:] = 1  # whole rows, padding included
    probe = validate_probe_batch(batch)
    assert not probe.label_mask[:, 0].any()
    assert torch.equal(probe.label_mask[:, 1:], batch["attention_mask"][:, 1:].bool())
    assert probe.num_pairs == 2 and probe.num_rows == 4


def test_only_position_zero_is_an_empty_completion() -> None:
    batch = probe_batch(num_pairs=2, seq_len=6)
    batch["completion_mask"][1] = 0
    batch["completion_mask"][1, 0] = 1  # a completion token with no predictor cannot be scored
    with pytest.raises(ValueError, match="pair 1 has an empty chosen completion"):
        validate_probe_batch(batch)
