"""Trend-aware early warning: score what healthy DPO does not do, not how far a signal has moved.

Healthy DPO is non-stationary — late-band contraction and transport drift for the whole run, TRL's
``rewards/chosen`` and ``logps/chosen`` fall in many healthy runs — so :class:`EarlyWarningDetector` never
compares a value with its own early history. Per scalar signal (observation index ``n``, window ``W``,
lag ``g``; see :mod:`~spinal_callback.early_warning.scores`):

- a robust Theil–Sen trend on the lagged window ``x_{n−g−W} .. x_{n−g−1}`` forecasts ``x̂_n``; the noise
  σ̂ is measured — the RMS of the last ``3W`` windows' own residual scales, floored by the RMS of the last
  ``3W`` externally measured noise values passed as ``update(noise=...)`` (e.g. split-half differences of
  the probe set) and by ``min_scale`` — never a fraction of the value;
- **TREND_BREAK**: ``z = (x_n − x̂_n)/(σ̂√(1 + v))`` beyond ``z_threshold`` with one sign;
- **SLOPE_CHANGE**: the two-sided CUSUM of z (:mod:`~spinal_callback.early_warning.cusum`) reaches
  ``cusum_h`` — the increments changed and the signal keeps running away from its trend;
- **VARIANCE_BURST**: the recent detrended increments' trimmed mean square over ``2σ̂_ref²`` (σ̂ measured
  before those increments) reaches ``variance_threshold``;
- **SPEED_JUMP** (signals in ``speed_signals``): the log ratio of this observation's change to the median
  change in the lagged window reaches ``speed_threshold`` (one-sided) — an update moved the model far more
  than the ones before it;
- **UPDATE_JUMP** (signals in ``update_signals``, watched by no other test): the log ratio of this
  observation to the larger of the lagged window's median and its trend forecast reaches ``update_threshold``
  (one-sided) — the optimizer moved the weights far further per step than before (``update/size``, read
  without a forward);
- **TURN_JUMP** (signals in ``turn_signals``, watched by no other test): the same ratio reaches ``turn_threshold``
  — the latest update turned far further from the weights' recent course than before (``update/turn``);
- **NON_FINITE**: a NaN/±inf after finite values, at once (warm-up or not) — on every watched signal, and on the
  ``finite_signals`` that no other test watches (by default the probe forward's ``head/*`` and ``pairs/*``).

Per vector signal (per-layer values of a band): **PATTERN_CHANGE** when the Hotelling T² of the per-layer
residuals (Ledoit–Wolf covariance, :mod:`~spinal_callback.early_warning.t2`) reaches ``t2_threshold``.

Direction priors (``signals={name: "up"|"down"}``) restrict TREND_BREAK and SLOPE_CHANGE to one side.
Scores start once ``W + g`` observations exist; tests arm after ``warmup`` observations. Hysteresis
(:mod:`~spinal_callback.early_warning.episodes`): ``min_consecutive`` exceedances open an episode with one
alert, ``release_after`` quiet observations close it. Onset: the start of the run of residuals beyond the
release level (TREND_BREAK, PATTERN_CHANGE), where the CUSUM last left 0 (SLOPE_CHANGE), where the
variance likelihood-ratio CUSUM last left 0 (VARIANCE_BURST). :meth:`EarlyWarningDetector.update` is pure
given the state: no I/O, no logging, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.signals import CHECKS, DEFAULT_SIGNALS, DEFAULT_VECTORS, DIRECTIONS, PROBE_PAIR_SIGNALS
from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.inputs import signals_from_bands, vectors_from_trace
from spinal_callback.early_warning.names import NameResolver
from spinal_callback.early_warning.robust import residual_scale
from spinal_callback.early_warning.scalar import Outcome, noise_scale, observe_finite, observe_scalar
from spinal_callback.early_warning.state import SignalState, VectorState
from spinal_callback.early_warning.t2 import require_pattern_support
from spinal_callback.early_warning.trend import theil_sen
from spinal_callback.early_warning.vector import observe_vector

__all__ = [
    "CHECKS", "DEFAULT_SIGNALS", "DEFAULT_VECTORS", "DIRECTIONS", "PROBE_PAIR_SIGNALS", "Alert", "AlertReason",
    "DetectorConfig",
    "EarlyWarningDetector", "signals_from_bands", "vectors_from_trace",
]

_STATE_VERSION = 2


def _number(what: str, raw: object) -> float:
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {raw!r:.80}") from None


def _vector(name: str, raw: object) -> np.ndarray:
    try:
        values = np.asarray(raw, dtype=float) if not isinstance(raw, (str, bytes)) else np.array([])
    except (TypeError, ValueError):
        values = np.array([])
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"vector {name!r} must be a 1-D list of at least 2 numbers, got {raw!r:.80}")
    return values


class EarlyWarningDetector:
    """Trend-aware early warning over training-time signals, with one alert per episode.

    Args:
        config: Settings; ``DetectorConfig()`` by default.

    Example:
        >>> det = EarlyWarningDetector()
        >>> for step, trace in probes:                                  # doctest: +SKIP
        ...     signals, layers = signals_from_bands(trace.bands)
        ...     vectors, vector_layers = vectors_from_trace(trace.to_dict())
        ...     for alert in det.update(step, signals, {**layers, **vector_layers}, vectors=vectors):
        ...         print(alert.message)
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config if config is not None else DetectorConfig()
        self._direction = NameResolver(self.config.signals)  # type: ignore[arg-type]
        self._vector = NameResolver(self.config.vectors)
        self._speed = NameResolver(self.config.speed_signals)
        self._variance = NameResolver(self.config.variance_signals)
        self._update = NameResolver(self.config.update_signals)
        self._turn = NameResolver(self.config.turn_signals)
        self._finite = NameResolver(self.config.finite_signals)
        self._states: dict[str, SignalState] = {}
        self._vectors: dict[str, VectorState] = {}
        #: Scores of the latest update per observed signal — scalars: ``z``, ``cusum``, ``variance_ratio``,
        #: ``forecast``, ``noise``; vectors: ``t2``, ``pattern`` — once they exist. For logging; not state.
        self.last_scores: dict[str, dict[str, float]] = {}
        #: The armed test statistics of the latest update, as compared with the thresholds (signed for
        #: TREND_BREAK and SLOPE_CHANGE, after the direction prior). Used by calibration; not state.
        self.last_tests: dict[str, dict[str, float]] = {}

    # ----------------------------------------------------------------------------------------- queries
    def _all(self) -> list[SignalState | VectorState]:
        return [*self._states.values(), *self._vectors.values()]

    @property
    def episode_open(self) -> bool:
        """Whether any signal has an open episode (no known-good snapshot should be taken then)."""
        return any(s.episodes.episode is not None for s in self._all())

    @property
    def quiet(self) -> bool:
        """No episode open, no test in a run of exceedances and every CUSUM below its release level —
        the state in which a snapshot is safest to call known-good."""
        release = self.config.release_fraction * self.config.cusum_h
        return all(s.episodes.calm for s in self._all()) and all(
            max(s.cusum.value.values()) <= release for s in self._states.values()
        )

    def open_episodes(self) -> dict[str, AlertReason]:
        """Signal → reason of its open episode."""
        states: dict[str, SignalState | VectorState] = {**self._states, **self._vectors}
        return {name: s.episodes.episode for name, s in states.items() if s.episodes.episode is not None}

    def noise(self, signal: str) -> float | None:
        """σ̂ of a scalar signal as the latest score used it, or ``None`` before its first score."""
        state = self._states.get(signal)
        return None if state is None or not state.noise_pool else noise_scale(state, self.config.min_scale)

    def baseline(self, signal: str) -> tuple[float, float] | None:
        """``(trend level at the newest observation, noise σ̂)`` of a scalar signal, from a Theil–Sen line
        on its last ``window`` observations; ``None`` with fewer than 3."""
        state = self._states.get(signal)
        if state is None or len(state.history) < 3:
            return None
        values = [v for _, v in state.history][-self.config.window:]
        fit = theil_sen(np.asarray(values))
        return fit.at(len(values) - 1), self.noise(signal) or residual_scale(fit.residuals)

    # ------------------------------------------------------------------------------------------ update
    def update(
        self,
        step: int,
        signals: Mapping[str, float],
        layers: Mapping[str, tuple[int, ...]] | None = None,
        noise: Mapping[str, float] | None = None,
        vectors: Mapping[str, Sequence[float]] | None = None,
    ) -> list[Alert]:
        """Feed one probe step's observations; return the alerts of episodes opened now.

        Args:
            step: Optimizer step of the observation.
            signals: Scalar signal name → value. Names not configured are ignored; configured names that are
                missing are simply not observed at this step.
            layers: Optional signal or vector name → decoder layers it covers (copied into the alert; for a
                vector, one layer per component).
            noise: Optional scalar signal name → measured noise σ of this observation (e.g. ``|a − b|/2``
                for the metric on the two halves of the probe set). Pooled (RMS of the last ``3·window``) as
                a floor under the noise the detector measures itself.
            vectors: Optional vector name → per-layer values (``DetectorConfig.vectors`` says which are
                watched). Needs scikit-learn when a watched vector is fed.

        Returns:
            Newly raised alerts (usually none), scalar signals first, in the order they were fed.

        Raises:
            ValueError: A watched value is not a number, or a watched vector not a 1-D list of numbers.
            ImportError: A watched vector is fed and scikit-learn is missing.
        """
        cfg, step = self.config, int(step)
        layers, noise = layers or {}, noise or {}
        self.last_scores, self.last_tests = {}, {}
        alerts: list[Alert] = []
        for name, raw in signals.items():
            update = "update_jump" if self._update(name) is not None else None
            update = update or ("turn_jump" if self._turn(name) is not None else None)
            direction = "up" if update else self._direction(name)
            finite_only = direction is None and self._finite(name) is not None  # checked for NON_FINITE alone
            if direction is None and not finite_only:
                continue
            external = None
            if not finite_only and noise.get(name) is not None:
                external = _number(f"noise[{name!r}]", noise[name])
            value = _number(f"signal {name!r}", raw)
            span = tuple(int(layer) for layer in layers.get(name, ()))
            state = self._states.setdefault(name, SignalState.empty(cfg.window, cfg.lag, cfg.history_length))
            if finite_only:
                self._collect(name, observe_finite(cfg, state, name, step, value, span), alerts)
                continue
            assert direction is not None
            speed = self._speed(name) is not None
            variance = self._variance(name) is not None
            self._collect(name, observe_scalar(cfg, state, name, direction, step, value, span, external, speed,
                                               update, variance), alerts)
        if vectors and "pattern_change" in cfg.checks:
            for name, raw_vector in vectors.items():
                if self._vector(name) is None:
                    continue
                require_pattern_support()  # fail at the first watched vector, not after the warm-up
                values = _vector(name, raw_vector)
                vstate = self._vectors.get(name)
                if vstate is None or (vstate.history and len(vstate.history[-1][1]) != values.size):
                    vstate = self._vectors[name] = VectorState.empty(cfg.window, cfg.lag)  # new, or resized band
                span = tuple(int(layer) for layer in layers.get(name, ()))
                self._collect(name, observe_vector(cfg, vstate, name, step, values, span), alerts)
        return alerts

    def _collect(self, name: str, outcome: Outcome, alerts: list[Alert]) -> None:
        alerts += outcome.alerts
        if outcome.scores is not None:
            self.last_scores[name] = outcome.scores
        if outcome.tests is not None:
            self.last_tests[name] = outcome.tests

    def watches(self, name: str) -> bool:
        """Whether a scalar signal of this name would be observed (by any test, NON_FINITE alone included)."""
        return any(resolve(name) is not None
                   for resolve in (self._direction, self._update, self._turn, self._finite))

    # ------------------------------------------------------------------------------------------- state
    def reset(self, keep_baseline: bool = True, *, since_step: int | None = None) -> None:
        """Forget in-episode state, e.g. after a rollback.

        Args:
            keep_baseline: True (after a rollback): keep each signal's history, noise estimates and warm-up;
                CUSUMs, exceedance runs and open episodes are cleared. False: forget everything.
            since_step: With ``keep_baseline``, also drop observations (and noise estimates that used them)
                at or after this step — pass the alert's ``onset_step``: they came from the trajectory that
                was rolled back.
        """
        if not keep_baseline:
            self._states, self._vectors = {}, {}
        for state in self._all():
            state.clear_episode_state()
            if since_step is not None:
                state.drop_since(int(since_step))
        self.last_scores, self.last_tests = {}, {}

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state (lists, floats, ints, str, None; reasons by value)."""
        return {
            "version": _STATE_VERSION,
            "signals": {name: s.to_dict() for name, s in self._states.items()},
            "vectors": {name: s.to_dict() for name, s in self._vectors.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output. Signals no longer configured are dropped; a state of an older
        format (the history-based detector's) is ignored and the signals start fresh; missing keys take
        their defaults."""
        cfg = self.config
        fresh = int(state.get("version", 1)) != _STATE_VERSION
        signals = {} if fresh else state.get("signals", {})
        vectors = {} if fresh else state.get("vectors", {})
        self._states = {name: SignalState.from_dict(data, cfg.window, cfg.lag, cfg.history_length)
                        for name, data in signals.items() if self.watches(name)}
        self._vectors = {name: VectorState.from_dict(data, cfg.window, cfg.lag)
                         for name, data in vectors.items() if self._vector(name) is not None}
        self.last_scores, self.last_tests = {}, {}

