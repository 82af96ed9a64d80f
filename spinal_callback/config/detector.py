"""``DetectorConfig``: the validated settings of the trend-aware early-warning detector.

Kept apart from :mod:`spinal_callback.early_warning.detector` (which re-exports it) so the detector module
holds only the decision logic; the default signals and tests, with the study behind each, are in
:mod:`spinal_callback.config.signals`. The shipped signals, tests and thresholds are the lead-time studies' choices
(``docs/evidence.md``: thresholds by :func:`spinal_callback.early_warning.calibrate.calibrate` on fault-free DPO runs
of the demo model, studies 5-6; the tests by study 8; the variance test's reference and threshold by study 9);
``spinal calibrate`` / ``scripts/calibrate_detector.py`` recalibrate them from your own healthy trace files, and the
JSON output loads with :meth:`DetectorConfig.from_json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from spinal_callback.config.detector_checks import check_detector_fields
from spinal_callback.config.signals import (
    CHECKS,
    DEFAULT_CHECKS,
    DEFAULT_FINITE_SIGNALS,
    DEFAULT_SIGNALS,
    DEFAULT_SPEED_SIGNALS,
    DEFAULT_TURN_SIGNALS,
    DEFAULT_UPDATE_SIGNALS,
    DEFAULT_VARIANCE_SIGNALS,
    DEFAULT_VECTORS,
    DIRECTIONS,
    DPO_METRICS,
    PROBE_PAIR_SIGNALS,
)
from spinal_callback.config.validation import fields_of, read_json_object

__all__ = [
    "CHECKS", "DEFAULT_CHECKS", "DEFAULT_FINITE_SIGNALS", "DEFAULT_SIGNALS", "DEFAULT_SPEED_SIGNALS",
    "DEFAULT_TURN_SIGNALS", "DEFAULT_UPDATE_SIGNALS", "DEFAULT_VARIANCE_SIGNALS", "DEFAULT_VECTORS", "DIRECTIONS",
    "DPO_METRICS", "PROBE_PAIR_SIGNALS", "DetectorConfig",
]  # the signal and test names live in spinal_callback.config.signals; re-exported here


@dataclass
class DetectorConfig:
    """Settings of :class:`~spinal_callback.early_warning.detector.EarlyWarningDetector`.

    Validated on construction: a bad value raises ``ValueError`` naming the field, what is allowed and what
    was given. Scores are in units of the signal's measured noise (see ``docs/early_warning.md``); the
    thresholds ``z_threshold``, ``cusum_h``, ``variance_threshold`` and ``t2_threshold`` are meant to be set
    by :func:`~spinal_callback.early_warning.calibrate.calibrate` from healthy runs.
    """

    signals: Mapping[str, str] | Sequence[str] = field(
        default_factory=lambda: dict(DEFAULT_SIGNALS),
        metadata={"help": "Scalar signals to watch, as {name: direction prior} with 'both' (no prior), 'up' or "
                  "'down' (only a break that way counts), or a list of names (all 'both'). Names are band tags "
                  "without 'spinal/' ('band/late/transport') or DPO metric names ('logps/chosen'); glob patterns "
                  "('band/late/*') are allowed and must match at least one available signal. Signals never fed "
                  "are not watched. Default: TRL's rewards/chosen, logps/chosen, rewards/accuracies and "
                  "rewards/margins, all 'both', read every signal_interval steps. The probe pairs' "
                  "pairs/logp_chosen, pairs/logp_rejected, pairs/margin and pairs/logratio_margin (watched by "
                  "default up to study 11) come only with the probe forward; watch them when you probe at the "
                  "reading interval."},
    )
    vectors: Sequence[str] = field(
        default=DEFAULT_VECTORS,
        metadata={"help": "Per-layer vector signals for the cross-layer PATTERN_CHANGE test (Hotelling T², "
                  "needs scikit-learn: pip install \"spinal-callback[probes]\"), e.g. 'layers/late/transport' "
                  "(the late band's per-layer transport). Empty: no cross-layer test."},
    )
    window: int = field(
        default=20,
        metadata={"help": "W: observations in the lagged window a signal's robust (Theil–Sen) trend is fitted "
                  "on. Longer: a sharper forecast and noise estimate, less tolerance of curvature. At least 5."},
    )
    lag: int = field(
        default=2,
        metadata={"help": "g: observations between the end of the trend window and now, so that the first "
                  "observations of a change do not bend the trend they are compared with. >= 0."},
    )
    warmup: int = field(
        default=24,
        metadata={"help": "Finite observations of a signal before any test may alert (NON_FINITE excepted). "
                  "Scores exist from observation window + lag + 1 on; warm-up observations after that only "
                  "settle the noise estimate (the CUSUM stays 0). At least 3."},
    )
    checks: Sequence[str] = field(
        default=DEFAULT_CHECKS,
        metadata={"help": "Tests to run, any of 'trend_break', 'slope_change', 'variance_burst', "
                  "'pattern_change', 'speed_jump', 'update_jump' and 'turn_jump'. Default: all but 'slope_change' "
                  "(study 8: on a GPT-2 the CUSUM raised false alarms and answered no fault first). Non-finite values "
                  "are governed by `non_finite`."},
    )
    # The thresholds below (z_threshold, cusum_h, speed_threshold, update_threshold) ship as calibrated by the
    # lead-time study (docs/evidence.md, study 5: every fault-free run of studies 2-4, 90 DPO runs and 10 890 probe
    # steps at probe interval 2, 0.5 false alarms per 1000 probe steps for all tests together,
    # `python scripts/study5_early_warning.py choose`), rounded up; t2_threshold by the detector's synthetic
    # calibration (docs/early_warning.md): the studies did not choose vectors; turn_threshold by study 6 (study 2's
    # 40 fault-free runs re-trained to record update/turn, 0.1 false alarms per 1000 probe steps for that test alone:
    # 0.950, `python scripts/study6_early_warning.py choose`), rounded up; variance_threshold by study 9 for the
    # recent-increment reference (the 54 fault-free runs of studies 7 and 8, five models, 6534 probe steps, 0.1 per
    # 1000 for that test alone, `python scripts/study9_early_warning.py choose`), rounded up.
    z_threshold: float = field(
        default=20.59,
        metadata={"help": "TREND_BREAK: |z| of the residual against the trend forecast, z = (x − x̂)/σ̂_pred, "
                  "that counts as an exceedance (same sign for min_consecutive observations). Calibrated."},
    )
    cusum_k: float = field(
        default=2.0,
        metadata={"help": "SLOPE_CHANGE: allowance k of the two-sided CUSUM S_t = max(0, S_{t−1} ± clip(z_t, ±4) "
                  "− k), in noise units. Not calibrated (cusum_h is, for this k)."},
    )
    cusum_h: float = field(
        default=38.59,
        metadata={"help": "SLOPE_CHANGE: decision threshold h of the CUSUM, in noise units; the statistic is "
                  "capped at h so an episode ends soon after the signal is back on a trend. Calibrated."},
    )
    variance_window: int = field(
        default=8,
        metadata={"help": "VARIANCE_BURST: m, the most recent detrended increments whose mean square (the two "
                  "largest left out) is compared with the noise. At least 3, at most window + lag."},
    )
    variance_reference: int = field(
        default=32,
        metadata={"help": "VARIANCE_BURST: R, the detrended increments just before the variance window whose trimmed "
                  "mean square (the same share of largest left out) V is divided by, so that a noise level drifting "
                  "slowly moves the reference with it and a burst does not (V about 1.4 on white noise with m = 8, "
                  "R = 32). Until R increments exist, those there are (at least window + lag − variance_window). "
                  "0: divide by 2σ̂² instead, σ̂ the pooled residual scale (studies 2-8). 0, or at least 4."},
    )
    variance_signals: Sequence[str] = field(
        default=DEFAULT_VARIANCE_SIGNALS,
        metadata={"help": "Signals (names or glob patterns) the VARIANCE_BURST test applies to, among the watched "
                  "`signals` ('*': all of them). Default: TRL's batch logps/chosen (study 5's choice; on the other "
                  "watched signals healthy runs burst too). Empty: no variance test."},
    )
    variance_threshold: float = field(
        default=33.72,
        metadata={"help": "VARIANCE_BURST: ratio V = trimmed mean of the recent (Δx − β)² over its reference (see "
                  "variance_reference; about 1.4 on white noise with R = 32, 0.47 with R = 0) that counts as an "
                  "exceedance. Calibrated (33.72: study 9, for R = 32; studies 5-8 shipped 4.61 with R = 0). > 1."},
    )
    t2_threshold: float = field(
        default=4.3,
        metadata={"help": "PATTERN_CHANGE: the Hotelling T² of the per-layer residual vector, mapped to a "
                  "normal score by the Wilson–Hilferty transform of T²/p (p = layers), that counts as an "
                  "exceedance. Calibrated."},
    )
    speed_signals: Sequence[str] = field(
        default=DEFAULT_SPEED_SIGNALS,
        metadata={"help": "Signals (names or glob patterns) the SPEED_JUMP test applies to, among the watched "
                  "`signals`: best those measured on the fixed probe set, whose change between probes is how far "
                  "the model moved. Empty: no speed test."},
    )
    speed_threshold: float = field(
        default=4.31,
        metadata={"help": "SPEED_JUMP: log of the ratio of this observation's change |x_n − x_{n−1}| to the "
                  "median change over the lagged trend window that counts as an exceedance (4.31: the signal "
                  "moved e^4.31 ≈ 74× as far as it typically did). One-sided: only a speed-up counts. "
                  "Calibrated."},
    )
    speed_consecutive: int = field(
        default=1,
        metadata={"help": "SPEED_JUMP: consecutive exceedances that open an episode (the other tests use "
                  "min_consecutive). 1: a single update that moved the model that much more than usual is "
                  "reported at once. At least 1."},
    )
    update_signals: Sequence[str] = field(
        default=DEFAULT_UPDATE_SIGNALS,
        metadata={"help": "Signals (names or glob patterns) watched by the UPDATE_JUMP test alone (they need not be "
                  "in `signals`, and no other test applies to them): sizes of the optimizer's updates, such as "
                  "the monitor's update/size. Empty: no update test."},
    )
    update_threshold: float = field(
        default=0.41,
        metadata={"help": "UPDATE_JUMP: log of the ratio of this observation's value to the larger of its median "
                  "over the lagged trend window and that window's trend forecast, that counts as an exceedance: "
                  "the weights moved that many times further per step than expected (a smooth warm-up is "
                  "expected). One exceedance opens an episode; one-sided. Calibrated."},
    )
    turn_signals: Sequence[str] = field(
        default=DEFAULT_TURN_SIGNALS,
        metadata={"help": "Signals (names or glob patterns) watched by the TURN_JUMP test alone (no other test applies "
                  "to them; none may also be an update signal): how far the optimizer's updates turn, such as the "
                  "monitor's update/turn. Empty: no turn test."},
    )
    turn_threshold: float = field(
        default=0.95,
        metadata={"help": "TURN_JUMP: log of the ratio of this observation's value to the larger of its median over "
                  "the lagged trend window and that window's trend forecast, that counts as an exceedance: the "
                  "latest update turned that many times further from the weights' recent course than expected. "
                  "One exceedance opens an episode; one-sided. Calibrated."},
    )
    turn_lag: int = field(
        default=8,
        metadata={"help": "TURN_JUMP also scores the turn against the trend window that ends this many observations "
                  "back (the larger log ratio of the two counts): under Adam's momentum a reversal builds over ~10 "
                  "readings, which the window `lag` observations back takes in as it rises (study 13). 0 (or at most "
                  "`lag`): the `lag` window alone, as before study 13."},
    )
    finite_signals: Sequence[str] = field(
        default=DEFAULT_FINITE_SIGNALS,
        metadata={"help": "Signals (names or glob patterns) checked for NON_FINITE alone, besides the watched "
                  "`signals`: one that turns NaN/inf after finite values raises NON_FINITE at once; no other test "
                  "applies to them. Default: the probe forward's head/* and pairs/* signals, which a probe that meets "
                  "non-finite activations feeds as NaN. Empty: only the watched signals are checked."},
    )
    min_consecutive: int = field(
        default=2,
        metadata={"help": "Consecutive exceedances of one test needed to open an episode (and raise its one "
                  "alert). At least 1."},
    )
    decisive_factor: float = field(
        default=2.0,
        metadata={"help": "TREND_BREAK, SLOPE_CHANGE, VARIANCE_BURST, SPEED_JUMP: an exceedance of at least this many "
                  "times the test's threshold opens the episode at once, without waiting for min_consecutive: a "
                  "batch metric that jumps that far (swapped preference labels make TRL's logps/chosen fall by "
                  "several nats in one step) is reported at the first reading that sees it (study 14's choice; "
                  "the largest single exceedance in 104 fault-free runs was 0.95 of its threshold). 0: off, every "
                  "test waits for min_consecutive. Otherwise at least 1."},
    )
    release_fraction: float = field(
        default=0.5,
        metadata={"help": "An observation is quiet when every score is at most this fraction of its threshold "
                  "(variance ratio: of the excess over 1). Also the level a TREND_BREAK or PATTERN_CHANGE onset "
                  "is traced back to. In (0, 1)."},
    )
    release_after: int = field(
        default=3,
        metadata={"help": "An open episode closes after this many consecutive quiet observations; only then "
                  "can the signal raise another alert. At least 1."},
    )
    min_scale: float = field(
        default=1e-9,
        metadata={"help": "Absolute floor of the noise σ̂, so an exactly flat signal does not make any change "
                  "infinite. No relative floor: pass a measured noise to update(noise=...) instead. > 0."},
    )
    non_finite: Literal["alert", "skip"] = field(
        default="alert",
        metadata={"help": "'alert': a signal turning NaN/inf after finite values raises a NON_FINITE alert at "
                  "once (warm-up or not). 'skip': non-finite observations are ignored. Either way they never "
                  "enter the statistics."},
    )

    def __post_init__(self) -> None:
        check_detector_fields(self)

    @property
    def history_length(self) -> int:
        """Observations a scalar signal's state keeps: the trend window and the longer of its lags (``lag``,
        ``turn_lag``), or the variance window and its reference if longer."""
        return max(self.window + max(self.lag, self.turn_lag), self.variance_window + self.variance_reference)

    # ------------------------------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view (the inverse of :meth:`from_dict`)."""
        data = asdict(self)
        data["signals"] = dict(self.signals)  # type: ignore[arg-type]
        for name in ("vectors", "checks", "variance_signals", "speed_signals", "update_signals", "turn_signals",
                     "finite_signals"):
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorConfig:
        """Build from :meth:`to_dict` output; unknown keys are refused with their names."""
        return fields_of(cls, data)  # type: ignore[no-any-return]

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as plain JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, allow_nan=False)
            handle.write("\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DetectorConfig:
        """Read a file written by :meth:`to_json` (e.g. by ``scripts/calibrate_detector.py``)."""
        return cls.from_dict(read_json_object(path, "DetectorConfig fields"))

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text (used by the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
