"""Cross-layer PATTERN_CHANGE (Hotelling T², Ledoit–Wolf): layers drifting together are healthy; some layers
moving against the others — band mean unchanged — is not. scikit-learn is needed only when vectors are fed."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import AlertReason
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.early_warning.inputs import vectors_from_trace
from spinal_callback.early_warning.t2 import wilson_hilferty
from tests.early_warning.helpers import config
from tests.early_warning.synthetic import healthy_vectors

VECTOR = "layers/late/transport"
MEAN = "band/late/transport"
LAYERS = (21, 22, 23, 24, 25, 26, 27, 28)
PATTERN = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # zero mean across layers
CHANGE = 60


def _detector() -> EarlyWarningDetector:
    return EarlyWarningDetector(config(signals=[MEAN], vectors=[VECTOR]))


def _feed(det: EarlyWarningDetector, matrix: np.ndarray) -> list:
    alerts = []
    for t, row in enumerate(matrix):
        alerts += det.update(t, {MEAN: float(row.mean())}, {VECTOR: LAYERS, MEAN: LAYERS}, vectors={VECTOR: row})
    return alerts


def test_healthy_correlated_per_layer_drift_raises_nothing() -> None:
    """20 runs of 100 probes: 8 layers share a drift shape (linear / saturating / exponential) with
    per-layer sizes of 1–20 % (some of the opposite sign) and cross-layer correlated noise."""
    rng = np.random.default_rng(21)
    alerts = [a for _ in range(20) for a in _feed(_detector(), healthy_vectors(rng, 100, layers=8)[0])]
    assert alerts == []


def test_pattern_change_with_unchanged_mean_is_a_pattern_change_alarm() -> None:
    """From probe 60 on, alternate layers move ±4σ (σ: per-layer noise) off their trends; the band mean does
    not move. PATTERN_CHANGE within 3 probes in ≥ 9 of 10 runs, onset within 2 probes; the scalar band mean
    raises nothing."""
    hits = 0
    for seed in range(10):
        matrix, sigma = healthy_vectors(np.random.default_rng(30 + seed), 100, layers=8)
        matrix[CHANGE:] += 4.0 * sigma * PATTERN
        alerts = _feed(_detector(), matrix)
        assert all(a.signal == VECTOR for a in alerts)
        assert all(a.step >= CHANGE for a in alerts)
        if alerts and alerts[0].step <= CHANGE + 3:
            alert = alerts[0]
            assert alert.reason is AlertReason.PATTERN_CHANGE and abs(alert.onset_step - CHANGE) <= 2
            assert alert.layers == LAYERS and "layer 2" in alert.message and alert.score >= alert.threshold
            hits += 1
    assert hits >= 9


def test_wilson_hilferty_maps_chi_square_quantiles_to_normal_ones() -> None:
    # χ²_8 upper quantiles 0.999 → 26.124, 0.5 → 7.344; χ²_30 0.999 → 59.703 (tables)
    assert wilson_hilferty(26.124, 8) == pytest.approx(3.09, abs=0.05)
    assert wilson_hilferty(7.344, 8) == pytest.approx(0.0, abs=0.05)
    assert wilson_hilferty(59.703, 30) == pytest.approx(3.09, abs=0.03)


def test_vectors_from_trace_and_size_changes() -> None:
    trace = {"layers": [{"layer": i, "transport": None if i == 9 else 0.1 * i, "contraction": 1.0 + i}
                        for i in range(1, 10)],
             "bands": {"late": {"layers": [7, 9]}, "early": {"layers": [1, 3]}}}
    vectors, layers = vectors_from_trace(trace)
    assert vectors == {"layers/late/transport": [pytest.approx(0.7), pytest.approx(0.8)],
                       "layers/late/contraction": [8.0, 9.0, 10.0]}
    assert layers == {"layers/late/transport": (7, 8), "layers/late/contraction": (7, 8, 9)}
    det = _detector()
    matrix = healthy_vectors(np.random.default_rng(5), 40, layers=8)[0]
    _feed(det, matrix)
    det.update(40, {}, vectors={VECTOR: [1.0, 2.0, 3.0]})  # the band changed size: its history starts over
    assert len(det.state_dict()["vectors"][VECTOR]["history"]) == 1
    with pytest.raises(ValueError, match="1-D list"):
        det.update(41, {}, vectors={VECTOR: [[1.0, 2.0]]})
    (alert,) = det.update(42, {}, vectors={VECTOR: [1.0, float("nan"), 3.0]})
    assert alert.reason is AlertReason.NON_FINITE and alert.signal == VECTOR


def test_scalar_scoring_needs_no_sklearn_and_vectors_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("sklearn", "sklearn.covariance"):
        monkeypatch.setitem(sys.modules, module, None)  # any import of scikit-learn now fails
    det = EarlyWarningDetector(DetectorConfig(signals={MEAN: "both"}, vectors=(VECTOR,)))
    for t in range(40):
        det.update(t, {MEAN: 1.0 + 0.01 * t + 0.001 * (t % 3)})
    assert det.last_scores[MEAN]
    det.update(40, {}, vectors={"layers/mid/transport": [1.0, 2.0]})  # not watched: nothing imported
    with pytest.raises(ImportError, match=r'pip install "spinal-callback\[probes\]"'):
        det.update(41, {}, vectors={VECTOR: [1.0, 2.0]})  # the first watched vector says what to install
