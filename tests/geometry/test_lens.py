"""Float32 lens statistics against a float64 oracle on adversarial rows (SPEC §1.2-1.3, issue 14).

The oracle takes the same float32 inputs, normalises them in float64 and evaluates
``E = −Σ p log p`` and ``𝓛 = 2·arccos(BC)`` through the Hellinger form (well conditioned in float64
too). Required: |Δ𝓛| ≤ 1e-4 rad, |ΔE| ≤ 1e-4 nats, for the public functions with ``dtype=float32``
and for the fused chunked path the depth trace uses.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import spinal_callback.geometry.lens as lens_module
from spinal_callback.geometry import fisher_rao_distance, lens_entropy, transport_score
from spinal_callback.geometry.lens import lens_statistics
from spinal_callback.model.architectures import DecoderLayout

TOL = 1e-4
NEG_INF = float("-inf")


def oracle(logits_a: torch.Tensor, logits_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Float64 per-row ``(E_a, E_b, 𝓛(a, b))`` of float32 logit rows."""
    la = torch.log_softmax(logits_a.double(), dim=-1)
    lb = torch.log_softmax(logits_b.double(), dim=-1)

    def entropy(lp: torch.Tensor) -> torch.Tensor:
        p = lp.exp()
        return -torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(dim=-1)

    hellinger = (torch.exp(0.5 * la) - torch.exp(0.5 * lb)).norm(dim=-1)
    return entropy(la), entropy(lb), 4.0 * torch.asin((hellinger / 2).clamp(max=math.sqrt(0.5)))


