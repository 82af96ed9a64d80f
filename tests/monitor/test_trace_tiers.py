"""Probes between full depth traces (``trace_interval``): the same forward and signals, fewer layers measured."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("transformers")

from spinal_callback import DetectorConfig, SpinalConfig, SpinalMonitor
from spinal_callback.monitor.probe_set import tier_layers
from tests.conftest import tiny_causal_lm

PAIRS = [{"prompt_ids": [5 + k, 6, 7, 4 + k], "chosen_ids": [8 + k, 9, 10 + 2 * k, 3],
          "rejected_ids": [11, 12 + k, 13, 3]} for k in range(3)]


def _watching(*signals: str, vectors: tuple[str, ...] = ()) -> SpinalConfig:
    return SpinalConfig(detector=DetectorConfig(signals=dict.fromkeys(signals, "both"), vectors=vectors))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (SpinalConfig(), [9]),  # the shipped detector watches no geometry: the last layer only
        (_watching("band/mid/transport"), [4, 5, 6, 9]),
        (_watching("pairs/margin", vectors=("layers/late/contraction",)), [7, 8, 9]),
        (_watching("band/early/*"), [1, 2, 3, 9]),  # a pattern over one band's metrics
        (_watching("band/*/contraction"), None),  # every band: every layer, a full trace
        (_watching("*"), None),
    ],
)
def test_the_tier_measures_the_watched_bands_and_the_last_layer(config: SpinalConfig,
                                                                expected: list[int] | None) -> None:
    assert tier_layers(config, 9) == expected


def test_probes_between_full_traces_give_the_same_signals_and_last_layer() -> None:
    model = tiny_causal_lm(num_layers=6)
    tiered = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=1, trace_interval=3))
    full = SpinalMonitor(SpinalConfig(num_probe_pairs=3, interval=1, trace_interval=0))
    for monitor in (tiered, full):
        monitor.setup(model, records=PAIRS)
    for step in range(5):
        mine, theirs = tiered.probe(step, model), full.probe(step, model)
        assert mine.trace is not None and theirs.trace is not None and not theirs.trace.is_partial
        assert mine.signals == theirs.signals and mine.signals  # the detector's inputs do not depend on the tier
        if step % 3 == 0:
            assert not mine.trace.is_partial and mine.trace.to_dict() == theirs.trace.to_dict()
            continue
        assert mine.trace.is_partial and mine.trace.computed == [6]
        last = mine.trace.to_dict()["layers"][-1]
        assert last == theirs.trace.to_dict()["layers"][-1] and None not in (last["entropy"], last["effective_rank"])
        for metric in ("contraction", "effective_rank", "transport"):
            assert all(math.isnan(v) for v in getattr(mine.trace, metric)[:-1])
