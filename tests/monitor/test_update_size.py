"""``update/size``: the RMS per-step change of a fixed sample of trainable weights, against known answers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spinal_callback.monitor.update_size import UpdateSampler


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
    assert sampler.measure(10) is None  # the first reading is the baseline
    _shift(model, 3e-3)
    assert sampler.measure(13) == pytest.approx(1e-3, rel=1e-4)  # 3e-3 over 3 steps
    _shift(model, -5e-4)
    assert sampler.measure(14) == pytest.approx(5e-4, rel=1e-4)


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
    assert sampler.measure(2) == pytest.approx(exact / 2, rel=0.03)


def test_frozen_weights_are_not_sampled_and_every_weight_is_when_there_are_few() -> None:
    model = _model()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    everything = UpdateSampler(model, coordinates=10**9)
    assert everything.coordinates == trainable
    everything.measure(0)
    with torch.no_grad():
        model[2].weight.add_(1.0)  # frozen
    assert everything.measure(1) == 0.0
    frozen = nn.Linear(3, 3).requires_grad_(False)
    none = UpdateSampler(frozen, coordinates=8)
    assert none.coordinates == 0 and none.measure(0) is None and none.measure(1) is None


def test_reset_makes_the_next_reading_a_baseline_and_the_runs_random_stream_is_untouched() -> None:
    model = _model()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    sampler = UpdateSampler(model, coordinates=512, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    sampler.measure(0)
    _shift(model, 1.0)  # e.g. a rollback restored other weights
    sampler.reset()
    assert sampler.measure(2) is None
    _shift(model, 2e-3)
    assert sampler.measure(4) == pytest.approx(1e-3, rel=1e-4)
    assert sampler.measure(4) is None  # not after the last reading
    with pytest.raises(ValueError, match="coordinates"):
        UpdateSampler(model, coordinates=0)