def adversarial_pairs(vocab: int, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of float32 logit rows that break naive float32 implementations."""
    gen = torch.Generator().manual_seed(seed)

    def randn(scale: float = 1.0) -> torch.Tensor:
        return torch.randn(vocab, generator=gen) * scale

    def coin(p: float = 0.5) -> torch.Tensor:
        return torch.rand(vocab, generator=gen) < p

    base = randn(3.0)
    half = vocab // 2
    left = torch.full((vocab,), NEG_INF)
    left[:half] = randn()[:half]
    right = torch.full((vocab,), NEG_INF)
    right[half:] = randn()[half:]
    peak_a, peak_b = randn(), randn()
    peak_a[5] += 40.0
    peak_b[7] += 40.0
    masked = randn(2.0)
    masked[::3] = NEG_INF
    one_hot = torch.full((vocab,), NEG_INF)
    one_hot[3] = 0.0
    return {
        "uniform vs near-uniform": (torch.zeros(vocab), randn(1e-4)),
        # Two logit levels: a float32 log_softmax mis-normalises these rows by ~4e-5 at V = 152k.
        "two-level": (torch.where(coin(), 0.0, -0.3), torch.where(coin(), 0.0, -0.3)),
        "identical": (base, base.clone()),
        "near-identical 1e-3": (base, base + randn(1e-3)),
        "near-identical 1e-5": (base, base + randn(1e-5)),
        "random": (randn(3.0), randn(3.0)),
        "disjoint supports": (left, right),
        "near-disjoint": (left, torch.cat([torch.full((half,), -40.0), randn()[half:]])),
        "peaked, same token": (peak_a, peak_a + randn(0.1)),
        "peaked, other token": (peak_a, peak_b),
        "-inf masking": (masked, masked + randn(0.5)),
        "soft-capped": (torch.tanh(randn(10.0) / 30) * 30, torch.tanh(randn(10.0) / 30) * 30),
        "large offsets": (randn(2.0) + 1000.0, randn(2.0) - 500.0),
        "one-hot": (one_hot, one_hot.clone()),
    }



@pytest.mark.parametrize("vocab", [1000, 151_936])
def test_float32_public_functions_match_the_float64_oracle(vocab: int) -> None:
    pairs = adversarial_pairs(vocab)
    a = torch.stack([p[0] for p in pairs.values()]).float()
    b = torch.stack([p[1] for p in pairs.values()]).float()
    ent_a, ent_b, fr = oracle(a, b)
    got_fr = fisher_rao_distance(a, b, dtype=torch.float32)
    assert got_fr.dtype == torch.float32
    for i, name in enumerate(pairs):
        assert abs(float(got_fr[i]) - float(fr[i])) <= TOL, name
        assert abs(float(lens_entropy(a[i], dtype=torch.float32)) - float(ent_a[i])) <= TOL, name
        assert abs(float(lens_entropy(b[i], dtype=torch.float32)) - float(ent_b[i])) <= TOL, name
    assert abs(float(transport_score(a, b, dtype=torch.float32)) - float(fr.mean())) <= TOL
    # Identical rows are at distance exactly 0, disjoint ones at π.
    names = list(pairs)
    assert float(got_fr[names.index("identical")]) == 0.0
    assert float(got_fr[names.index("disjoint supports")]) == pytest.approx(math.pi, abs=1e-6)


def test_the_rows_defeat_a_plain_float32_route() -> None:
    """The cases are adversarial: float32 ``log_softmax`` + arccos of the log-space BC misses the tolerance."""
    pairs = adversarial_pairs(151_936)
    a = torch.stack([p[0] for p in pairs.values()]).float()
    b = torch.stack([p[1] for p in pairs.values()]).float()
    ent_a, _, fr = oracle(a, b)
    la, lb = torch.log_softmax(a, dim=-1), torch.log_softmax(b, dim=-1)
    plain_entropy = -(la.exp() * la.clamp_min(torch.finfo(la.dtype).min)).sum(dim=-1)
    plain_fr = 2 * torch.arccos(torch.logsumexp(0.5 * (la + lb), dim=-1).exp().clamp(0.0, 1.0))
    assert float((plain_entropy.double() - ent_a).abs().max()) > 2 * TOL
    assert float((plain_fr.double() - fr).abs().max()) > 10 * TOL


def test_the_oracle_agrees_with_arccos_where_arccos_is_well_conditioned() -> None:
    pairs = adversarial_pairs(500)
    a = torch.stack([p[0] for p in pairs.values()]).float()
    b = torch.stack([p[1] for p in pairs.values()]).float()
    _, _, fr = oracle(a, b)
    la, lb = torch.log_softmax(a.double(), -1), torch.log_softmax(b.double(), -1)
    bc = torch.logsumexp(0.5 * (la + lb), dim=-1).exp().clamp(0.0, 1.0)
    well = bc < 1 - 1e-6
    assert bool(well.any())
    torch.testing.assert_close(fr[well], 2 * torch.arccos(bc[well]), rtol=0, atol=1e-9)


class _IdentityLens(nn.Module):
    """A bare stand-in model whose logit lens is the identity: ``H_ℓ`` *are* the lens logits."""


def identity_layout(num_layers: int) -> DecoderLayout:
    return DecoderLayout(
        model=_IdentityLens(),
        architecture="identity",
        blocks=[nn.Identity() for _ in range(num_layers)],
        final_norm=None,
        pre_unembed=[],
        unembed=nn.Identity(),
    )


@pytest.mark.parametrize("block_values", [1 << 17, 1])  # cache-sized blocks, and one row per block
@pytest.mark.parametrize("chunk_size", [64, 3])
def test_fused_lens_statistics_match_the_oracle_per_layer(block_values: int, chunk_size: int, monkeypatch) -> None:
    monkeypatch.setattr(lens_module, "CPU_BLOCK_VALUES", block_values)
    vocab = 151_936
    pairs = adversarial_pairs(vocab, seed=1)
    # Three "layers" of the same tokens: layer 2 follows layer 1 as in each pair, layer 3 is layer 1 again.
    layer1 = torch.stack([p[0] for p in pairs.values()]).float()
    layer2 = torch.stack([p[1] for p in pairs.values()]).float()
    hidden = {1: layer1, 2: layer2, 3: layer1.clone()}
    entropy, transport = lens_statistics(hidden, identity_layout(3), [1, 2, 3], [1, 2], chunk_size=chunk_size)
    ent1, ent2, fr12 = oracle(layer1, layer2)
    assert entropy[1] == pytest.approx(float(ent1.mean()), abs=TOL)
    assert entropy[2] == pytest.approx(float(ent2.mean()), abs=TOL)
    assert entropy[3] == pytest.approx(float(ent1.mean()), abs=TOL)
    assert transport[1] == pytest.approx(float(fr12.mean()), abs=TOL)
    assert transport[2] == pytest.approx(float(fr12.mean()), abs=TOL)  # symmetric step back to layer 1
    # Row by row (one token per trace), so that no error can hide in a mean.
    for i, name in enumerate(pairs):
        one = {layer: h[i : i + 1] for layer, h in hidden.items()}
        e, t = lens_statistics(one, identity_layout(3), [1, 2, 3], [1], chunk_size=chunk_size)
        assert e[1] == pytest.approx(float(ent1[i]), abs=TOL), name
        assert e[2] == pytest.approx(float(ent2[i]), abs=TOL), name
        assert t[1] == pytest.approx(float(fr12[i]), abs=TOL), name
        assert set(t) == {1}


def test_lens_statistics_refuses_a_step_without_both_layers() -> None:
    hidden = {1: torch.zeros(2, 10), 2: torch.zeros(2, 10)}
    with pytest.raises(ValueError, match="both their layers"):
        lens_statistics(hidden, identity_layout(2), [1], [1])


def test_lens_statistics_of_zero_tokens_are_nan() -> None:
    hidden = {1: torch.zeros(0, 10), 2: torch.zeros(0, 10)}
    entropy, transport = lens_statistics(hidden, identity_layout(2), [1, 2], [1])
    assert math.isnan(entropy[1]) and math.isnan(transport[1])
