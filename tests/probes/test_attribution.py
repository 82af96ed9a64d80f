"""attribution_patching (SPEC §2): ĉ_ℓ is the directional derivative of the mean margin, it matches the exact
effect where the effect is linear, and it costs exactly one forward + one backward of the reference."""

from __future__ import annotations

import json

import pytest
import torch

from spinal_callback.probes import attribution_patching, patch_layers, rank_agreement
from tests.probes._models import blocks_of, naive_margins, perturbed_pair, probe_batch


def _outputs(model: torch.nn.Module, batch: dict) -> list[torch.Tensor]:
    store: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(lambda m, a, o, i=i: store.__setitem__(i, o)) for i, b in enumerate(blocks_of(model))
    ]
    with torch.no_grad():
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for h in handles:
        h.remove()
    return [store[i] for i in range(len(store))]


def test_scores_are_directional_derivatives_of_the_mean_margin() -> None:
    """ĉ_ℓ = d/dδ mean_x m(h_ref + δ(h_pol − h_ref)) at δ = 0, checked by central differences.

    GPT-2 in float64 (its norms and attention stay in float64, unlike llama's RMSNorm upcast), so that
    the finite differences are exact to ~1e-9; ĉ's own logits are float32.
    """
    policy, reference = perturbed_pair("gpt2", num_layers=4, scale=0.1)
    policy, reference = policy.double(), reference.double()
    batch = probe_batch(num_pairs=3)
    result = attribution_patching(policy, reference, batch)
    h_pol, h_ref = _outputs(policy, batch), _outputs(reference, batch)
    delta = 1e-5
    for layer in range(4):

        def mean_margin(step: float, layer: int = layer) -> float:
            patched = h_ref[layer] + step * (h_pol[layer] - h_ref[layer])
            return naive_margins(reference, batch, lambda m, a, o: patched, layer).mean().item()

        derivative = (mean_margin(delta) - mean_margin(-delta)) / (2 * delta)
        assert abs(derivative) > 0.1
        assert result.scores[layer].item() == pytest.approx(derivative, rel=1e-5)


def test_matches_exact_patching_where_the_effect_is_linear() -> None:
    """A policy a small step (1e-4) away from the reference: the effect is first order, ĉ ≈ effect.

    (The second-order remainder shrinks with the step: at 1e-2 the same set-up ranks layers with ρ ≈ 0.9
    and errs by more than the smallest effects — the weakness SPEC §2 warns about.)
    """
    policy, reference = perturbed_pair(num_layers=6, scale=1e-4, seed=4)
    batch = probe_batch(num_pairs=4)
    exact = patch_layers(policy, reference, batch)
    result = attribution_patching(policy, reference, batch, exact=exact)
    assert (result.scores - exact.effect).abs().max() <= 0.02 * exact.effect.abs().max()
    assert result.spearman is not None and result.spearman >= 0.9
    torch.testing.assert_close(result.margin_base, exact.margin_base, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.margin_source, exact.margin_source, atol=1e-5, rtol=0)
    assert json.loads(json.dumps(result.to_dict(), allow_nan=False))["spearman"] == pytest.approx(result.spearman)


def test_one_forward_one_backward_no_grad_left_behind() -> None:
    policy, reference = perturbed_pair(num_layers=4, scale=0.1)
    batch = probe_batch(num_pairs=3)
    counts = {"policy": 0, "reference": 0, "backward": 0}
    blocks_of(policy)[0].register_forward_pre_hook(lambda m, a: counts.__setitem__("policy", counts["policy"] + 1))
    blocks_of(reference)[0].register_forward_pre_hook(
        lambda m, a: counts.__setitem__("reference", counts["reference"] + 1)
    )

    def count_backward(module: torch.nn.Module, args: object, output: torch.Tensor) -> None:
        if output.requires_grad:
            output.register_hook(lambda g: counts.__setitem__("backward", counts["backward"] + 1))

    blocks_of(reference)[1].register_forward_hook(count_backward)
    reference.train()
    next(reference.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in reference.parameters()]
    result = attribution_patching(policy, reference, batch)
    assert counts == {"policy": 1, "reference": 1, "backward": 1}
    assert result.forwards == 2 and result.backwards == 1 and result.spearman is None
    assert all(p.grad is None for p in reference.parameters())
    assert [p.requires_grad for p in reference.parameters()] == flags
    assert all(m.training for m in reference.modules())
    for block in blocks_of(reference):
        block._forward_hooks.clear()
        block._forward_pre_hooks.clear()
    for block in blocks_of(policy):
        block._forward_pre_hooks.clear()


def test_last_layer_needs_no_backward_through_the_blocks() -> None:
    policy, reference = perturbed_pair(num_layers=4, scale=0.1)
    batch = probe_batch(num_pairs=3)
    result = attribution_patching(policy, reference, batch, layers=[4])
    assert result.backwards == 0 and result.layers == [4]
    both = attribution_patching(policy, reference, batch, layers=[2, 4])
    assert both.scores[1].item() == pytest.approx(result.scores[0].item(), rel=1e-6)


def test_rank_agreement_rules() -> None:
    policy, reference = perturbed_pair(num_layers=4, scale=0.1)
    batch = probe_batch(num_pairs=3)
    reverse = patch_layers(policy, reference, batch, "reference_to_policy")
    with pytest.raises(ValueError, match="policy_to_reference"):
        attribution_patching(policy, reference, batch, exact=reverse)
    exact = patch_layers(policy, reference, batch, layers=[1, 3])
    assert rank_agreement([3, 4], torch.tensor([1.0, 2.0]), exact) is None  # one shared layer
    assert abs(rank_agreement([1, 3], torch.tensor([1.0, 2.0]), exact)) == pytest.approx(1.0)
