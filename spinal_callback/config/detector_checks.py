"""``DetectorConfig``'s field checks: each field's type and range, and the rules that tie fields together (the variance
window inside the trend window and its reference before it, a signal in one of the update and turn tests only, a
decisive factor of 0 or at least 1). :class:`~spinal_callback.config.detector.DetectorConfig` runs them at
construction; they live here so that its module holds the fields and their help.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from spinal_callback.config.signals import CHECKS, check_names, check_signal_map
from spinal_callback.config.validation import check_float, check_int

if TYPE_CHECKING:
    from spinal_callback.config.detector import DetectorConfig

__all__ = ["check_detector_fields"]


def check_detector_fields(config: DetectorConfig) -> None:
    """Check every field of ``config`` and normalize it in place (the signal map, name tuples, floats).

    Raises:
        ValueError: a field out of its range or of the wrong type, or two fields that contradict each other; the
            message names the field, what it must be and what was given.
    """
    config.signals = check_signal_map(config.signals)
    config.vectors = check_names("vectors", config.vectors)
    check_int("window", config.window, 5)
    check_int("lag", config.lag, 0)
    check_int("turn_lag", config.turn_lag, 0)
    check_int("warmup", config.warmup, 3)
    checks = (config.checks,) if isinstance(config.checks, str) else config.checks
    if not isinstance(checks, Sequence) or not checks or any(c not in CHECKS for c in checks):
        raise ValueError(f"`checks` must be a non-empty list of {', '.join(CHECKS)}, got {config.checks!r}")
    config.checks = tuple(dict.fromkeys(checks))
    config.z_threshold = check_float("z_threshold", config.z_threshold, 0.0, open_low=True)
    config.cusum_k = check_float("cusum_k", config.cusum_k, 0.0)
    config.cusum_h = check_float("cusum_h", config.cusum_h, 0.0, open_low=True)
    check_int("variance_window", config.variance_window, 3)
    if config.variance_window > config.window + config.lag:
        raise ValueError(f"`variance_window` must be <= window + lag ({config.window + config.lag}), "
                         f"got {config.variance_window!r}")
    check_int("variance_reference", config.variance_reference, 0)
    if 0 < config.variance_reference < 4:
        raise ValueError(f"`variance_reference` must be 0 (the pooled noise scale) or an integer >= 4, got "
                         f"{config.variance_reference!r}")
    if config.variance_reference:
        if config.window + config.lag - config.variance_window < 4:
            raise ValueError(f"`variance_reference` needs window + lag − variance_window >= 4 increments before "
                             f"the variance window at the first score, got {config.window} + {config.lag} − "
                             f"{config.variance_window}: lower variance_window or set variance_reference=0")
    config.variance_signals = check_names("variance_signals", config.variance_signals)
    config.variance_threshold = check_float("variance_threshold", config.variance_threshold, 1.0, open_low=True)
    config.t2_threshold = check_float("t2_threshold", config.t2_threshold, 0.0, open_low=True)
    config.speed_signals = check_names("speed_signals", config.speed_signals)
    config.speed_threshold = check_float("speed_threshold", config.speed_threshold, 0.0, open_low=True)
    check_int("speed_consecutive", config.speed_consecutive, 1)
    config.update_signals = check_names("update_signals", config.update_signals)
    config.update_threshold = check_float("update_threshold", config.update_threshold, 0.0, open_low=True)
    config.turn_signals = check_names("turn_signals", config.turn_signals)
    config.turn_threshold = check_float("turn_threshold", config.turn_threshold, 0.0, open_low=True)
    both = sorted(set(config.update_signals) & set(config.turn_signals))
    if both:
        raise ValueError(f"{', '.join(map(repr, both))} cannot be both in `update_signals` and in `turn_signals`: "
                         "each is watched by one test; keep a step size in the first and a turn in the second")
    config.finite_signals = check_names("finite_signals", config.finite_signals)
    check_int("min_consecutive", config.min_consecutive, 1)
    config.decisive_factor = check_float("decisive_factor", config.decisive_factor, 0.0)
    if 0.0 < config.decisive_factor < 1.0:
        raise ValueError(f"`decisive_factor` must be 0 (off) or at least 1, got {config.decisive_factor!r}")
    config.release_fraction = check_float("release_fraction", config.release_fraction, 0.0, 1.0, open_low=True,
                                          open_high=True)
    check_int("release_after", config.release_after, 1)
    config.min_scale = check_float("min_scale", config.min_scale, 0.0, open_low=True)
    if config.non_finite not in ("alert", "skip"):
        raise ValueError(f"`non_finite` must be one of alert, skip, got {config.non_finite!r}")
