"""Per-signal memory of the early-warning detector, with a plain-types round trip.

Internal to :mod:`spinal_callback.detector`; kept apart so the detector module holds only decisions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .alerts import AlertReason
from .detector_config import CHECKS

__all__ = ["Scores", "SignalState"]


@dataclass
class SignalState:
    """Everything the detector remembers about one signal (plain types only)."""

    baseline: deque[tuple[int, float]] = field(default_factory=deque)
    seen_finite: bool = False
    last_step: int | None = None
    cusum: dict[str, float] = field(default_factory=lambda: {"up": 0.0, "down": 0.0})
    cusum_start: dict[str, int | None] = field(default_factory=lambda: {"up": None, "down": None})
    cusum_prev: dict[str, int | None] = field(default_factory=lambda: {"up": None, "down": None})
    recent: deque[tuple[int, float]] = field(default_factory=deque)
    hot: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    spike_start: int | None = None
    spike_prev: int | None = None
    episode: AlertReason | None = None
    quiet_streak: int = 0

    def clear_episode_state(self) -> None:
        self.cusum = {"up": 0.0, "down": 0.0}
        self.cusum_start = {"up": None, "down": None}
        self.cusum_prev = {"up": None, "down": None}
        self.recent.clear()
        self.hot = dict.fromkeys(CHECKS, 0)
        self.spike_start = self.spike_prev = None
        self.episode = None
        self.quiet_streak = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": [[s, v] for s, v in self.baseline],
            "seen_finite": self.seen_finite,
            "last_step": self.last_step,
            "cusum": dict(self.cusum),
            "cusum_start": dict(self.cusum_start),
            "cusum_prev": dict(self.cusum_prev),
            "recent": [[s, v] for s, v in self.recent],
            "hot": dict(self.hot),
            "spike_start": self.spike_start,
            "spike_prev": self.spike_prev,
            "episode": None if self.episode is None else self.episode.value,
            "quiet_streak": self.quiet_streak,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], baseline_window: int, variance_window: int) -> SignalState:
        def opt_int(value: object) -> int | None:
            return None if value is None else int(value)  # type: ignore[call-overload]

        def pairs(key: str, maxlen: int) -> deque[tuple[int, float]]:
            return deque(((int(s), float(v)) for s, v in data.get(key, [])), maxlen=maxlen)

        state = cls(baseline=pairs("baseline", baseline_window), recent=pairs("recent", variance_window + 1))
        state.seen_finite = bool(data.get("seen_finite", bool(state.baseline)))
        state.last_step = opt_int(data.get("last_step"))
        for d in ("up", "down"):
            state.cusum[d] = float(data.get("cusum", {}).get(d, 0.0))
            state.cusum_start[d] = opt_int(data.get("cusum_start", {}).get(d))
            state.cusum_prev[d] = opt_int(data.get("cusum_prev", {}).get(d))
        for check in CHECKS:
            state.hot[check] = int(data.get("hot", {}).get(check, 0))
        state.spike_start = opt_int(data.get("spike_start"))
        state.spike_prev = opt_int(data.get("spike_prev"))
        episode = data.get("episode")
        state.episode = None if episode is None else AlertReason(episode)
        state.quiet_streak = int(data.get("quiet_streak", 0))
        return state


@dataclass(frozen=True)
class Scores:
    """Statistics of one observation against its signal's baseline."""

    center: float  # baseline median
    scale: float  # σ̂
    z: float  # robust z-score (signed)
    zb: float  # z in the bad direction
    cusum: float  # largest bad-direction CUSUM, before the cap
    prior_cusum: dict[str, float]  # CUSUMs before this observation
    ratio: float  # (recent noise / baseline noise)², NaN until the window is full
    partial_ratio: float  # the same over a partial window
    var_threshold: float  # variance_ratio widened for the baseline's size
    base_noise: float  # baseline step-to-step noise σ
