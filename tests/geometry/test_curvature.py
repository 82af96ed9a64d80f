"""Curvature along depth and the early / mid / late bands (SPEC §1.5, §1.6)."""

from __future__ import annotations

import math

import pytest
import torch

from spinal_callback.geometry import band_slices, hidden_curvature, transport_curvature


def _same(got: list[float], expected: list[float], rel: float = 0.0) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if math.isnan(e):
            assert math.isnan(g), (got, expected)
        else:
            assert g == pytest.approx(e, rel=rel, abs=1e-12), (got, expected)


# ------------------------------------------------------------------------------- transport curvature
def test_transport_curvature_hand_computed() -> None:
    # L = 6 layers → 𝓛_1..𝓛_5; κ_ℓ = |𝓛_{ℓ+1} − 2𝓛_ℓ + 𝓛_{ℓ−1}| for ℓ = 2..4.
    transport = [0.5, 0.7, 1.2, 1.0, 0.1]
    expected = [
        math.nan,
        abs(1.2 - 2 * 0.7 + 0.5),  # 0.3
        abs(1.0 - 2 * 1.2 + 0.7),  # 0.7
        abs(0.1 - 2 * 1.0 + 1.2),  # 0.7
        math.nan,
        math.nan,
    ]
    _same(transport_curvature(transport, 6), expected)
    _same(transport_curvature(torch.tensor(transport, dtype=torch.float64), 6), expected)


def test_transport_curvature_is_zero_on_a_straight_line() -> None:
    out = transport_curvature([0.1 * i + 0.3 for i in range(1, 8)], 8)
    assert all(math.isnan(v) for v in (out[0], out[-2], out[-1]))
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in out[1:-2])


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_transport_curvature_is_all_nan_when_undefined(num_layers: int) -> None:
    out = transport_curvature([0.2] * (num_layers - 1), num_layers)
    assert len(out) == num_layers and all(math.isnan(v) for v in out)


def test_transport_curvature_checks_the_length() -> None:
    with pytest.raises(ValueError, match="num_layers - 1 = 4"):
        transport_curvature([0.1, 0.2, 0.3], 5)


# ---------------------------------------------------------------------------------- hidden curvature
def test_hidden_curvature_is_zero_for_a_linear_depth_path() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, 16, generator=gen), torch.randn(20, 16, generator=gen)
    hidden = [a + layer * b for layer in range(1, 7)]  # h_ℓ = a + ℓ·b
    out = hidden_curvature(hidden)
    assert len(out) == 6
    assert math.isnan(out[0]) and math.isnan(out[-1])
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in out[1:-1])


def test_hidden_curvature_hand_computed() -> None:
    # Two tokens in R^2.
    h1 = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    h2 = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    h3 = torch.tensor([[1.0, 3.0], [1.0, 1.0]])
    h4 = torch.tensor([[2.0, 3.0], [1.0, 1.0]])
    # ℓ = 2: second differences (1, 3) and (0, −2); mean norm (√10 + 2)/2 over mean ‖h_2‖ = (1 + √5)/2.
    k2 = (math.sqrt(10) + 2) / (1 + math.sqrt(5))
    # ℓ = 3: h4 − 2h3 + h2 = (1, −3), (0, 1); mean ‖h_3‖ = (√10 + √2)/2.
    k3 = (math.sqrt(10) + 1) / (math.sqrt(10) + math.sqrt(2))
    _same(hidden_curvature([h1, h2, h3, h4]), [math.nan, k2, k3, math.nan])


def test_hidden_curvature_is_scale_invariant_and_order_invariant() -> None:
    gen = torch.Generator().manual_seed(1)
    hidden = [torch.randn(30, 8, generator=gen) for _ in range(5)]
    base = hidden_curvature(hidden)
    _same(hidden_curvature([10.0 * h for h in hidden]), base, rel=1e-6)  # float32 rounding of 10·h
    perm = torch.randperm(30, generator=gen)
    _same(hidden_curvature([h[perm] for h in hidden]), base, rel=1e-9)


def test_hidden_curvature_nan_where_the_middle_layer_is_zero() -> None:
    hidden = [torch.ones(4, 3), torch.zeros(4, 3), torch.ones(4, 3)]
    assert all(math.isnan(v) for v in hidden_curvature(hidden))


def test_hidden_curvature_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="different hidden shapes"):
        hidden_curvature([torch.ones(4, 3), torch.ones(5, 3), torch.ones(4, 3)])


# --------------------------------------------------------------------------------------------- bands
@pytest.mark.parametrize(
    "num_layers,sizes",
    [(3, (1, 1, 1)), (12, (4, 4, 4)), (32, (11, 10, 11)), (16, (5, 6, 5)), (2, (1, 0, 1))],
)
def test_band_slices_partition_depth(num_layers: int, sizes: tuple[int, int, int]) -> None:
    bands = band_slices(num_layers)
    assert list(bands) == ["early", "mid", "late"]
    assert tuple(len(bands[name]) for name in ("early", "mid", "late")) == sizes
    # Contiguous, in order, covering every block exactly once.
    assert [i for name in ("early", "mid", "late") for i in bands[name]] == list(range(num_layers))


def test_band_slices_32_layers_match_the_documented_split() -> None:
    bands = band_slices(32)
    # 1-based: early = blocks 1–11, mid = 12–21, late = 22–32.
    assert (bands["early"][0] + 1, bands["early"][-1] + 1) == (1, 11)
    assert (bands["mid"][0] + 1, bands["mid"][-1] + 1) == (12, 21)
    assert (bands["late"][0] + 1, bands["late"][-1] + 1) == (22, 32)


def test_band_slices_custom_boundaries() -> None:
    bands = band_slices(10, boundaries=(0.2, 0.5))
    assert (len(bands["early"]), len(bands["mid"]), len(bands["late"])) == (2, 3, 5)


@pytest.mark.parametrize("boundaries", [(0.5, 0.4), (0.0, 0.5), (0.3, 1.0), (0.5, 0.5), (-0.1, 0.6)])
def test_band_slices_reject_bad_boundaries(boundaries: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="band boundaries") as info:
        band_slices(12, boundaries=boundaries)
    assert repr(boundaries) in str(info.value)
