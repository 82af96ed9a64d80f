"""Partial depth traces (issue 14): layer plans, equality with the full trace, early stop, JSON with null layers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spinal_callback.geometry import (
    LAYER_METRICS,
    DepthTrace,
    LayerPlan,
    band_layers,
    band_slices,
    capture_hidden,
    capture_layers,
    compute_depth_trace,
    trace_from_hidden,
)
from spinal_callback.model.architectures import resolve_layout
from tests.conftest import make_batch, tiny_causal_lm

DEPTH = 12


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_causal_lm("llama", num_layers=DEPTH, initializer_range=0.2)


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    return make_batch(batch_size=4, seq_len=12, left_pad=(0, 3, 1, 5))


@pytest.fixture(scope="module")
def full(model, batch) -> DepthTrace:
    return compute_depth_trace(model, batch["input_ids"], batch["attention_mask"], max_tokens=None, chunk_size=7)


# ------------------------------------------------------------------------------------------ LayerPlan
def test_band_layers_are_the_trace_bands() -> None:
    for depth in (1, 2, 4, 12, 32):
        slices = band_slices(depth, (0.25, 0.6))
        for band, idx in slices.items():
            assert band_layers(band, depth, (0.25, 0.6)) == [i + 1 for i in idx]
    assert band_layers("late", 32) == list(range(22, 33))
    with pytest.raises(ValueError, match="early, mid, late"):
        band_layers("final", 12)


def test_late_band_plan_of_twelve_layers() -> None:
    plan = LayerPlan.for_band("late", DEPTH)
    assert plan.computed == (9, 10, 11, 12)
    assert plan.transport_steps == (8, 9, 10, 11)  # 𝓛_9..𝓛_11, and 𝓛_8 for κ^𝓛_9
    assert plan.lens == (8, 9, 10, 11, 12)
    assert plan.hidden == (8, 9, 10, 11, 12)
    assert not plan.is_full and LayerPlan.of(None, DEPTH).is_full


def test_mid_band_plan_needs_neighbours_on_both_sides() -> None:
    plan = LayerPlan.of(band_layers("mid", DEPTH), DEPTH)
    assert plan.computed == (5, 6, 7, 8)
    assert plan.transport_steps == (4, 5, 6, 7, 8, 9)
    assert plan.lens == tuple(range(4, 11))
    assert plan.hidden == tuple(range(4, 11))
    # The first and last layers have neither κ^𝓛 nor κ^h: only their own lens (and 𝓛_1).
    assert LayerPlan.of([1], DEPTH).hidden == (1, 2)
    assert LayerPlan.of([DEPTH], DEPTH).hidden == (DEPTH,)


def test_plan_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="empty"):
        LayerPlan.of([], DEPTH)
    with pytest.raises(ValueError, match=r"\[0, 13\]"):
        LayerPlan.of([0, 3, 13], DEPTH)
    with pytest.raises(ValueError, match="empty"):
        LayerPlan.for_band("late", 1)
    assert LayerPlan.of([3, 2, 3], DEPTH).computed == (2, 3)


# ------------------------------------------------------------------------ equality with the full trace
def _assert_equal_on_computed(partial: DepthTrace, full: DepthTrace, computed: list[int]) -> None:
    assert partial.layers == full.layers and partial.num_tokens == full.num_tokens
    assert partial.computed == computed and partial.is_partial
    for name in LAYER_METRICS:
        got, want = partial.metric(name), full.metric(name)
        for layer in full.layers:
            value = got[layer - 1]
            if layer in computed:
                np.testing.assert_array_equal(value, want[layer - 1], err_msg=f"{name} at layer {layer}")
            else:
                assert math.isnan(value), f"{name} at uncomputed layer {layer} is {value}"
    assert any(math.isfinite(v) for v in partial.transport_curvature)  # the check is not vacuous


@pytest.mark.parametrize(
    "selection", [band_layers("late", DEPTH), band_layers("mid", DEPTH), [1, 6, 12], [2], [3, 4, 5, 6, 7, 8, 9, 10]]
)
def test_partial_trace_equals_the_full_trace_on_its_layers(model, batch, full, selection) -> None:
    partial = compute_depth_trace(
        model, batch["input_ids"], batch["attention_mask"], max_tokens=None, chunk_size=7, compute_layers=selection
    )
    _assert_equal_on_computed(partial, full, sorted(selection))


def test_late_band_summary_equals_the_full_trace_and_other_bands_are_null(model, batch, full) -> None:
    late = compute_depth_trace(
        model, batch["input_ids"], batch["attention_mask"], max_tokens=None, chunk_size=7,
        compute_layers=band_layers("late", DEPTH),
    )
    assert late.bands["late"] == full.bands["late"]
    data = late.to_dict()
    for band in ("early", "mid"):
        assert data["bands"][band]["layers"] == full.to_dict()["bands"][band]["layers"]
        assert all(data["bands"][band][name] is None for name in LAYER_METRICS)


def test_trace_from_hidden_with_a_full_capture_or_a_partial_one(model, batch, full) -> None:
    layout = resolve_layout(model)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    plan = LayerPlan.for_band("late", DEPTH)
    captured = capture_layers(model, ids, mask, layers=plan.hidden, layout=layout, max_tokens=None)
    assert sorted(captured) == list(plan.hidden)
    everything = capture_hidden(model, ids, mask, layout=layout, max_tokens=None)
    for layer, h in captured.items():
        torch.testing.assert_close(h, everything[layer - 1], rtol=0, atol=0)
    a = trace_from_hidden(captured, layout, compute_layers=plan.computed, chunk_size=7)
    b = trace_from_hidden(everything, layout, compute_layers=plan.computed, chunk_size=7)
    assert a.to_dict() == b.to_dict()
    _assert_equal_on_computed(a, full, list(plan.computed))
    del captured[8]
    with pytest.raises(ValueError, match=r"lacks layers \[8\]"):
        trace_from_hidden(captured, layout, compute_layers=plan.computed)


def test_capture_stops_after_the_deepest_needed_block(model, batch) -> None:
    layout = resolve_layout(model)
    calls = [0] * DEPTH

    def counter(index: int):
        def hook(*_: object) -> None:
            calls[index] += 1

        return hook

    handles = [block.register_forward_hook(counter(i)) for i, block in enumerate(layout.blocks)]
    try:
        compute_depth_trace(
            model, batch["input_ids"], batch["attention_mask"], compute_layers=band_layers("mid", DEPTH)
        )
    finally:
        for handle in handles:
            handle.remove()
    assert calls == [1] * 10 + [0, 0]  # the mid band (5-8) needs blocks up to 10


# ------------------------------------------------------------------------------------------ JSON record
def test_json_round_trip_with_null_layers(model, batch) -> None:
    partial = compute_depth_trace(
        model, batch["input_ids"], batch["attention_mask"], compute_layers=band_layers("late", DEPTH)
    )
    line = partial.to_json(step=3)
    assert "NaN" not in line
    record = json.loads(line)
    assert record["computed_layers"] == [9, 10, 11, 12]
    for row in record["layers"]:
        if row["layer"] in record["computed_layers"]:
            assert all(row[name] is not None for name in ("contraction", "entropy", "effective_rank"))
        else:
            assert all(row[name] is None for name in LAYER_METRICS)
    assert record["layers"][8]["transport"] is not None and record["layers"][11]["transport"] is None
    restored = DepthTrace.from_dict(record)
    assert restored.to_dict() == partial.to_dict()
    assert restored.computed == [9, 10, 11, 12] and restored.is_partial
    for name in LAYER_METRICS:
        np.testing.assert_array_equal(restored.metric(name), partial.metric(name))  # NaN == NaN here


def test_a_full_trace_record_has_no_computed_layers_key(full) -> None:
    record = full.to_dict()
    assert "computed_layers" not in record and full.computed is None and not full.is_partial
    assert DepthTrace.from_dict(record).computed is None
