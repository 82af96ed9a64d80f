"""Early warning: robust change detection on the time series the monitor produces.

:class:`EarlyWarningDetector` watches each configured signal (late-band transport curvature first, then
late-band contraction, transport, lens entropy and whatever DPO metrics it is fed) as its own series over
optimizer steps. Per signal:

1. **Baseline.** The first ``warmup`` finite observations build it; afterwards every observation that
   exceeds no test while no episode is open joins it too (window ``baseline_window``), unless
   ``adapt_baseline=False``. Centre: the median. Scale σ̂: see :func:`~spinal_callback.robust.robust_scale`
   (MAD-based, guarded against short lucky baselines, floored so a flat baseline does not make tiny
   changes infinite).
2. **Tests**, on the robust z-score ``z = (x − median) / σ̂`` taken in the signal's *bad* direction
   (``up``: z, ``down``: −z, ``both``: |z|):

   - SPIKE: ``z ≥ z_threshold``;
   - DRIFT: one-sided CUSUM ``S_t = max(0, S_{t−1} + clip(z_t, ±3) − k_n)`` per bad direction,
     ``≥ cusum_h``. Clipping z (Huber) keeps a burst of noise from passing for a drift; the allowance
     ``k_n = cusum_k + 1.253/√n`` is widened by the standard error of the median of the ``n`` baseline
     values, so an uncertain short baseline does not either;
   - RISING_VARIANCE: step-to-step noise of the last ``variance_window`` differences against the
     baseline's (:func:`~spinal_callback.robust.step_noise`): ``(σ_recent/σ_base)² ≥ variance_ratio·(1 +
     1.5/√m)²``, the threshold widened by the uncertainty of the baseline's noise estimate (m baseline
     differences).
     Differences make it blind to level shifts and slow trends (those are SPIKE / DRIFT).
3. **Hysteresis.** An *episode* opens when one test has exceeded its threshold ``min_consecutive`` times
   in a row; that raises exactly one :class:`Alert`. If several tests qualify: SPIKE before DRIFT before
   RISING_VARIANCE — except that an episode whose recent noise ratio (over at least 5 observations)
   already reaches that threshold is reported as RISING_VARIANCE, since jumpy successive differences
   mean the noise grew rather than the level moved. The episode closes only after ``release_after``
   consecutive *quiet* observations (every test at most ``release_fraction`` of its alarm level); the
   CUSUM is capped at ``h`` so that this happens within a bounded number of observations once the signal
   has recovered.
4. **Onset.** SPIKE: the first step of the run of exceedances — or, when a CUSUM in the same direction
   was already past its release level, the step where it last left zero. DRIFT: the step where the CUSUM
   last left zero (the classical CUSUM change-point estimate). RISING_VARIANCE: the same estimate for
   the likelihood-ratio CUSUM of a variance increase over the recent window. NON_FINITE: the step
   itself. ``Alert.last_good_step`` is the observation before the onset.
5. **Non-finite values** never enter the statistics. With ``non_finite="alert"`` a signal that turns
   NaN/inf after having been finite opens a NON_FINITE episode at once — during the warm-up too, since a
   NaN needs no baseline; ``"skip"`` ignores them. Signals that were never finite never alert.

With the defaults, 200 observations of Gaussian noise raise an alert in about 0.5% of runs (any
direction), a ramp of 0.05 σ per observation is flagged as DRIFT about 35 observations after it starts
(its z-score, on the same baseline, reaches the SPIKE threshold only after about 110), and a 10 σ step is
flagged at its second observation (min_consecutive=2) with the exact onset.

Each signal has at most one open episode, so one update returns several alerts only when several signals
open episodes at the same step. :meth:`EarlyWarningDetector.update` is pure given the state: no I/O, no
logging, no clock.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

from .alerts import Alert, AlertReason, chart_hint, describe_layers
from .detector_config import CHECKS, DEFAULT_SIGNALS, DIRECTIONS, DetectorConfig
from .detector_state import Scores, SignalState
from .robust import median_standard_error, robust_scale, step_noise

__all__ = [
    "CHECKS",
    "DEFAULT_SIGNALS",
    "DIRECTIONS",
    "Alert",
    "AlertReason",
    "DetectorConfig",
    "EarlyWarningDetector",
    "signals_from_bands",
]

_CUSUM_CLIP = 3.0  # z is clipped to ±3 inside the CUSUM
_PRIORITY = (AlertReason.SPIKE, AlertReason.DRIFT, AlertReason.RISING_VARIANCE)
_ADVICE = ("Lower the learning rate or raise β (DPO beta), or put 'rollback' in on_alert to restore the last "
           "good snapshot automatically; see {chart}.")


class EarlyWarningDetector:
    """Robust early warning over training-time signals, with one alert per episode.

    Args:
        config: Settings; ``DetectorConfig()`` by default.

    Example:
        >>> det = EarlyWarningDetector()
        >>> for step, value in series:                      # doctest: +SKIP
        ...     for alert in det.update(step, {"band/late/transport_curvature": value}):
        ...         print(alert.message)
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config if config is not None else DetectorConfig()
        self._directions: dict[str, str] = dict(self.config.signals)  # type: ignore[arg-type]
        self._states: dict[str, SignalState] = {name: self._new_state() for name in self._directions}
        #: Scores of the latest update per observed signal: ``{"z", "cusum", "variance_ratio"}`` (NaN when
        #: not computed). Handy for logging; not part of the state.
        self.last_scores: dict[str, dict[str, float]] = {}

    def _new_state(self) -> SignalState:
        cfg = self.config
        return SignalState(baseline=deque(maxlen=cfg.baseline_window), recent=deque(maxlen=cfg.variance_window + 1))

    # ----------------------------------------------------------------------------------------- queries
    @property
    def episode_open(self) -> bool:
        """Whether any signal has an open episode (no known-good snapshot should be taken then)."""
        return any(s.episode is not None for s in self._states.values())

    @property
    def quiet(self) -> bool:
        """No episode open, no test in a run of exceedances and every CUSUM below its release level —
        the state in which a snapshot is safest to call known-good."""
        release = self.config.release_fraction * self.config.cusum_h
        return all(
            s.episode is None and not any(s.hot.values()) and max(s.cusum.values()) <= release
            for s in self._states.values()
        )

    def open_episodes(self) -> dict[str, AlertReason]:
        """Signal → reason of its open episode."""
        return {name: s.episode for name, s in self._states.items() if s.episode is not None}

    def baseline(self, signal: str) -> tuple[float, float] | None:
        """``(median, σ̂)`` of ``signal``'s baseline, or ``None`` while it is still warming up."""
        state = self._states.get(signal)
        if state is None or len(state.baseline) < self.config.warmup:
            return None
        values = [v for _, v in state.baseline]
        center = statistics.median(values)
        return center, robust_scale(values, center, self.config.min_scale, self.config.min_scale_rel)

    # ------------------------------------------------------------------------------------------ update
    def update(
        self,
        step: int,
        signals: Mapping[str, float],
        layers: Mapping[str, tuple[int, ...]] | None = None,
    ) -> list[Alert]:
        """Feed one observation per signal at ``step``; return the alerts of episodes opened now.

        Args:
            step: Optimizer step of the observation.
            signals: Signal name → value. Names not configured are ignored; configured names that are
                missing are simply not observed at this step (signals may come at different cadences).
            layers: Optional signal name → decoder layers it summarises (copied into the alert).

        Returns:
            Newly raised alerts, in the configured signal order (usually empty).
        """
        step = int(step)
        layers = layers or {}
        alerts: list[Alert] = []
        for name, direction in self._directions.items():
            if name not in signals:
                continue
            raw = signals[name]
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ValueError(f"signal {name!r} must be a number, got {raw!r:.80}") from None
            signal_layers = tuple(int(layer) for layer in layers.get(name, ()))
            alert = self._observe(name, direction, step, value, signal_layers)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def _observe(self, name: str, direction: str, step: int, x: float, layers: tuple[int, ...]) -> Alert | None:
        cfg, st = self.config, self._states[name]
        if not math.isfinite(x):
            return self._observe_non_finite(name, st, step, x, layers)
        st.seen_finite = True
        if len(st.baseline) < cfg.warmup:  # warm-up: learn only (a NON_FINITE episode may still close)
            st.baseline.append((step, x))
            st.quiet_streak += 1
            if st.episode is not None and st.quiet_streak >= cfg.release_after:
                st.episode, st.quiet_streak = None, 0
            st.last_step = step
            return None

        sc = self._score(st, direction, step, x)
        f = cfg.release_fraction
        exceeded = {
            "spike": sc.zb >= cfg.z_threshold,
            "drift": sc.cusum >= cfg.cusum_h,
            "rising_variance": sc.ratio >= sc.var_threshold,
        }
        exceeded = {check: hit and check in cfg.checks for check, hit in exceeded.items()}
        for check in CHECKS:
            st.hot[check] = st.hot[check] + 1 if exceeded[check] else 0
        if st.hot["spike"] == 1:
            # Onset of a jump: this step, unless a drift in the same direction was already under way.
            d = "up" if sc.z >= 0 else "down"
            drifting = "drift" in cfg.checks and sc.prior_cusum[d] > f * cfg.cusum_h
            start = st.cusum_start[d] if drifting else None
            st.spike_start, st.spike_prev = (start, st.cusum_prev[d]) if start is not None else (step, st.last_step)
        elif st.hot["spike"] == 0:
            st.spike_start = st.spike_prev = None
        quiet = (
            sc.zb <= f * cfg.z_threshold
            and ("drift" not in cfg.checks or sc.cusum <= f * cfg.cusum_h)
            and not sc.ratio > 1.0 + f * (sc.var_threshold - 1.0)
        )
        self.last_scores[name] = {"z": sc.z, "cusum": sc.cusum, "variance_ratio": sc.ratio}

        alert = None
        if st.episode is None:
            reason = next((r for r in _PRIORITY if st.hot[r.value] >= cfg.min_consecutive), None)
            if reason is not None and sc.partial_ratio >= sc.var_threshold:
                # Large deviations with jumpy step-to-step changes: the noise grew; the level did not just
                # shift (a level shift or a ramp leaves successive differences small).
                reason = AlertReason.RISING_VARIANCE
            if reason is not None:
                st.episode, st.quiet_streak = reason, 0
                alert = self._make_alert(name, reason, step, x, sc, layers, st)
        elif quiet:
            st.quiet_streak += 1
            if st.quiet_streak >= cfg.release_after:
                st.episode, st.quiet_streak = None, 0
                st.hot = dict.fromkeys(CHECKS, 0)
        else:
            st.quiet_streak = 0
        if st.episode is None and cfg.adapt_baseline and not any(exceeded.values()):
            st.baseline.append((step, x))
        st.last_step = step
        return alert

    def _score(self, st: SignalState, direction: str, step: int, x: float) -> Scores:
        """Robust z-score, CUSUM update and noise ratio of one post-warm-up observation."""
        cfg = self.config
        values = [v for _, v in st.baseline]
        center = statistics.median(values)
        scale = robust_scale(values, center, cfg.min_scale, cfg.min_scale_rel)
        z = (x - center) / scale
        zb = abs(z) if direction == "both" else (z if direction == "up" else -z)

        # One-sided CUSUMs in the bad direction(s), on z clipped to ±CLIP (Huber) so that a burst of noise
        # is not mistaken for a drift. The allowance k is widened by the standard error of the baseline
        # median (1.253/√n σ̂) so that an uncertain short baseline is not mistaken for one either.
        prior = dict(st.cusum)
        allowance = cfg.cusum_k + median_standard_error(len(values))
        zc = max(-_CUSUM_CLIP, min(_CUSUM_CLIP, z))
        cusum = 0.0
        for d in ("up", "down") if direction == "both" else (direction,):
            new = st.cusum[d] + (zc if d == "up" else -zc) - allowance
            if new <= 0.0:
                st.cusum[d], st.cusum_start[d], st.cusum_prev[d] = 0.0, None, None
                continue
            if st.cusum_start[d] is None:
                st.cusum_start[d], st.cusum_prev[d] = step, st.last_step
            st.cusum[d] = min(new, cfg.cusum_h)
            cusum = max(cusum, new)

        st.recent.append((step, x))
        base_noise = max(step_noise(values), cfg.min_scale, cfg.min_scale_rel * abs(center))
        partial = math.nan  # over a partial window (>= 5 values) too: used only to attribute an episode
        if "rising_variance" in cfg.checks and len(st.recent) >= 5 and len(values) >= len(st.recent):
            partial = (step_noise([v for _, v in st.recent]) / base_noise) ** 2
        ratio = partial if len(st.recent) == st.recent.maxlen else math.nan
        # Widened by the uncertainty of the baseline's own noise estimate (m differences).
        var_threshold = cfg.variance_ratio * (1.0 + 1.5 / math.sqrt(len(values) - 1)) ** 2
        return Scores(center, scale, z, zb, cusum, prior, ratio, partial, var_threshold, base_noise)

    def _observe_non_finite(
        self, name: str, st: SignalState, step: int, x: float, layers: tuple[int, ...]
    ) -> Alert | None:
        if self.config.non_finite == "skip" or not st.seen_finite:
            return None
        st.quiet_streak = 0  # a non-finite value never counts towards closing an episode
        if st.episode is not None:
            return None
        st.episode = AlertReason.NON_FINITE
        center = statistics.median(v for _, v in st.baseline) if st.baseline else math.nan
        message = (
            f"NON_FINITE in {name}{describe_layers(layers)} at step {step}: it became {x} after finite values "
            f"(baseline median {center:.4g}, last finite observation at step {st.last_step}). The model or the probe "
            "is producing non-finite numbers: check the loss and gradient norm for a blow-up. "
            + _ADVICE.format(chart=chart_hint(name))
        )
        return Alert(step, AlertReason.NON_FINITE, name, x, center, math.inf, math.nan, layers, step,
                     st.last_step, message)

    def _make_alert(
        self, name: str, reason: AlertReason, step: int, x: float, sc: Scores, layers: tuple[int, ...],
        st: SignalState,
    ) -> Alert:
        cfg = self.config
        change = f"{x - sc.center:+.3g}" + (f", {(x - sc.center) / abs(sc.center):+.0%}" if sc.center else "")
        moved = f"{x:.4g} against a baseline of {sc.center:.4g} ± {sc.scale:.2g} (median ± robust σ; {change})"
        if reason is AlertReason.SPIKE:
            onset, prev = st.spike_start, st.spike_prev
            score, threshold = sc.zb, cfg.z_threshold
            what = f"jumped to {moved}: robust z = {sc.z:+.1f}, threshold {cfg.z_threshold:g}"
        elif reason is AlertReason.DRIFT:
            d = max(st.cusum, key=lambda k: st.cusum[k])
            onset, prev = st.cusum_start[d], st.cusum_prev[d]
            score, threshold = sc.cusum, cfg.cusum_h
            what = (f"has drifted {d} to {moved}: CUSUM {sc.cusum:.1f} σ-units, threshold {cfg.cusum_h:g}")
        else:
            onset, prev = _variance_onset(list(st.recent), sc.base_noise, cfg.variance_ratio)
            score = sc.ratio if math.isfinite(sc.ratio) else sc.partial_ratio
            threshold = sc.var_threshold
            what = (f"fluctuates {math.sqrt(score):.1f}× more from step to step than during its baseline "
                    f"(noise σ {math.sqrt(score) * sc.base_noise:.2g} vs {sc.base_noise:.2g}, variance ratio "
                    f"{score:.1f}, threshold {threshold:g}); now {moved}")
        onset = step if onset is None else min(onset, step)
        message = (f"{reason.name} in {name}{describe_layers(layers)} at step {step}: it {what}, since about step "
                   f"{onset}. " + _ADVICE.format(chart=chart_hint(name)))
        return Alert(step, reason, name, x, sc.center, score, threshold, layers, onset, prev, message)

    # ------------------------------------------------------------------------------------------- state
    def reset(self, keep_baseline: bool = True, *, since_step: int | None = None) -> None:
        """Forget in-episode state, e.g. after a rollback.

        Args:
            keep_baseline: True (after a rollback): keep the baseline learned before the onset; CUSUMs,
                recent windows, exceedance runs and open episodes are cleared. False: forget everything
                and warm up again.
            since_step: With ``keep_baseline``, also drop baseline observations taken at or after this
                step (pass the alert's ``onset_step``: those observations came from the trajectory that was
                rolled back).
        """
        for state in self._states.values():
            state.clear_episode_state()
            state.last_step = None
            if not keep_baseline:
                state.baseline.clear()
                state.seen_finite = False
            elif since_step is not None:
                kept = [(s, v) for s, v in state.baseline if s < since_step]
                state.baseline.clear()
                state.baseline.extend(kept)
        self.last_scores = {}

    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-able state (lists, floats, ints, str, None; reasons by value)."""
        return {"version": 1, "signals": {name: s.to_dict() for name, s in self._states.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output. Signals missing from ``state`` start fresh; signals in
        ``state`` that are not configured are ignored; missing keys take their defaults."""
        saved = state.get("signals", {})
        cfg = self.config
        self._states = {
            name: SignalState.from_dict(saved[name], cfg.baseline_window, cfg.variance_window)
            if name in saved else self._new_state()
            for name in self._directions
        }
        self.last_scores = {}


