"""LASSO attribution (SPEC §2): finds the layer the target depends on; features match an independent
computation; K < 3 and a missing scikit-learn give clear errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from spinal_callback.probes import activation_distances, lasso_attribution, lasso_probe
from tests.probes._models import blocks_of, perturbed_pair, probe_batch

pytest.importorskip("sklearn")


def test_synthetic_target_of_one_feature_selects_that_layer() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(24, 8)) * rng.uniform(0.5, 5.0, size=8)  # different scales per layer
    target = 3.0 * features[:, 5] + 0.01 * rng.normal(size=24)
    result = lasso_attribution(features, target, layers=range(9, 17))
    assert result.selected_layers[0] == 14
    assert result.coefficients[5] > 0 and result.r2 > 0.99
    assert result.raw_coefficients[5].item() == pytest.approx(3.0, rel=0.02)
    others = np.delete(result.coefficients.numpy(), 5)
    assert np.abs(others).max() < 0.05 * result.coefficients[5].item()
    prediction = result.intercept + features @ result.raw_coefficients.numpy()
    assert np.abs(prediction - target).max() < 0.2
    assert result.cv_folds == 5


def test_deterministic_and_json() -> None:
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(6, 4)))
    target = torch.from_numpy(features[:, 1].numpy() * 2 + rng.normal(size=6) * 0.1)
    first = lasso_attribution(features, target)
    second = lasso_attribution(features, target)
    assert torch.equal(first.coefficients, second.coefficients) and first.alpha == second.alpha
    assert first.cv_folds == 5
    assert json.loads(json.dumps(first.to_dict(), allow_nan=False))["layers"] == [1, 2, 3, 4]


def test_constant_columns_and_constant_target() -> None:
    features = np.column_stack([np.arange(5.0), np.ones(5)])
    dead = lasso_attribution(features, np.arange(5.0) * 2)
    assert dead.coefficients[1] == 0 and dead.selected_layers == [1]
    flat = lasso_attribution(features, np.zeros(5))
    assert flat.selected_layers == [] and flat.to_dict()["alpha"] is None


def test_too_few_pairs_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"at least 3 preference pairs.*K=2"):
        lasso_attribution(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="shapes"):
        lasso_attribution(np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match="`cv`"):
        lasso_attribution(np.random.default_rng(0).normal(size=(4, 2)), np.arange(4.0), cv=5)
    policy, reference = perturbed_pair(num_layers=2)
    with pytest.raises(ValueError, match="at least 3 preference pairs"):
        lasso_probe(policy, reference, probe_batch(num_pairs=2))


def test_missing_sklearn_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    with pytest.raises(ImportError, match=r'pip install "spinal-callback\[probes\]"'):
        lasso_attribution(np.random.default_rng(0).normal(size=(5, 2)), np.arange(5.0))


def test_features_and_target_from_models() -> None:
    policy, reference = perturbed_pair(num_layers=4, scale=0.1)
    batch = probe_batch(num_pairs=5)
    features, target, layers = activation_distances(policy, reference, batch, layers=[1, 3])
    assert layers == [1, 3] and features.shape == (5, 2) and target.shape == (5,)

    def outputs(model: torch.nn.Module) -> list[torch.Tensor]:
        store: dict[int, torch.Tensor] = {}
        handles = [
            b.register_forward_hook(lambda m, a, o, i=i: store.__setitem__(i, o))
            for i, b in enumerate(blocks_of(model))
        ]
        with torch.no_grad():
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        for h in handles:
            h.remove()
        return [store[i] for i in range(4)]

    h_pol, h_ref = outputs(policy), outputs(reference)
    mask = batch["attention_mask"].bool()
    for column, block in enumerate([0, 2]):
        norms = (h_pol[block] - h_ref[block]).norm(dim=-1)
        for pair in range(5):
            tokens = torch.cat([norms[pair][mask[pair]], norms[5 + pair][mask[5 + pair]]])
            assert features[pair, column].item() == pytest.approx(tokens.mean().item(), rel=1e-5)
    result = lasso_probe(policy, reference, batch)
    assert result.layers == [1, 2, 3, 4] and result.cv_folds == 5
    torch.testing.assert_close(result.target, target)


def test_designed_target_on_model_features_selects_its_layer() -> None:
    """Real, correlated per-layer distances; a target built from layer 3's distance alone."""
    policy, reference = perturbed_pair(num_layers=5, scale=0.1)
    features, _, layers = activation_distances(policy, reference, probe_batch(num_pairs=10, seq_len=14))
    column = features[:, 2]
    noise = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = 4.0 * (column - column.mean()) / column.std() + 0.01 * noise
    result = lasso_attribution(features, target, layers)
    assert result.selected_layers[0] == 3
    assert abs(result.coefficients[2].item()) > 3 * result.coefficients.abs()[[0, 1, 3, 4]].max().item()
