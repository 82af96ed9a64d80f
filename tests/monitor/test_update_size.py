"""``update/size`` (the RMS per-step change of a fixed sample of trainable weights) and ``update/turn`` (how far the
latest change turned from the sample's recent course), against known answers and numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from spinal_callback.monitor.update_size import TURN_SIGNAL, TURN_WINDOW, UPDATE_SIGNAL, UpdateSampler


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 400), nn.Linear(400, 500), nn.LayerNorm(500))
    model[2].weight.requires_grad_(False)  # frozen: never sampled
    return model


@torch.no_grad()
def _shift(model: nn.Module, by: float) -> None:
    for p in model.parameters():
        if p.requires_grad:
            p.add_(by)


def test_a_uniform_shift_gives_its_size_per_step_whatever_the_sample() -> None:
    model = _model()
    sampler = UpdateSampler(model, coordinates=4096)
    assert 4000 <= sampler.coordinates <= 4096  # repeats of the draw dropped
    assert sampler.measure(10) == {}  # the first reading is the baseline
    _shift(model, 3e-3)
    assert sampler.measure(13)[UPDATE_SIGNAL] == pytest.approx(1e-3, rel=1e-4)  # 3e-3 over 3 steps
    _shift(model, -5e-4)
    assert sampler.measure(14)[UPDATE_SIGNAL] == pytest.approx(5e-4, rel=1e-4)


@torch.no_grad()
def test_a_random_update_is_estimated_from_the_sample() -> None:
    model = _model()
    sampler = UpdateSampler(model, coordinates=16384, seed=1)
    sampler.measure(0)
    generator = torch.Generator().manual_seed(2)
    squares = count = 0.0
    for p in model.parameters():
        if p.requires_grad:
            delta = torch.randn(p.shape, generator=generator) * 2e-4
            p.add_(delta)
            squares += float((delta.double() ** 2).sum())
            count += delta.numel()
    exact = math.sqrt(squares / count)
    assert sampler.measure(2)[UPDATE_SIGNAL] == pytest.approx(exact / 2, rel=0.03)


def test_frozen_weights_are_not_sampled_and_every_weight_is_when_there_are_few() -> None:
    model = _model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    everything = UpdateSampler(model, coordinates=10**9)
    assert everything.coordinates == trainable
    everything.measure(0)
    with torch.no_grad():
        model[2].weight.add_(1.0)  # frozen
    assert everything.measure(1) == {UPDATE_SIGNAL: 0.0}
    frozen = nn.Linear(3, 3).requires_grad_(False)
    none = UpdateSampler(frozen, coordinates=8)
    assert none.coordinates == 0 and none.measure(0) == {} and none.measure(1) == {}


def test_a_model_of_mixed_dtypes_is_read_exactly_in_float32_in_the_parameters_order() -> None:
    model = _model()
    model[0].to(torch.bfloat16)  # e.g. a half-precision adapter next to float32 weights
    sampler = UpdateSampler(model, coordinates=10**9)  # every trainable element
    values = sampler.read()
    expected = torch.cat([p.detach().reshape(-1).float() for p in model.parameters() if p.requires_grad])
    assert values.dtype == torch.float32
    assert torch.equal(values, expected)


def test_a_replaced_tensor_is_read_where_it_is_now_and_a_zero3_partition_at_every_read() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    weight, bias = model[0].weight, model[0].bias
    bias.ds_tensor = torch.arange(5.0)  # a ZeRO-3 parameter: this rank holds a partition of 5 elements
    sampler = UpdateSampler(model, coordinates=10**9)
    assert sampler.coordinates == weight.numel() + 5
    with torch.no_grad():
        weight.data = torch.full((3, 4), 7.0)  # e.g. a restore that swaps the tensor, not its values
    bias.ds_tensor = torch.arange(5.0) + 100.0  # the partition swapped as well
    values = sampler.read()
    assert not values.requires_grad
    assert torch.equal(values, torch.cat([torch.full((12,), 7.0), torch.arange(5.0) + 100.0]))
    with torch.no_grad():
        weight.add_(1.0)  # an in-place update of the swapped tensor: read through its new flat view
    assert torch.equal(sampler.read(), torch.cat([torch.full((12,), 8.0), torch.arange(5.0) + 100.0]))


def test_reset_makes_the_next_reading_a_baseline_and_the_runs_random_stream_is_untouched() -> None:
    model = _model()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    sampler = UpdateSampler(model, coordinates=512, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    sampler.measure(0)
    _shift(model, 1.0)  # e.g. a rollback restored other weights
    sampler.reset()
    assert sampler.measure(2) == {}
    _shift(model, 2e-3)
    assert sampler.measure(4)[UPDATE_SIGNAL] == pytest.approx(1e-3, rel=1e-4)
    assert sampler.measure(4) == {}  # not after the last reading: a new baseline
    with pytest.raises(ValueError, match="coordinates"):
        UpdateSampler(model, coordinates=0)


# ------------------------------------------------------------------------------------------------ update/turn
@torch.no_grad()
def _move(model: nn.Module, direction: list[torch.Tensor], scale: float) -> None:
    for p, d in zip((p for p in model.parameters() if p.requires_grad), direction, strict=True):
        p.add_(d, alpha=scale)


def _direction(model: nn.Module, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=generator) for p in model.parameters() if p.requires_grad]


def test_the_turn_is_0_on_course_1_orthogonal_and_2_reversed() -> None:
    model = _model()
    sampler = UpdateSampler(model, coordinates=16384)
    course = _direction(model, 1)
    for probe in range(TURN_WINDOW + 1):  # K + 1 readings before the first turn
        assert TURN_SIGNAL not in sampler.measure(2 * probe)
        _move(model, course, 1e-3 * (1 + probe % 3))  # on course, at varying speed
    assert sampler.measure(2 * (TURN_WINDOW + 1))[TURN_SIGNAL] == pytest.approx(0.0, abs=1e-6)
    _move(model, course, -5e-3)  # reversed
    assert sampler.measure(2 * (TURN_WINDOW + 2))[TURN_SIGNAL] == pytest.approx(2.0, abs=1e-6)
    sampler.reset()
    assert sampler.measure(100) == {}  # a new baseline: neither size nor turn
    for probe in range(TURN_WINDOW):
        _move(model, course, 1e-3)
        assert TURN_SIGNAL not in sampler.measure(102 + 2 * probe)
    # orthogonal to the course: a fresh random direction is nearly so in 16 384 coordinates (|cos| ~ 1/128)
    _move(model, _direction(model, 2), 1e-3)
    assert sampler.measure(102 + 2 * TURN_WINDOW)[TURN_SIGNAL] == pytest.approx(1.0, abs=0.05)


@torch.no_grad()
def test_the_turn_matches_numpy_on_every_weight() -> None:
    """Sampling every trainable weight, the turn is numpy's 1 − cos of the last update and the course before it."""
    model = _model()
    sampler = UpdateSampler(model, coordinates=10**9)
    flat = lambda: np.concatenate([p.detach().numpy().ravel() for p in model.parameters() if p.requires_grad])  # noqa: E731
    snapshots = []
    generator = torch.Generator().manual_seed(3)
    for probe in range(TURN_WINDOW + 2):
        snapshots.append(flat().astype(np.float64))
        out = sampler.measure(probe)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 1e-3 + 2e-4)  # a drift plus noise
    snapshots.append(flat().astype(np.float64))
    out = sampler.measure(TURN_WINDOW + 2)
    now = snapshots[-1] - snapshots[-2]
    course = snapshots[-2] - snapshots[-2 - TURN_WINDOW]
    expected = 1.0 - now @ course / (np.linalg.norm(now) * np.linalg.norm(course))
    assert out[TURN_SIGNAL] == pytest.approx(expected, abs=1e-5)
    assert out[UPDATE_SIGNAL] == pytest.approx(np.linalg.norm(now) / math.sqrt(now.size), rel=1e-4)


def test_reads_are_copies_and_follow_a_parameter_whose_dtype_or_layout_changes() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[1].weight = nn.Parameter(torch.randn(3, 2).t())  # a non-contiguous parameter (a transposed view)
    sampler = UpdateSampler(model, coordinates=10**9)

    def expected() -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])

    first = sampler.read()
    assert torch.equal(first, expected())
    kept = first.clone()
    _shift(model, 1.0)
    second = sampler.read()
    assert torch.equal(second, expected())
    assert torch.equal(first, kept)  # an earlier reading is not overwritten by the next one
    with torch.no_grad():
        model[0].weight.data = model[0].weight.data.to(torch.bfloat16)  # the dtype changes under the sampler
    assert torch.equal(sampler.read(), expected())
    assert sampler.measure(0) == {} and UPDATE_SIGNAL in sampler.measure(1)