def _variance_onset(window: list[tuple[int, float]], noise: float, ratio: float) -> tuple[int, int]:
    """``(onset, step before it)`` of a noise increase inside ``window``: where the log-likelihood-ratio
    CUSUM for a variance increase by ``ratio`` last left zero. Its increments are
    ``q − r·ln(r)/(r − 1)`` with ``q = Δx² / 2σ²`` (mean 1 under the baseline noise, ``r`` after the change)."""
    reference = ratio * math.log(ratio) / (ratio - 1.0)
    onset, prev = window[1][0], window[0][0]
    total = 0.0
    for (s0, v0), (s1, v1) in itertools.pairwise(window):
        before = total
        total = max(0.0, total + (v1 - v0) ** 2 / (2.0 * noise**2) - reference)
        if total > 0.0 and before == 0.0:
            onset, prev = s1, s0
    return onset, prev


def signals_from_bands(
    bands: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, float], dict[str, tuple[int, ...]]]:
    """Turn ``DepthTrace.bands`` (or ``DepthTrace.to_dict()["bands"]``) into detector input.

    Args:
        bands: ``{"late": {"layers": [first, last], "transport_curvature": 0.12, ...}, ...}``.

    Returns:
        ``(signals, layers)`` for :meth:`EarlyWarningDetector.update`: ``{"band/late/<metric>": value}``
        (``None`` becomes NaN) and ``{"band/late/<metric>": (first, ..., last)}``.
    """
    signals: dict[str, float] = {}
    layers: dict[str, tuple[int, ...]] = {}
    for band, summary in bands.items():
        span = summary.get("layers") or []
        band_layers = tuple(range(int(span[0]), int(span[-1]) + 1)) if span else ()
        for metric, value in summary.items():
            if metric == "layers" or not (value is None or isinstance(value, (int, float))):
                continue
            key = f"band/{band}/{metric}"
            signals[key] = math.nan if value is None else float(value)
            layers[key] = band_layers
    return signals, layers
