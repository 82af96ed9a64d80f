"""compute_depth_trace / DepthTrace on tiny random models, against an independent computation (SPEC §1, §6).

Also the probe's side effects: train/eval flags restored, no hooks left behind, not even after an error.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from spinal_callback.geometry import (
    LAYER_METRICS,
    DepthTrace,
    capture_hidden,
    compute_depth_trace,
    hidden_curvature,
    trace_from_hidden,
)
from spinal_callback.model.architectures import resolve_layout
from tests.conftest import make_batch, tiny_causal_lm

NUM_LAYERS = 4
ROW_KEYS = {
    "layer",
    "contraction",
    "transport",
    "entropy",
    "effective_rank",
    "transport_curvature",
    "hidden_curvature",
}


def lively_llama(**overrides) -> torch.nn.Module:
    """A tiny llama whose logit-lens distributions move visibly between layers (transport ≈ 0.5–0.9)."""
    return tiny_causal_lm("llama", num_layers=NUM_LAYERS, initializer_range=0.2, **overrides)


@pytest.fixture
def model() -> torch.nn.Module:
    return lively_llama()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return make_batch(batch_size=4, seq_len=12, left_pad=(0, 3, 1, 5))


def _trace(model: torch.nn.Module, batch: dict[str, torch.Tensor], **options) -> DepthTrace:
    return compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], **options)


# ----------------------------------------------------------------------------- independent reference
def reference_metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor], select: torch.Tensor) -> dict:
    """Transport, entropy and effective rank computed without spinal_callback's lens or capture.

    Uses ``output_hidden_states=True``: ``hidden_states[ℓ]`` (ℓ < L) is block ℓ's output before the final
    norm, while ``hidden_states[L]`` already has the norm applied — so the last layer's lens distribution
    is simply the model's own output.
    """
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    assert len(out.hidden_states) == NUM_LAYERS + 1
    rows, cols = select.bool().nonzero(as_tuple=True)
    logits = []
    with torch.no_grad():
        for layer in range(1, NUM_LAYERS):
            h = out.hidden_states[layer][rows, cols]
            logits.append(model.lm_head(model.model.norm(h)).double().numpy())
    logits.append(out.logits[rows, cols].double().numpy())
    logp = [lg - logsumexp(lg, axis=-1, keepdims=True) for lg in logits]
    transport = []
    for a, b in itertools.pairwise(logp):
        bc = np.sqrt(np.exp(a) * np.exp(b)).sum(axis=-1)
        transport.append(float((2 * np.arccos(np.clip(bc, 0, 1))).mean()))
    entropy = [float((-(np.exp(lp) * lp).sum(axis=-1)).mean()) for lp in logp]

    erank = []
    for layer in range(1, NUM_LAYERS):
        x = out.hidden_states[layer][rows, cols].double().numpy()
        s = np.linalg.svd(x - x.mean(0), compute_uv=False)
        p = s / s.sum() + 1e-7
        erank.append(float(np.exp(-(p * np.log(p)).sum())))
    return {"transport": transport, "entropy": entropy, "effective_rank": erank, "num_tokens": len(rows)}


def test_transport_and_entropy_match_an_independent_computation(model, batch) -> None:
    trace = _trace(model, batch, max_tokens=None)
    ref = reference_metrics(model, batch, batch["attention_mask"])
    assert trace.num_tokens == ref["num_tokens"] == int(batch["attention_mask"].sum())
    np.testing.assert_allclose(trace.transport[:-1], ref["transport"], rtol=0, atol=1e-5)
    assert math.isnan(trace.transport[-1])
    np.testing.assert_allclose(trace.entropy, ref["entropy"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(trace.effective_rank[:-1], ref["effective_rank"], rtol=1e-5)
    assert min(trace.transport[:-1]) > 0.1  # the check is not vacuous


def test_completion_mask_selects_the_measured_tokens(model, batch) -> None:
    everything = _trace(model, batch, max_tokens=None)
    completion = _trace(model, batch, completion_mask=batch["completion_mask"], max_tokens=None)
    selected = batch["attention_mask"] & batch["completion_mask"]
    assert 0 < completion.num_tokens == int(selected.sum()) < everything.num_tokens
    ref = reference_metrics(model, batch, selected)
    np.testing.assert_allclose(completion.transport[:-1], ref["transport"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(completion.entropy, ref["entropy"], rtol=0, atol=1e-5)
    assert completion.transport[:-1] != pytest.approx(everything.transport[:-1], rel=1e-6)


def test_max_tokens_cap_is_respected_and_deterministic(model, batch) -> None:
    total = int(batch["attention_mask"].sum())
    first = _trace(model, batch, max_tokens=20)
    second = _trace(model, batch, max_tokens=20)
    assert first.num_tokens == second.num_tokens == 20 < total
    assert first.to_dict() == second.to_dict()
    other_seed = _trace(model, batch, max_tokens=20, seed=1)
    assert other_seed.to_dict() != first.to_dict()
    # A cap above the number of tokens keeps them all.
    uncapped = _trace(model, batch, max_tokens=None)
    assert _trace(model, batch, max_tokens=10_000).to_dict() == uncapped.to_dict()
    assert uncapped.num_tokens == total


def test_trace_ignores_the_order_of_batch_rows(model, batch) -> None:
    perm = torch.tensor([2, 0, 3, 1])
    shuffled = {k: v[perm] for k, v in batch.items()}
    for completion in (None, "completion_mask"):
        cm_a = None if completion is None else batch[completion]
        cm_b = None if completion is None else shuffled[completion]
        a = _trace(model, batch, completion_mask=cm_a, max_tokens=None)
        b = _trace(model, shuffled, completion_mask=cm_b, max_tokens=None)
        assert a.num_tokens == b.num_tokens
        for name in LAYER_METRICS:
            np.testing.assert_allclose(b.metric(name), a.metric(name), rtol=1e-6, atol=1e-9, err_msg=name)


def test_chunk_size_does_not_change_the_trace(model, batch) -> None:
    reference = _trace(model, batch, max_tokens=None, chunk_size=1000)
    for chunk_size in (1, 7):
        trace = _trace(model, batch, max_tokens=None, chunk_size=chunk_size)
        for name in LAYER_METRICS:
            # float32 lens matmuls round differently for different chunk shapes: ~1e-8.
            np.testing.assert_allclose(trace.metric(name), reference.metric(name), rtol=1e-6, err_msg=name)
    with pytest.raises(ValueError, match="chunk_size"):
        _trace(model, batch, chunk_size=0)


def test_trace_curvatures_and_bands_are_consistent(model, batch) -> None:
    trace = _trace(model, batch, max_tokens=None)
    hidden = capture_hidden(model, batch["input_ids"], batch["attention_mask"], max_tokens=None)
    assert [h.shape for h in hidden] == [(trace.num_tokens, 32)] * NUM_LAYERS
    np.testing.assert_allclose(trace.hidden_curvature, hidden_curvature(hidden), rtol=1e-12)
    t = trace.transport
    # L = 4: κ^𝓛 is defined only for ℓ = 2.
    assert math.isnan(trace.transport_curvature[0]) and math.isnan(trace.transport_curvature[3])
    assert math.isnan(trace.transport_curvature[2])
    assert trace.transport_curvature[1] == pytest.approx(abs(t[2] - 2 * t[1] + t[0]), abs=1e-12)
    assert trace.layers == [1, 2, 3, 4]
    # Bands of 4 layers (cuts at round(4/3) = 1 and round(8/3) = 3): early = [1], mid = [2, 3], late = [4].
    assert trace.bands["early"]["layers"] == [1, 1]
    assert trace.bands["mid"]["layers"] == [2, 3]
    assert trace.bands["late"]["layers"] == [4, 4]
    assert trace.bands["mid"]["contraction"] == pytest.approx(np.mean(trace.contraction[1:3]), rel=1e-12)
    assert trace.bands["mid"]["transport"] == pytest.approx(np.mean(t[1:3]), rel=1e-12)
    assert trace.bands["mid"]["transport_curvature"] == pytest.approx(trace.transport_curvature[1], rel=1e-12)
    # The late band holds only the last layer, whose transport is undefined.
    assert math.isnan(trace.bands["late"]["transport"])
    assert trace.bands["late"]["entropy"] == pytest.approx(trace.entropy[3], rel=1e-12)
    assert all(math.isfinite(v) for v in trace.contraction + trace.entropy + trace.effective_rank)


def test_trace_bands_option_moves_the_boundaries(model, batch) -> None:
    trace = _trace(model, batch, max_tokens=None, bands=(0.5, 0.75))
    assert trace.bands["early"]["layers"] == [1, 2]
    assert trace.bands["mid"]["layers"] == [3, 3]
    assert trace.bands["late"]["layers"] == [4, 4]


# ---------------------------------------------------------------------------------------- to_dict/JSON
def test_to_dict_matches_the_spec_shape(model, batch) -> None:
    data = _trace(model, batch).to_dict()
    # SPEC §6 keys, plus the documented token count.
    assert {"layers", "bands"} <= set(data) <= {"layers", "bands", "num_tokens"}
    assert [row["layer"] for row in data["layers"]] == list(range(1, NUM_LAYERS + 1))
    for row in data["layers"]:
        assert set(row) == ROW_KEYS
        assert isinstance(row["layer"], int)
    assert data["layers"][-1]["transport"] is None
    assert all(isinstance(row["transport"], float) for row in data["layers"][:-1])
    assert data["layers"][0]["transport_curvature"] is None and data["layers"][0]["hidden_curvature"] is None
    assert isinstance(data["layers"][1]["transport_curvature"], float)
    assert set(data["bands"]) == {"early", "mid", "late"}
    for summary in data["bands"].values():
        assert {"contraction", "transport", "transport_curvature"} <= set(summary)


def test_json_round_trip(model, batch) -> None:
    trace = _trace(model, batch)
    line = trace.to_json(step=7)
    assert "\n" not in line and "NaN" not in line
    record = json.loads(line)
    assert record["step"] == 7
    restored = DepthTrace.from_dict(record)
    assert restored.to_dict() == trace.to_dict()
    assert restored.layers == trace.layers and restored.num_tokens == trace.num_tokens
    for name in LAYER_METRICS:
        np.testing.assert_array_equal(restored.metric(name), trace.metric(name))  # NaN == NaN here
    assert math.isnan(restored.transport[-1])


def test_metric_rejects_unknown_names(model, batch) -> None:
    with pytest.raises(KeyError, match="contraction"):
        _trace(model, batch).metric("alpha")


def test_trace_from_hidden_uses_given_layer_ids() -> None:
    model = lively_llama()
    layout = resolve_layout(model)
    gen = torch.Generator().manual_seed(0)
    hidden = [torch.randn(40, 32, generator=gen) for _ in range(3)]
    trace = trace_from_hidden(hidden, layout, layers=[5, 6, 7])
    assert trace.layers == [5, 6, 7]
    assert trace.bands["mid"]["layers"] == [6, 6]
    with pytest.raises(ValueError, match="empty"):
        trace_from_hidden([], layout)


# ------------------------------------------------------------------------------------- side effects
def _hook_counts(model: torch.nn.Module) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


def test_train_flags_are_restored_and_eval_mode_is_used() -> None:
    model = lively_llama(attention_dropout=0.5)
    batch = make_batch(batch_size=2, seq_len=10)
    model.train()
    model.model.layers[1].eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    first = _trace(model, batch)
    assert [m.training for m in model.modules()] == before
    # Dropout 0.5 is active in train mode: identical traces prove the forward ran in eval mode.
    assert _trace(model, batch).to_dict() == first.to_dict()
    model.eval()
    assert _trace(model, batch).to_dict() == first.to_dict()
    assert torch.is_grad_enabled()


def test_no_hooks_remain_and_the_model_still_works(model, batch) -> None:
    layout = resolve_layout(model)
    before = _hook_counts(model)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    _trace(model, batch, completion_mask=batch["completion_mask"])
    assert all(not block._forward_hooks for block in layout.blocks)
    assert _hook_counts(model) == before
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        again = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    torch.testing.assert_close(again.logits, logits, rtol=0, atol=0)
    assert len(again.hidden_states) == NUM_LAYERS + 1


def test_no_hooks_remain_when_the_forward_raises(model, batch, monkeypatch) -> None:
    layout = resolve_layout(model)
    model.train()
    before_hooks = _hook_counts(model)
    before_modes = [m.training for m in model.modules()]

    def broken(*args, **kwargs):
        raise RuntimeError("boom in block 3")

    monkeypatch.setattr(layout.blocks[2], "forward", broken)
    with pytest.raises(RuntimeError, match="boom in block 3"):
        _trace(model, batch)
    assert all(not block._forward_hooks for block in layout.blocks)
    assert _hook_counts(model) == before_hooks
    assert [m.training for m in model.modules()] == before_modes


def test_all_padding_batch_raises_a_clear_error(model, batch) -> None:
    padding = torch.zeros_like(batch["attention_mask"])
    with pytest.raises(ValueError, match="selects no token"):
        compute_depth_trace(model, batch["input_ids"], padding)
    empty_completion = torch.zeros_like(batch["completion_mask"])
    with pytest.raises(ValueError, match="completion"):
        compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], empty_completion)
    assert all(not block._forward_hooks for block in resolve_layout(model).blocks)


def test_malformed_inputs_raise(model, batch) -> None:
    with pytest.raises(ValueError, match="2-D"):
        compute_depth_trace(model, batch["input_ids"][0], batch["attention_mask"][0])
    with pytest.raises(ValueError, match="differs"):
        compute_depth_trace(model, batch["input_ids"], batch["attention_mask"][:, :5])
    with pytest.raises(ValueError, match="max_tokens"):
        compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=0)


# ---------------------------------------------------------------------------------- other model states
@pytest.mark.parametrize("num_layers", [1, 2])
def test_shallow_models_give_a_serialisable_trace(num_layers: int) -> None:
    model = tiny_causal_lm("llama", num_layers=num_layers)
    batch = make_batch()
    trace = compute_depth_trace(model, batch["input_ids"], batch["attention_mask"])
    assert trace.num_layers == num_layers and math.isnan(trace.transport[-1])
    assert all(math.isnan(v) for v in trace.transport_curvature + trace.hidden_curvature)
    assert all(math.isfinite(v) for v in trace.contraction + trace.entropy)
    assert DepthTrace.from_dict(json.loads(trace.to_json())).to_dict() == trace.to_dict()


def test_bfloat16_model_gives_close_float_metrics(model, batch) -> None:
    reference = _trace(model, batch, max_tokens=None)
    low = _trace(model.to(torch.bfloat16), batch, max_tokens=None)
    assert all(isinstance(v, float) for v in low.transport + low.contraction)
    np.testing.assert_allclose(low.transport[:-1], reference.transport[:-1], atol=0.02)
    np.testing.assert_allclose(low.entropy, reference.entropy, atol=0.02)
    np.testing.assert_allclose(low.contraction, reference.contraction, atol=0.05)


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
def test_gradient_checkpointing_training_model_is_probed_in_eval(model, batch) -> None:
    """TRL turns gradient checkpointing on by default; the probe must still see one plain forward."""
    expected = _trace(model, batch).to_dict()
    model.gradient_checkpointing_enable()
    model.train()
    assert _trace(model, batch).to_dict() == expected
    assert model.training and all(m.training for m in model.modules())
