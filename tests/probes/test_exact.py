"""patch_layers (SPEC §2): batched exact patching against a naive one-layer-per-forward loop, known answers,
validation, and the probe's side effects (modes restored, no hooks left)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from spinal_callback import register_architecture
from spinal_callback.model import architectures
from spinal_callback.probes import DIRECTIONS, PatchResult, patch_layers
from tests.conftest import tiny_causal_lm
from tests.probes._models import blocks_of, naive_patch, perturbed_pair, probe_batch

TOL = 1e-5


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, nn.Module]:
    return perturbed_pair(num_layers=6)


@pytest.fixture(scope="module")
def batch() -> dict:
    return probe_batch(num_pairs=4)


def _base_source(pair: tuple[nn.Module, nn.Module], direction: str) -> tuple[nn.Module, nn.Module]:
    policy, reference = pair
    return (reference, policy) if direction == "policy_to_reference" else (policy, reference)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize(
    "options",
    [{}, {"reuse_prefix": False}, {"max_rows_per_forward": 5}, {"max_rows_per_forward": 1000, "chunk_size": 3}],
    ids=["default", "no-prefix-reuse", "rows5", "one-forward-chunk3"],
)
def test_batched_equals_naive_loop(pair, batch, direction: str, options: dict) -> None:
    result = patch_layers(*pair, batch, direction, **options)
    per_example, margin_base, margin_source = naive_patch(*_base_source(pair, direction), batch)
    assert result.layers == list(range(1, 7))
    torch.testing.assert_close(result.per_example, per_example, atol=TOL, rtol=0)
    torch.testing.assert_close(result.effect, per_example.mean(1), atol=TOL, rtol=0)
    torch.testing.assert_close(result.margin_base, margin_base, atol=TOL, rtol=0)
    torch.testing.assert_close(result.margin_source, margin_source, atol=TOL, rtol=0)
    gap = (margin_source - margin_base).mean()
    torch.testing.assert_close(result.normalized_effect, per_example.mean(1) / gap, atol=1e-4, rtol=1e-4)
    assert abs(gap) > 0.1  # the fixture really separates the two models


def test_forward_counts(pair, batch) -> None:
    one = patch_layers(*pair, batch, reuse_prefix=False)
    assert one.forwards == 3 and one.forward_equivalents == pytest.approx(2 + 6)
    split = patch_layers(*pair, batch)
    # two layers per forward, each starting above its first layer: blocks 2-6, 4-6, 6 for 8 rows × 2
    assert split.forwards == 2 + 3 and split.forward_equivalents == pytest.approx(2 + 16 * (5 + 3 + 1) / 48)
    last_only = patch_layers(*pair, batch, layers=[6])
    assert last_only.forwards == 2 and last_only.forward_equivalents == pytest.approx(2)  # no patched forward
    rows = patch_layers(*pair, batch, max_rows_per_forward=8, reuse_prefix=False)
    assert rows.forwards == 2 + 6  # 6 layers × 8 rows, 8 rows per forward


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_last_layer_transfers_the_whole_margin(pair, batch, direction: str) -> None:
    """Known answer: with a shared head, patching every position of block L gives the source's margins."""
    result = patch_layers(*pair, batch, direction, layers=[6, 2])
    assert result.layers == [2, 6]
    torch.testing.assert_close(
        result.margin_base + result.per_example[-1], result.margin_source, atol=TOL, rtol=0
    )
    assert result.normalized_effect[-1].item() == pytest.approx(1.0, abs=TOL)


def test_directions_are_mirror_images_at_the_last_layer(pair, batch) -> None:
    forward = patch_layers(*pair, batch, "policy_to_reference", layers=[6])
    backward = patch_layers(*pair, batch, "reference_to_policy", layers=[6])
    assert forward.effect.item() == pytest.approx(-backward.effect.item(), abs=TOL)
    assert forward.total_effect == pytest.approx(-backward.total_effect, abs=TOL)


def test_identical_models_have_zero_effect(batch) -> None:
    model = tiny_causal_lm("llama", num_layers=4)
    result = patch_layers(model, model, batch)
    assert result.effect.abs().max().item() < TOL
    assert torch.isnan(result.normalized_effect).all()  # nothing to normalise by
    assert result.to_dict()["normalized_effect"] == [None] * 4


def test_to_dict_is_json(pair, batch) -> None:
    result = patch_layers(*pair, batch, "reference_to_policy")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["direction"] == "reference_to_policy" and data["layers"] == [1, 2, 3, 4, 5, 6]
    assert len(data["per_example"]) == 6 and len(data["per_example"][0]) == 4
    assert data["forwards"] == result.forwards
    assert math.isclose(data["effect"][2], result.effect[2].item())
    assert isinstance(result, PatchResult)


