"""``DetectorConfig``: the validated settings of the early-warning detector.

Kept apart from :mod:`spinal_callback.detector` (which re-exports it) so the detector module holds only
the decision logic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from .validation import check_int

__all__ = ["CHECKS", "DEFAULT_SIGNALS", "DIRECTIONS", "DetectorConfig"]

#: Directions a signal can go bad in.
DIRECTIONS = ("up", "down", "both")
#: Statistical tests the detector can run (the values of the matching ``AlertReason`` members).
CHECKS = ("spike", "drift", "rising_variance")

#: Watched signals and the direction that is *bad* for each. Geometry signals are band summaries of the
#: depth trace (TensorBoard tag ``spinal/<name>``); the DPO metrics are TRL's names, watched when fed.
#: Directions follow SPINAL: healthy alignment raises late-band contraction and lowers transport, while
#: destabilised checkpoints trace higher-curvature, more entropic depth paths. A falling chosen
#: log-probability / reward ("likelihood displacement") or preference accuracy is the bad direction.
DEFAULT_SIGNALS: dict[str, str] = {
    "band/late/transport_curvature": "up",
    "band/late/contraction": "down",
    "band/late/transport": "up",
    "band/late/entropy": "up",
    "rewards/chosen": "down",
    "logps/chosen": "down",
    "rewards/accuracies": "down",
}


def _float(name: str, value: object, low: float, high: float = math.inf, *, open_low: bool = False,
           open_high: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if open_low else v >= low) and (v < high if open_high else v <= high) and math.isfinite(v)
    if not ok:
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high or high == math.inf else ']'}"
        raise ValueError(f"`{name}` must be a finite number in {bounds}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


@dataclass
class DetectorConfig:
    """Settings of :class:`~spinal_callback.detector.EarlyWarningDetector`.

    Validated on construction: a bad value raises ``ValueError`` naming the field, what is allowed and
    what was given. Thresholds are in units of the baseline's robust standard deviation σ̂
    (:func:`~spinal_callback.robust.robust_scale`: 1.4826·MAD, guarded for short baselines, floored by
    ``min_scale`` and ``min_scale_rel·|median|``).
    """

    signals: Mapping[str, str] | Sequence[str] = field(
        default_factory=lambda: dict(DEFAULT_SIGNALS),
        metadata={"help": "Signals to watch, as {name: bad direction} with direction 'up', 'down' or 'both' "
                  "(a plain list of names means 'both'). Names are the band tags without the 'spinal/' prefix "
                  "('band/late/transport_curvature') or DPO metric names ('logps/chosen'); signals never fed "
                  "are simply not watched. Default: late-band transport curvature (up), contraction (down), "
                  "transport (up), lens entropy (up), and rewards/chosen, logps/chosen, rewards/accuracies "
                  "(down)."},
    )
    warmup: int = field(
        default=5,
        metadata={"help": "Finite observations of a signal that only build its baseline (no test runs, no "
                  "alert except NON_FINITE). At least 3."},
    )
    baseline_window: int = field(
        default=100,
        metadata={"help": "The baseline median/MAD is taken over at most this many most recent observations "
                  "that were admitted to it: the warm-up, then every observation that exceeded no test while "
                  "no episode was open. A long window lags a slow ramp, so DRIFT can see it. >= warmup."},
    )
    adapt_baseline: bool = field(
        default=True,
        metadata={"help": "True: observations after the warm-up that exceed no test (outside episodes) keep "
                  "joining the baseline window, so its estimates sharpen and healthy trends are absorbed "
                  "slowly. False: the baseline is the warm-up alone, frozen."},
    )
    checks: Sequence[str] = field(
        default=CHECKS,
        metadata={"help": "Tests to run, any of 'spike' (robust z-score), 'drift' (CUSUM) and "
                  "'rising_variance'. Non-finite values are governed by `non_finite`."},
    )
    z_threshold: float = field(
        default=6.0,
        metadata={"help": "SPIKE: robust z-score (x − median)/σ̂ in the bad direction that counts as an "
                  "exceedance. 6 is well outside Gaussian noise even when σ̂ comes from few observations."},
    )
    cusum_k: float = field(
        default=0.5,
        metadata={"help": "DRIFT: reference value k of the CUSUM S_t = max(0, S_{t−1} + clip(z_t, ±3) − k_n), "
                  "in σ̂ units: about half the smallest sustained shift worth detecting. The detector uses "
                  "k_n = k + 1.253/√n, widened by the standard error of the median of n baseline values."},
    )
    cusum_h: float = field(
        default=8.0,
        metadata={"help": "DRIFT: decision threshold h of the CUSUM, in σ̂ units. The statistic is capped at "
                  "h so that an episode can end a bounded number of observations after the signal "
                  "recovers."},
    )
    variance_window: int = field(
        default=10,
        metadata={"help": "RISING_VARIANCE: number of most recent successive differences whose noise level "
                  "(trimmed mean |Δx|) is compared with the baseline's; the test starts once "
                  "the baseline holds as many observations. At least 3."},
    )
    variance_ratio: float = field(
        default=8.0,
        metadata={"help": "RISING_VARIANCE: ratio (recent noise σ / baseline noise σ)² that counts as an "
                  "exceedance (8 ≈ the noise σ grew 2.8-fold); widened to variance_ratio·(1 + 1.5/√m)² while "
                  "the baseline holds only m + 1 observations. > 1."},
    )
    min_consecutive: int = field(
        default=2,
        metadata={"help": "Consecutive exceedances of one test needed to open an episode (and raise its one "
                  "alert)."},
    )
    release_fraction: float = field(
        default=0.5,
        metadata={"help": "Release levels as a fraction of the alarm levels: an observation is quiet when "
                  "z <= f·z_threshold, CUSUM <= f·cusum_h and variance ratio <= 1 + f·(threshold − 1). "
                  "In (0, 1)."},
    )
    release_after: int = field(
        default=3,
        metadata={"help": "An open episode closes after this many consecutive quiet observations; only then "
                  "can the signal raise another alert."},
    )
    min_scale: float = field(
        default=1e-6,
        metadata={"help": "Absolute floor of σ̂, so a flat baseline does not make tiny changes infinite. > 0."},
    )
    min_scale_rel: float = field(
        default=0.02,
        metadata={"help": "Relative floor of σ̂ as a fraction of |median|: with the default, a perfectly flat "
                  "signal needs a 12% move (z_threshold × 2%) to spike."},
    )
    non_finite: Literal["alert", "skip"] = field(
        default="alert",
        metadata={"help": "'alert': a signal turning NaN/inf after finite values raises a NON_FINITE alert at "
                  "once (warm-up or not). 'skip': non-finite observations are ignored. Either way they never "
                  "enter the statistics."},
    )

    def __post_init__(self) -> None:
        self.signals = self._check_signals(self.signals)
        check_int("warmup", self.warmup, 3)
        check_int("baseline_window", self.baseline_window, 3)
        if self.baseline_window < self.warmup:
            raise ValueError(
                f"`baseline_window` must be >= `warmup` ({self.warmup}), got {self.baseline_window!r}"
            )
        if not isinstance(self.adapt_baseline, bool):
            raise ValueError(f"`adapt_baseline` must be True or False, got {self.adapt_baseline!r}")
        checks = (self.checks,) if isinstance(self.checks, str) else self.checks
        if not isinstance(checks, Sequence) or not checks or any(c not in CHECKS for c in checks):
            raise ValueError(
                f"`checks` must be a non-empty list of {', '.join(CHECKS)}, got {self.checks!r}"
            )
        self.checks = tuple(dict.fromkeys(checks))
        self.z_threshold = _float("z_threshold", self.z_threshold, 0.0, open_low=True)
        self.cusum_k = _float("cusum_k", self.cusum_k, 0.0)
        self.cusum_h = _float("cusum_h", self.cusum_h, 0.0, open_low=True)
        check_int("variance_window", self.variance_window, 3)
        self.variance_ratio = _float("variance_ratio", self.variance_ratio, 1.0, open_low=True)
        check_int("min_consecutive", self.min_consecutive, 1)
        self.release_fraction = _float("release_fraction", self.release_fraction, 0.0, 1.0, open_low=True,
                                       open_high=True)
        check_int("release_after", self.release_after, 1)
        self.min_scale = _float("min_scale", self.min_scale, 0.0, open_low=True)
        self.min_scale_rel = _float("min_scale_rel", self.min_scale_rel, 0.0)
        if self.non_finite not in ("alert", "skip"):
            raise ValueError(f"`non_finite` must be one of alert, skip, got {self.non_finite!r}")

    @staticmethod
    def _check_signals(signals: object) -> dict[str, str]:
        if isinstance(signals, Mapping):
            items = list(signals.items())
        elif isinstance(signals, Sequence) and not isinstance(signals, (str, bytes)):
            items = [(name, "both") for name in signals]
        else:
            raise ValueError(
                f"`signals` must be a mapping {{name: direction}} or a list of names, got {signals!r:.80}"
            )
        if not items:
            raise ValueError("`signals` must name at least one signal, got an empty collection")
        checked: dict[str, str] = {}
        for name, direction in items:
            if not isinstance(name, str) or not name:
                raise ValueError(f"`signals` keys must be non-empty strings, got {name!r}")
            if direction not in DIRECTIONS:
                raise ValueError(
                    f"`signals[{name!r}]` must be one of {', '.join(DIRECTIONS)}, got {direction!r}"
                )
            checked[name] = direction
        return checked

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view."""
        data = asdict(self)
        data["signals"] = dict(self.signals)  # type: ignore[arg-type]
        data["checks"] = list(self.checks)
        return data

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name → help text (used by the docs)."""
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
