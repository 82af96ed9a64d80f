"""Per-signal memory of the early-warning detector, with a plain-types round trip.

Internal to :mod:`spinal_callback.early_warning.detector`; kept apart so the detector module holds only
decisions. Every field is a list, float, int, str or ``None`` once through ``to_dict``; ``from_dict`` reads
missing keys as their defaults, and floats survive JSON exactly (``repr`` round trip), so a detector
resumed from ``json.loads(json.dumps(state))`` continues bit for bit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from spinal_callback.early_warning.cusum import Cusum
from spinal_callback.early_warning.episodes import EpisodeTracker

__all__ = ["NOISE_POOL", "SignalState", "VectorState"]

#: The noise scale pools the residual scales of the last ``NOISE_POOL · window`` trend windows (and as many
#: external noise values): about ``(NOISE_POOL + 1) · window`` distinct observations once the run is long
#: enough, so σ̂ is within ~10 % of σ (one window alone: ~17 %).
NOISE_POOL = 3


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _pairs(data: Mapping[str, Any], key: str, maxlen: int) -> deque[tuple[int, float]]:
    return deque(((int(s), float(v)) for s, v in data.get(key, [])), maxlen=maxlen)


@dataclass
class SignalState:
    """Everything the detector remembers about one scalar signal.

    Attributes:
        history: The last finite observations, ``(step, value)``: ``window + lag`` of them, or the variance
            window and its reference if longer (``DetectorConfig.history_length``).
        noise_pool: ``(step of the window's last observation, σ̂ of that window's residuals)`` of the last
            ``NOISE_POOL · window`` scored observations, pooled into the noise scale.
        external_noise: ``(step, σ)`` of the last ``NOISE_POOL · window`` noise values passed to
            ``update(noise=...)``.
        recent: ``(step, z)`` of the last ``window + lag`` scored observations (onset back-tracking).
        count: Finite observations so far (warm-up).
        seen_finite: Whether any finite value was seen (NON_FINITE needs one first).
        last_step: Step of the latest observation, finite or not.
        cusum: The two-sided CUSUM.
        episodes: Exceedance runs and the open episode.
    """

    history: deque[tuple[int, float]] = field(default_factory=deque)
    noise_pool: deque[tuple[int, float]] = field(default_factory=deque)
    external_noise: deque[tuple[int, float]] = field(default_factory=deque)
    recent: deque[tuple[int, float]] = field(default_factory=deque)
    count: int = 0
    seen_finite: bool = False
    last_step: int | None = None
    cusum: Cusum = field(default_factory=Cusum)
    episodes: EpisodeTracker = field(default_factory=EpisodeTracker)

    @classmethod
    def empty(cls, window: int, lag: int, history: int | None = None) -> SignalState:
        """A fresh state keeping ``history`` observations (default ``window + lag``)."""
        pool = NOISE_POOL * window
        return cls(deque(maxlen=history or window + lag), deque(maxlen=pool), deque(maxlen=pool),
                   deque(maxlen=window + lag))

    def drop_since(self, step: int) -> None:
        """Forget observations (and noise estimates that used them) at or after ``step``."""
        for queue in (self.history, self.noise_pool, self.external_noise, self.recent):
            kept = [item for item in queue if item[0] < step]
            queue.clear()
            queue.extend(kept)

    def clear_episode_state(self) -> None:
        self.cusum = Cusum()
        self.episodes = EpisodeTracker()
        self.recent.clear()
        self.last_step = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [[s, v] for s, v in self.history],
            "noise_pool": [[s, v] for s, v in self.noise_pool],
            "external_noise": [[s, v] for s, v in self.external_noise],
            "recent": [[s, v] for s, v in self.recent],
            "count": self.count,
            "seen_finite": self.seen_finite,
            "last_step": self.last_step,
            "cusum": self.cusum.to_dict(),
            "episodes": self.episodes.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], window: int, lag: int, history: int | None = None) -> SignalState:
        return cls(
            history=_pairs(data, "history", history or window + lag),
            noise_pool=_pairs(data, "noise_pool", NOISE_POOL * window),
            external_noise=_pairs(data, "external_noise", NOISE_POOL * window),
            recent=_pairs(data, "recent", window + lag),
            count=int(data.get("count", 0)),
            seen_finite=bool(data.get("seen_finite", bool(data.get("history")))),
            last_step=_opt_int(data.get("last_step")),
            cusum=Cusum.from_dict(data.get("cusum", {})),
            episodes=EpisodeTracker.from_dict(data.get("episodes", {})),
        )


@dataclass
class VectorState:
    """Everything the detector remembers about one per-layer vector signal.

    Attributes:
        history: The last ``window + lag`` finite vectors, ``(step, [v_1, …, v_p])``.
        recent: ``(step, pattern score)`` of the last ``window + lag`` scored observations.
        count: Finite observations so far (warm-up).
        seen_finite: Whether any finite vector was seen.
        last_step: Step of the latest observation.
        episodes: Exceedance runs and the open episode.
    """

    history: deque[tuple[int, list[float]]] = field(default_factory=deque)
    recent: deque[tuple[int, float]] = field(default_factory=deque)
    count: int = 0
    seen_finite: bool = False
    last_step: int | None = None
    episodes: EpisodeTracker = field(default_factory=EpisodeTracker)

    @classmethod
    def empty(cls, window: int, lag: int) -> VectorState:
        return cls(deque(maxlen=window + lag), deque(maxlen=window + lag))

    def drop_since(self, step: int) -> None:
        for queue in (self.history, self.recent):
            kept = [item for item in queue if item[0] < step]
            queue.clear()
            queue.extend(kept)  # type: ignore[arg-type]

    def clear_episode_state(self) -> None:
        self.episodes = EpisodeTracker()
        self.recent.clear()
        self.last_step = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "history": [[s, list(v)] for s, v in self.history],
            "recent": [[s, v] for s, v in self.recent],
            "count": self.count,
            "seen_finite": self.seen_finite,
            "last_step": self.last_step,
            "episodes": self.episodes.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], window: int, lag: int) -> VectorState:
        history = deque(((int(s), [float(x) for x in v]) for s, v in data.get("history", [])), maxlen=window + lag)
        return cls(
            history=history,
            recent=_pairs(data, "recent", window + lag),
            count=int(data.get("count", 0)),
            seen_finite=bool(data.get("seen_finite", bool(history))),
            last_step=_opt_int(data.get("last_step")),
            episodes=EpisodeTracker.from_dict(data.get("episodes", {})),
        )
