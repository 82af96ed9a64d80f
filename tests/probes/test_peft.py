"""The reference of a PEFT policy is the policy with its adapter disabled (TRL with ``ref_model=None``)."""

from __future__ import annotations

import copy

import pytest
import torch

from spinal_callback.probes import attribution_patching, low_rank_patch, patch_layers
from tests.conftest import tiny_causal_lm
from tests.probes._models import probe_batch

peft = pytest.importorskip("peft")


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """``(peft_policy, merged_policy, base)``: LoRA on q_proj/v_proj with non-zero B."""
    base = tiny_causal_lm("llama", num_layers=4, initializer_range=0.05)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    policy = peft.get_peft_model(copy.deepcopy(base), config)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
    merged = copy.deepcopy(policy).merge_and_unload()
    return policy, merged, base


@pytest.mark.parametrize("direction", ["policy_to_reference", "reference_to_policy"])
def test_adapter_disabled_reference_equals_separate_models(models, direction: str) -> None:
    policy, merged, base = models
    batch = probe_batch(num_pairs=3)
    ours = patch_layers(policy, None, batch, direction)
    separate = patch_layers(merged, base, batch, direction)
    torch.testing.assert_close(ours.per_example, separate.per_example, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.margin_source, separate.margin_source, atol=1e-5, rtol=0)
    assert abs(ours.total_effect) > 0.05  # the adapter matters
    # LoRA leaves the head alone: the last layer transfers the whole gap (known answer)
    assert ours.normalized_effect[-1].item() == pytest.approx(1.0, abs=1e-5)


def test_adapter_state_grads_and_modes_restored(models) -> None:
    policy, merged, base = models
    batch = probe_batch(num_pairs=3)
    policy.train()
    flags = {n: p.requires_grad for n, p in policy.named_parameters()}
    before = patch_layers(policy, None, batch, layers=[4])
    low_rank_patch(policy, None, batch, [2], ranks=[1, 32])
    result = attribution_patching(policy, None, batch, exact=patch_layers(policy, None, batch))
    assert result.forwards == 2 and result.backwards == 1 and result.spearman is not None
    assert all(m.training for m in policy.modules())
    assert {n: p.requires_grad for n, p in policy.named_parameters()} == flags
    assert all(p.grad is None for p in policy.parameters())
    # the adapter is still on: the policy's margins are the merged model's
    after = patch_layers(policy, None, batch, layers=[4])
    torch.testing.assert_close(after.margin_source, before.margin_source)
    separate = patch_layers(merged, base, batch, layers=[4])
    torch.testing.assert_close(after.margin_source, separate.margin_source, atol=1e-5, rtol=0)
    policy.eval()