def test_modes_restored_and_no_hooks_left(pair, batch) -> None:
    policy, reference = pair
    policy.train()
    blocks_of(policy)[1].eval()
    reference.eval()
    before = [(m, m.training) for model in pair for m in model.modules()]
    patch_layers(policy, reference, batch)
    assert all(m.training == mode for m, mode in before)
    for model in pair:
        for m in model.modules():
            assert not m._forward_hooks and not m._forward_pre_hooks
            assert "forward" not in m.__dict__  # no skipped-block stub left behind
    policy.eval()


def test_hooks_removed_after_an_error(pair, batch) -> None:
    policy, reference = pair
    bad = dict(batch)
    bad["input_ids"] = batch["input_ids"].clone()
    bad["input_ids"][0, 0] = 10_000  # out of vocabulary: the embedding fails inside the forward
    with pytest.raises((IndexError, RuntimeError)):
        patch_layers(policy, reference, bad)
    for model in pair:
        for m in model.modules():
            assert not m._forward_hooks and "forward" not in m.__dict__


def test_unknown_direction_lists_allowed_values(pair, batch) -> None:
    with pytest.raises(ValueError, match=r"policy_to_reference, reference_to_policy.*'sideways'"):
        patch_layers(*pair, batch, "sideways")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reference_kwargs", "what"),
    [
        ({"model_type": "gpt2", "num_layers": 6}, "architecture"),
        ({"model_type": "llama", "num_layers": 4}, "decoder blocks"),
        ({"model_type": "llama", "num_layers": 6, "vocab_size": 64}, "vocabulary"),
    ],
)
def test_incompatible_models_are_refused(pair, batch, reference_kwargs: dict, what: str) -> None:
    other = tiny_causal_lm(**reference_kwargs)
    with pytest.raises(ValueError, match=f"differ in {what}") as info:
        patch_layers(pair[0], other, batch)
    assert "policy LlamaForCausalLM" in str(info.value) and "reference " in str(info.value)


def test_reference_none_needs_peft(pair, batch) -> None:
    with pytest.raises(ValueError, match="not a PEFT model"):
        patch_layers(pair[0], None, batch)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("completion_mask"), "missing completion_mask"),
        (lambda b: b.update(input_ids=b["input_ids"][:7]), "has shape"),
        (lambda b: b.update({k: v[:7] for k, v in b.items()}), "2K rows"),
        (lambda b: b.update({k: v[0] for k, v in b.items()}), "must be 2-D"),
        (lambda b: b.update(attention_mask=b["attention_mask"].tolist()), "must be a torch.Tensor"),
    ],
)
def test_malformed_batches(pair, batch, mutate, message: str) -> None:
    bad = {k: v.clone() for k, v in batch.items()}
    mutate(bad)
    with pytest.raises(ValueError, match=message):
        patch_layers(*pair, bad)


def test_empty_completion_names_the_pair(pair, batch) -> None:
    bad = {k: v.clone() for k, v in batch.items()}
    bad["completion_mask"][4 + 2] = 0  # rejected row of pair 2
    with pytest.raises(ValueError, match="pair 2 has an empty rejected completion"):
        patch_layers(*pair, bad)


@pytest.mark.parametrize(("layers", "rows"), [([0], None), ([7], None), ([2, 2], None), ([], None), (None, 0)])
def test_bad_layers_and_rows(pair, batch, layers, rows) -> None:
    with pytest.raises(ValueError, match=r"layers|max_rows_per_forward"):
        patch_layers(*pair, batch, layers=layers, max_rows_per_forward=rows)


class _ToyBlock(nn.Module):
    """A block that returns a tuple, as older transformers versions do."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, None]:
        prefix = hidden.cumsum(1) / torch.arange(1, hidden.shape[1] + 1).view(1, -1, 1)  # causal mean
        return hidden + torch.tanh(self.mix(prefix)) * mask[..., None], None


class _ToyLM(nn.Module):
    def __init__(self, vocab: int = 32, dim: int = 16, layers: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(_ToyBlock(dim) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):  # type: ignore[no-untyped-def]
        hidden = self.embed(input_ids)
        for block in self.layers:
            hidden = block(hidden, attention_mask.float())[0]
        return type("Out", (), {"logits": self.lm_head(self.norm(hidden))})()


def test_tuple_block_outputs_on_a_registered_architecture(batch, monkeypatch) -> None:
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))  # undone after the test
    register_architecture("_ToyLM", blocks="layers", final_norm="norm", unembed="lm_head")
    torch.manual_seed(0)
    reference, policy = _ToyLM(), _ToyLM()
    policy.load_state_dict(reference.state_dict())
    with torch.no_grad():
        for block in policy.layers:
            block.mix.weight.add_(0.3 * torch.randn_like(block.mix.weight))
    toy_batch = {k: v.clone() for k, v in batch.items()}
    toy_batch["input_ids"] = toy_batch["input_ids"] % 32
    result = patch_layers(policy, reference, toy_batch)
    per_example, _, _ = naive_patch(reference, policy, toy_batch)
    torch.testing.assert_close(result.per_example, per_example, atol=TOL, rtol=0)
    assert result.normalized_effect[-1].item() == pytest.approx(1.0, abs=TOL)
