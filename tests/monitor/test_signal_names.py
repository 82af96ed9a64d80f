"""Detector signal names are checked at setup: a typo is refused with the names that exist."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from spinal_callback import SpinalConfig, SpinalMonitor
from spinal_callback.integrations.transformers import TRAINER_METRICS
from spinal_callback.monitor.signals import PROBE_SIGNALS, available_signals
from tests.conftest import tiny_causal_lm

PAIRS = [{"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 10], "rejected_ids": [11, 12, 13]} for _ in range(3)]


def _setup(signals: dict[str, str], metric_names: tuple[str, ...] | None = TRAINER_METRICS,
           vectors: tuple[str, ...] = ()) -> SpinalMonitor:
    monitor = SpinalMonitor(SpinalConfig(num_probe_pairs=3, detector={"signals": signals, "vectors": vectors}))
    monitor.setup(tiny_causal_lm(num_layers=3), records=PAIRS, metric_names=metric_names)
    return monitor


def test_a_geometry_typo_is_refused_with_the_available_names() -> None:
    with pytest.raises(ValueError, match=r"unknown signal 'band/late/transprt'.*band/late/transport"):
        _setup({"band/late/transprt": "both"})


def test_a_trl_metric_typo_is_refused_under_the_trainer() -> None:
    with pytest.raises(ValueError, match=r"unknown signal 'reward/chosen'.*rewards/chosen"):
        _setup({"reward/chosen": "both"})
    _setup({"rewards/chosen": "both", "pairs/logratio_margin": "both", "head/log_z": "both"})


def test_vector_names_and_patterns_are_checked_too() -> None:
    with pytest.raises(ValueError, match=r"unknown vector 'layers/late/transport_'"):
        _setup({"band/late/transport": "both"}, vectors=("layers/late/transport_",))
    with pytest.raises(ValueError, match=r"pattern 'pairs/logp_\*x' matches nothing"):
        _setup({"pairs/logp_*x": "both"})
    _setup({"band/late/*": "both"}, vectors=("layers/late/contraction",))


def test_unknown_trainer_metrics_are_trusted_but_own_name_spaces_are_not() -> None:
    """Lightning's metric names are not known before it logs them (``metric_names=None``)."""
    _setup({"train/my_loss": "both"}, metric_names=None)
    with pytest.raises(ValueError, match="unknown signal 'pairs/logp_chosn'"):
        _setup({"pairs/logp_chosn": "both"}, metric_names=None)


def test_every_probe_signal_is_available() -> None:
    names = available_signals([], None)
    assert set(PROBE_SIGNALS) <= names and "band/late/transport_curvature" in names
    assert "layers/late/transport" in names and "rewards/chosen" not in names
