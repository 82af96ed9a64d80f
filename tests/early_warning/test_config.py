"""DetectorConfig: defaults, help for every field, validation messages, and the setup-time name check."""

from __future__ import annotations

import json
import math

import pytest

from spinal_callback.config.detector import (
    CHECKS,
    DEFAULT_CHECKS,
    DEFAULT_SIGNALS,
    DEFAULT_VECTORS,
    DPO_METRICS,
    DetectorConfig,
)
from spinal_callback.early_warning.names import check_signal_names

AVAILABLE = ["band/late/transport", "band/late/contraction", "band/late/transport_curvature", "band/late/entropy",
             "band/mid/transport", "layers/late/transport", "layers/late/contraction", "head/log_z",
             "head/max_logit", "pairs/logp_chosen", "pairs/logp_rejected", "pairs/margin", "pairs/logratio_margin",
             "update/size", "update/turn", *DPO_METRICS]


def test_defaults_help_and_normalisation() -> None:
    cfg = DetectorConfig()
    assert next(iter(cfg.signals)) == "rewards/chosen"  # the study's calibration set chose TRL + probe-pair signals
    assert set(cfg.signals.values()) == {"both"}  # no "down = bad" prior on quantities healthy DPO lowers
    assert cfg.vectors == DEFAULT_VECTORS and cfg.checks == DEFAULT_CHECKS
    assert set(CHECKS) - set(cfg.checks) == {"slope_change"}  # study 8 dropped the CUSUM from the default
    helps = DetectorConfig.help()
    assert set(helps) == set(cfg.to_dict()) and all(helps.values())
    json.dumps(cfg.to_dict(), allow_nan=False)
    listed = DetectorConfig(signals=["a", "b", "a"], checks="trend_break", vectors=[])
    assert listed.signals == {"a": "both", "b": "both"} and listed.checks == ("trend_break",) and listed.vectors == ()
    assert DetectorConfig.from_dict(cfg.to_dict()) == cfg
    check_signal_names(cfg, AVAILABLE)  # every default name exists (probe signals, TRL metrics)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("signals", {}), ("signals", "band/late/transport"), ("signals", {"x": "sideways"}), ("signals", {"": "up"}),
        ("vectors", "layers/late/transport"), ("vectors", [3]),
        ("window", 4), ("window", 20.0), ("lag", -1), ("warmup", 1), ("warmup", True),
        ("checks", ()), ("checks", ("spike",)),
        ("z_threshold", 0.0), ("z_threshold", float("inf")), ("cusum_k", -0.1), ("cusum_h", float("nan")),
        ("variance_window", 2), ("variance_window", 23), ("variance_threshold", 1.0), ("t2_threshold", -1.0),
        ("min_consecutive", 0), ("release_fraction", 1.0), ("release_after", 0), ("min_scale", 0.0),
        ("non_finite", "raise"), ("decisive_factor", 0.5), ("decisive_factor", -1.0), ("decisive_factor", math.inf),
    ],
)
def test_bad_values_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"`{field}") as info:
        DetectorConfig(**{field: value})  # type: ignore[arg-type]
    assert "got " in str(info.value)  # the value received is named too


def test_unknown_signal_names_are_refused_with_the_available_ones() -> None:
    with pytest.raises(ValueError) as info:
        check_signal_names(DetectorConfig(signals=["band/late/transprt"], vectors=()), AVAILABLE)
    message = str(info.value)
    assert message.startswith("unknown signal 'band/late/transprt'; available: ")
    assert "band/late/transport, " in message and "logps/chosen" in message
    with pytest.raises(ValueError, match="signal pattern 'band/early/\\*' matches nothing"):
        check_signal_names(DetectorConfig(signals={"band/early/*": "both"}, vectors=()), AVAILABLE)
    with pytest.raises(ValueError, match="unknown vector 'layers/late/entropy'"):
        check_signal_names(DetectorConfig(signals=["band/late/*"], vectors=["layers/late/entropy"]), AVAILABLE)
    check_signal_names(DetectorConfig(signals={"band/*/transport": "up"}, vectors=["layers/late/*"]), AVAILABLE)
    assert set(DEFAULT_SIGNALS) <= set(AVAILABLE)
