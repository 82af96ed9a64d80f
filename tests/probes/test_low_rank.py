"""low_rank_patch (SPEC §2): k = d recovers the full effect; the full patch equals patch_layers."""

from __future__ import annotations

import json

import pytest
import torch

from spinal_callback.probes import default_ranks, low_rank_patch, patch_layers
from spinal_callback.probes.low_rank import top_directions
from tests.probes._models import perturbed_pair, probe_batch


@pytest.fixture(scope="module")
def pair():
    return perturbed_pair(num_layers=4, scale=0.1)


@pytest.fixture(scope="module")
def batch():
    return probe_batch(num_pairs=3)


def test_default_ranks() -> None:
    assert default_ranks(32) == [1, 2, 4, 8, 16, 32]
    assert default_ranks(24) == [1, 2, 4, 8, 16, 24]
    assert default_ranks(1) == [1]


@pytest.mark.parametrize("center", [False, True])
def test_full_rank_recovers_everything(pair, batch, center: bool) -> None:
    result = low_rank_patch(*pair, batch, [2, 3], center=center)
    assert result.ranks == default_ranks(32) and result.layers == [2, 3]
    torch.testing.assert_close(result.fraction_recovered[:, -1], torch.ones(2, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(result.variance_explained[:, -1], torch.ones(2, dtype=torch.float64))
    assert (result.variance_explained.diff(dim=1) >= -1e-12).all()
    exact = patch_layers(*pair, batch, layers=[2, 3])
    torch.testing.assert_close(result.full_effect, exact.effect, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.normalized_full_effect, exact.normalized_effect, atol=1e-4, rtol=0)
    assert result.forwards == 2 + 7 and result.centered is center  # (1 + 6 ranks) × 2 layers, 2 per forward
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert len(data["fraction_recovered"][0]) == len(result.ranks)


def test_rank_one_is_a_projection_of_the_difference(pair, batch) -> None:
    """k = 1 patches only the component of h_pol − h_ref along the policy's top direction."""
    result = low_rank_patch(*pair, batch, [1], ranks=[1], max_rows_per_forward=4)
    assert result.effect.shape == (1, 1) and torch.isfinite(result.fraction_recovered).all()
    assert abs(result.fraction_recovered.item() - 1.0) > 1e-3  # one direction is not the whole patch


def test_top_directions_complete_the_basis_when_tokens_are_few() -> None:
    hidden = torch.randn(3, 8)
    vectors, s2 = top_directions(hidden)
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(8, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(s2[:3], torch.linalg.svdvals(hidden.double()) ** 2, atol=1e-8, rtol=1e-8)
    assert s2[3:].abs().max() < 1e-8


def test_bad_ranks(pair, batch) -> None:
    with pytest.raises(ValueError, match="ranks"):
        low_rank_patch(*pair, batch, [1], ranks=[0])
    with pytest.raises(ValueError, match="ranks"):
        low_rank_patch(*pair, batch, [1], ranks=[33])
