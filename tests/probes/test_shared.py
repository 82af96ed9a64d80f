"""The patching step shares its unpatched runs (SPEC §2): ``run_patching_probe`` computes the policy and
reference forwards once, reports what the separately called probe functions report, and runs fewer
forwards than they do."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.probes import attribution_patching, lasso_probe, low_rank_patch, patch_layers
from spinal_callback.probes.protocol import run_patching_probe
from spinal_callback.probes.unpatched import unpatched_runs
from tests.conftest import tiny_causal_lm
from tests.probes._models import perturbed_pair, probe_batch

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

TOL = 1e-5
CONFIG = SpinalConfig(patch_interval=1, patch_low_rank_layers=2)


def separate_probe(policy: nn.Module, reference: nn.Module | None, batch: dict, config: SpinalConfig) -> dict:
    """The patching record from the public probe functions, each running its own unpatched forwards."""
    record: dict[str, Any] = {"exact": {}}
    exact = {d: patch_layers(policy, reference, batch, direction=d) for d in config.patch_directions}  # type: ignore[arg-type]
    record["exact"] = {d: r.to_dict() for d, r in exact.items()}
    forward = exact["policy_to_reference"]
    top = forward.normalized_effect.abs().nan_to_num(nan=-1.0).argsort(descending=True)[: config.patch_low_rank_layers]
    layers = sorted(forward.layers[int(i)] for i in top)
    record["low_rank"] = low_rank_patch(policy, reference, batch, layers, ranks=config.patch_ranks).to_dict()
    record["lasso"] = lasso_probe(policy, reference, batch).to_dict()
    record["attribution"] = attribution_patching(policy, reference, batch, exact=forward).to_dict()
    return record


def assert_same(ours: Any, theirs: Any, path: str = "record") -> None:
    """Equal structure and non-float values; floats within ``TOL`` (``None`` for NaN on both sides)."""
    if isinstance(ours, dict):
        assert set(ours) == set(theirs), path
        for key in ours:
            if path == "record.low_rank" and key == "forwards":  # the shared one skips the exact patch
                continue
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(ours, float) and isinstance(theirs, float):
        assert abs(ours - theirs) <= TOL, f"{path}: {ours} vs {theirs}"
    else:
        assert ours == theirs, f"{path}: {ours!r} vs {theirs!r}"


@contextmanager
def count_forwards(*modules: nn.Module) -> Iterator[list[int]]:
    """``[calls]`` of the given modules' ``forward`` (a pre-hook on each distinct module) inside the block."""
    calls = [0]
    distinct = {id(m): m for m in modules}.values()
    handles = [m.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)) for m in distinct]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def peft_policy() -> nn.Module:
    """A PEFT LoRA policy (non-zero B) whose adapter-disabled base is the reference."""
    peft = pytest.importorskip("peft")
    base = tiny_causal_lm("llama", num_layers=4, initializer_range=0.05)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    policy = peft.get_peft_model(copy.deepcopy(base), lora)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in policy.named_parameters():
            if "lora_" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=gen))
    return policy


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_shared_probe_equals_separate_calls(model_type: str) -> None:
    policy, reference = perturbed_pair(model_type, num_layers=5, scale=0.1, seed=2)
    batch = probe_batch(num_pairs=4)
    outcome = run_patching_probe(policy, reference, batch, CONFIG)
    assert set(outcome.record) == {"exact", "low_rank", "lasso", "attribution"}
    assert outcome.record["attribution"]["spearman"] is not None
    assert_same(outcome.record, separate_probe(policy, reference, batch, CONFIG))


