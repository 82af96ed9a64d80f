"""Fisher–Rao transport 𝓛_ℓ and lens entropy E_ℓ against closed forms and float64 numpy (SPEC §1.2, §1.3)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from spinal_callback.geometry import fisher_rao_distance, lens_entropy, transport_score

NEG_INF = float("-inf")


def numpy_fisher_rao(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """Independent float64 reference: ``2·arccos(Σ_v √(p_v q_v))`` after renormalising each row."""
    logp = logp.astype(np.float64)
    logq = logq.astype(np.float64)
    logp = logp - logsumexp(logp, axis=-1, keepdims=True)
    logq = logq - logsumexp(logq, axis=-1, keepdims=True)
    bc = np.sqrt(np.exp(logp) * np.exp(logq)).sum(axis=-1)
    return 2.0 * np.arccos(np.clip(bc, 0.0, 1.0))


def numpy_entropy(logp: np.ndarray) -> float:
    logp = logp.astype(np.float64)
    logp = logp - logsumexp(logp, axis=-1, keepdims=True)
    p = np.exp(logp)
    terms = np.where(p > 0, p * np.where(p > 0, logp, 0.0), 0.0)
    return float((-terms.sum(axis=-1)).mean())


def random_log_probs(
    shape: tuple[int, ...], seed: int, scale: float = 3.0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.log_softmax(torch.randn(shape, generator=gen, dtype=dtype) * scale, dim=-1)


# --------------------------------------------------------------------------------------- Fisher–Rao
@pytest.mark.parametrize("vocab", [50, 50_000])
def test_identical_float32_distributions_are_at_distance_zero(vocab: int) -> None:
    logp = random_log_probs((8, vocab), seed=0, scale=5.0)
    assert logp.dtype == torch.float32
    distance = fisher_rao_distance(logp, logp.clone())
    assert distance.shape == (8,)
    assert float(distance.abs().max()) < 1e-6
    assert abs(float(transport_score(logp, logp))) < 1e-6


def test_identical_distributions_given_as_unnormalised_logits_are_at_distance_zero() -> None:
    logits = torch.randn(4, 1000) * 4
    # Same distribution, different log-normaliser: rows are renormalised before comparing.
    assert float(fisher_rao_distance(logits, logits + 3.0).abs().max()) < 1e-6


def test_disjoint_supports_are_at_distance_pi() -> None:
    v = 10
    logp = torch.full((3, v), NEG_INF)
    logq = torch.full((3, v), NEG_INF)
    logp[:, :4] = math.log(1 / 4)
    logq[:, 4:] = torch.log_softmax(torch.randn(3, v - 4), dim=-1)
    distance = fisher_rao_distance(logp, logq)
    torch.testing.assert_close(distance, torch.full((3,), math.pi, dtype=torch.float64), rtol=0, atol=1e-12)
    assert float(transport_score(logp, logq)) == pytest.approx(math.pi, abs=1e-12)
    # One-hot on different tokens: the extreme case.
    onehot_a = torch.tensor([[0.0, NEG_INF, NEG_INF]])
    onehot_b = torch.tensor([[NEG_INF, NEG_INF, 0.0]])
    assert float(fisher_rao_distance(onehot_a, onehot_b)) == pytest.approx(math.pi, abs=1e-12)
    assert float(fisher_rao_distance(onehot_a, onehot_a)) == pytest.approx(0.0, abs=1e-12)


def test_known_closed_form() -> None:
    # p = (1/2, 1/2, 0), q = (0, 1/2, 1/2): BC = 1/2, d = 2·arccos(1/2) = 2π/3.
    logp = torch.tensor([[math.log(0.5), math.log(0.5), NEG_INF]])
    logq = torch.tensor([[NEG_INF, math.log(0.5), math.log(0.5)]])
    assert float(fisher_rao_distance(logp, logq)) == pytest.approx(2 * math.pi / 3, abs=1e-12)


def test_fisher_rao_is_symmetric_and_bounded() -> None:
    logp = random_log_probs((64, 300), seed=1)
    logq = random_log_probs((64, 300), seed=2)
    forward, backward = fisher_rao_distance(logp, logq), fisher_rao_distance(logq, logp)
    torch.testing.assert_close(forward, backward, rtol=0, atol=1e-12)
    assert bool(((forward > 0) & (forward <= math.pi)).all())
    assert float(transport_score(logp, logq)) == pytest.approx(float(transport_score(logq, logp)), abs=1e-12)


@pytest.mark.parametrize("vocab,scale", [(7, 1.0), (300, 3.0), (5000, 8.0)])
def test_fisher_rao_matches_numpy_float64(vocab: int, scale: float) -> None:
    logp = random_log_probs((32, vocab), seed=vocab, scale=scale)
    logq = random_log_probs((32, vocab), seed=vocab + 1, scale=scale)
    expected = numpy_fisher_rao(logp.numpy(), logq.numpy())
    got = fisher_rao_distance(logp, logq)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    assert float(transport_score(logp, logq)) == pytest.approx(float(expected.mean()), abs=1e-5)


def test_fisher_rao_keeps_leading_dimensions() -> None:
    logp = random_log_probs((2, 5, 40), seed=3)
    logq = random_log_probs((2, 5, 40), seed=4)
    distance = fisher_rao_distance(logp, logq)
    assert distance.shape == (2, 5)
    np.testing.assert_allclose(distance.numpy(), numpy_fisher_rao(logp.numpy(), logq.numpy()), rtol=0, atol=1e-5)
    assert float(transport_score(logp, logq)) == pytest.approx(float(distance.mean()), abs=1e-12)


def test_transport_is_the_mean_of_row_distances_and_ignores_token_order() -> None:
    logp = random_log_probs((50, 200), seed=5)
    logq = random_log_probs((50, 200), seed=6)
    score = float(transport_score(logp, logq))
    assert score == pytest.approx(float(fisher_rao_distance(logp, logq).mean()), abs=1e-12)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    assert float(transport_score(logp[perm], logq[perm])) == pytest.approx(score, rel=1e-6)
    # Permuting only one side pairs different tokens: a different transport.
    assert float(transport_score(logp[perm], logq)) != pytest.approx(score, rel=1e-6)


def test_mismatched_vocabularies_raise_naming_both_sizes() -> None:
    with pytest.raises(ValueError, match=r"(?s)(?=.*\b128\b)(?=.*\b130\b)"):
        fisher_rao_distance(torch.zeros(2, 128), torch.zeros(2, 130))
    with pytest.raises(ValueError, match=r"(?s)(?=.*\b64\b)(?=.*\b65\b)"):
        transport_score(torch.zeros(3, 64), torch.zeros(3, 65))


def test_mismatched_token_counts_raise() -> None:
    with pytest.raises(ValueError, match=re.escape("(3, 16)")):
        fisher_rao_distance(torch.zeros(3, 16), torch.zeros(4, 16))


def test_fisher_rao_ignores_gradients() -> None:
    logp = torch.randn(2, 10, requires_grad=True)
    assert not fisher_rao_distance(logp, torch.randn(2, 10)).requires_grad


# -------------------------------------------------------------------------------------- lens entropy
@pytest.mark.parametrize("vocab", [2, 128, 50_000])
def test_entropy_of_uniform_is_log_vocab(vocab: int) -> None:
    logp = torch.full((3, vocab), -math.log(vocab), dtype=torch.float32)
    assert float(lens_entropy(logp)) == pytest.approx(math.log(vocab), rel=1e-9)


def test_entropy_of_one_hot_is_zero() -> None:
    logp = torch.full((4, 20), NEG_INF)
    logp[torch.arange(4), torch.tensor([0, 5, 19, 7])] = 0.0
    entropy = lens_entropy(logp)
    assert math.isfinite(float(entropy))
    assert float(entropy) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("vocab,scale", [(10, 1.0), (1000, 4.0), (50_000, 6.0)])
def test_entropy_matches_numpy(vocab: int, scale: float) -> None:
    logp = random_log_probs((16, vocab), seed=vocab, scale=scale)
    # Some exact zeros too.
    logp[:, :3] = NEG_INF
    got = lens_entropy(logp)
    assert got.ndim == 0
    assert float(got) == pytest.approx(numpy_entropy(logp.numpy()), abs=1e-5)
    assert 0.0 <= float(got) <= math.log(vocab)


def test_entropy_ignores_token_order() -> None:
    logp = random_log_probs((40, 64), seed=9)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    assert float(lens_entropy(logp[perm])) == pytest.approx(float(lens_entropy(logp)), rel=1e-9)


def test_entropy_rejects_a_scalar() -> None:
    with pytest.raises(ValueError, match="vocabulary"):
        lens_entropy(torch.tensor(0.0))
