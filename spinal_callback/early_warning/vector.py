"""One observation of one per-layer vector signal: the cross-layer PATTERN_CHANGE test (pure, given its state).

Scores come from :func:`~spinal_callback.early_warning.t2.pattern_score` (Hotelling T² of the per-layer
residuals against their lagged Theil–Sen forecasts, Ledoit–Wolf covariance, Wilson–Hilferty normal
score). Exceedance: ``score ≥ t2_threshold``; quiet: ``score ≤ release_fraction · t2_threshold``; onset: the
start of the run of scores above that release level.
"""

from __future__ import annotations

import math

import numpy as np

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.early_warning.messages import pattern_message
from spinal_callback.early_warning.scalar import Outcome, non_finite_alert, step_before
from spinal_callback.early_warning.state import VectorState
from spinal_callback.early_warning.t2 import pattern_score

__all__ = ["observe_vector"]


def observe_vector(cfg: DetectorConfig, st: VectorState, name: str, step: int, v: np.ndarray,
                   layers: tuple[int, ...]) -> Outcome:
    """Feed the vector ``v`` (observed at ``step``) to ``st`` and decide. ``v`` must have the state's size."""
    if not np.all(np.isfinite(v)):
        last = float(np.mean(st.history[-1][1])) if st.history else math.nan
        return Outcome(non_finite_alert(cfg, st, name, step, float(v[~np.isfinite(v)][0]), last, layers))
    st.seen_finite = True
    st.count += 1
    out = Outcome()
    if len(st.history) < cfg.window + cfg.lag:
        st.episodes.idle(True, cfg.release_after)
    else:
        end = len(st.history) - cfg.lag
        rows = np.asarray([h for _, h in st.history][end - cfg.window:end])
        ps = pattern_score(rows, v, cfg.lag, cfg.min_scale)
        out.scores = {"t2": ps.t2, "pattern": ps.score}
        threshold, level = cfg.t2_threshold, cfg.release_fraction * cfg.t2_threshold
        if st.count <= cfg.warmup:
            st.episodes.idle(True, cfg.release_after)
        else:
            out.tests = {"pattern_change": ps.score}
            exceed = {"pattern_change": int(ps.score >= threshold)}
            opened = st.episodes.observe(exceed, ps.score <= level, ("pattern_change",), cfg.min_consecutive,
                                         cfg.release_after)
            if opened is not None:
                onset = step
                for earlier, score in reversed(st.recent):
                    if score < level:
                        break
                    onset = earlier
                message = pattern_message(name, layers, step, ps.t2, ps.score, threshold, onset,
                                          ps.standardized.tolist(), float(np.mean(v - ps.forecast)))
                out.alerts.append(Alert(step, AlertReason.PATTERN_CHANGE, name, float(np.mean(v)),
                                        float(np.mean(ps.forecast)), ps.score, threshold, layers, onset,
                                        step_before(st.history, onset), message))
        st.recent.append((step, ps.score))
    st.history.append((step, v.tolist()))
    st.last_step = step
    return out