def test_shared_probe_equals_separate_calls_with_peft_reference(peft_policy: nn.Module) -> None:
    batch = probe_batch(num_pairs=3)
    config = SpinalConfig(patch_interval=1, patch_low_rank_layers=1, patch_ranks=(1, 4, 32))
    peft_policy.train()
    flags = {n: p.requires_grad for n, p in peft_policy.named_parameters()}
    try:
        outcome = run_patching_probe(peft_policy, None, batch, config)
        assert all(m.training for m in peft_policy.modules())
    finally:
        peft_policy.eval()
    assert {n: p.requires_grad for n, p in peft_policy.named_parameters()} == flags
    assert all(p.grad is None for p in peft_policy.parameters())
    assert abs(outcome.record["exact"]["policy_to_reference"]["total_effect"]) > 0.05  # the adapter matters
    assert_same(outcome.record, separate_probe(peft_policy, None, batch, config))


@pytest.mark.parametrize("peft", [False, True], ids=["ref-model", "peft"])
def test_shared_probe_runs_fewer_forwards(peft: bool, request: pytest.FixtureRequest) -> None:
    if peft:
        policy, reference = request.getfixturevalue("peft_policy"), None
    else:
        policy, reference = perturbed_pair(num_layers=5, scale=0.1, seed=2)
    batch = probe_batch(num_pairs=4)
    modules = (policy,) if reference is None else (policy, reference)
    with count_forwards(*modules) as shared:
        outcome = run_patching_probe(policy, reference, batch, CONFIG)
    with count_forwards(*modules) as separate:
        separate_probe(policy, reference, batch, CONFIG)
    patched = sum(r["forwards"] - 2 for r in [*outcome.record["exact"].values(), outcome.record["low_rank"]])
    assert shared[0] == 2 + patched  # one unpatched forward per side, then only patched forwards
    # separately: 2 unpatched forwards in each of the 5 calls, and the low-rank one repeats the exact patch
    low_rank_exact = 1  # 2 layers × (1 + 6 ranks) specs, 2 per forward: 7 forwards instead of 6
    assert separate[0] == shared[0] + 4 * 2 + low_rank_exact


def test_unpatched_runs_must_match_models_batch_and_needs() -> None:
    policy, reference = perturbed_pair(num_layers=3, scale=0.1)
    batch = probe_batch(num_pairs=3)
    shared = unpatched_runs(policy, reference, batch)
    assert shared.forwards == 2 and shared.backwards == 0 and shared.reference_grads is None
    with pytest.raises(ValueError, match="another batch"):
        patch_layers(policy, reference, probe_batch(num_pairs=3, seed=1), unpatched=shared)
    with pytest.raises(ValueError, match="other models"):
        patch_layers(reference, policy, batch, unpatched=shared)
    with pytest.raises(ValueError, match="gradients"):
        attribution_patching(policy, reference, batch, unpatched=shared)
    partial = unpatched_runs(policy, reference, batch, gradients=True)
    partial.policy_hidden.pop(1)
    with pytest.raises(ValueError, match="policy block 2"):
        lasso_probe(policy, reference, batch, unpatched=partial)
    reverse = patch_layers(policy, reference, batch, "reference_to_policy", unpatched=shared)
    with pytest.raises(ValueError, match="policy_to_reference"):
        low_rank_patch(policy, reference, batch, [1], exact=reverse)
    with pytest.raises(ValueError, match="covering"):
        low_rank_patch(policy, reference, batch, [1], exact=patch_layers(policy, reference, batch, layers=[2]))


def test_shared_attribution_equals_its_own_forward_and_backward() -> None:
    policy, reference = perturbed_pair(num_layers=4, scale=0.1, seed=5)
    batch = probe_batch(num_pairs=3)
    shared = unpatched_runs(policy, reference, batch, gradients=True)
    assert shared.backwards == 1
    with count_forwards(policy, reference) as calls:
        ours = attribution_patching(policy, reference, batch, layers=[1, 4], unpatched=shared)
    assert calls[0] == 0
    alone = attribution_patching(policy, reference, batch, layers=[1, 4])
    torch.testing.assert_close(ours.scores, alone.scores, atol=TOL, rtol=0)
    torch.testing.assert_close(ours.margin_base, alone.margin_base, atol=TOL, rtol=0)
    shared.release_gradients()
    with pytest.raises(ValueError, match="gradients"):
        attribution_patching(policy, reference, batch, unpatched=shared)
