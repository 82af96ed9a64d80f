"""Hysteresis: runs of exceedances open an episode, runs of quiet observations close it.

One :class:`EpisodeTracker` per watched signal. A test that exceeds its threshold ``min_consecutive``
observations in a row (with the same sign) opens an *episode*, which raises exactly one alert; while it is
open nothing else about that signal is reported; it closes after ``release_after`` consecutive *quiet*
observations (every score at most ``release_fraction`` of its threshold). Pure state, no numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spinal_callback.config.signals import CHECKS
from spinal_callback.early_warning.alerts import AlertReason

__all__ = ["EpisodeTracker"]


@dataclass
class EpisodeTracker:
    """Exceedance runs and the open episode of one signal (plain types only).

    Attributes:
        hot: Test → length of its current run of exceedances.
        sign: Test → sign (+1 / −1) of that run.
        episode: Reason of the open episode, or ``None``.
        quiet_streak: Consecutive quiet observations while an episode is open.
    """

    hot: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    sign: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    episode: AlertReason | None = None
    quiet_streak: int = 0

    @property
    def calm(self) -> bool:
        """No episode open and no test in a run of exceedances."""
        return self.episode is None and not any(self.hot.values())

    def observe(self, exceed: Mapping[str, int], quiet: bool, priority: Sequence[str],
                min_consecutive: int | Mapping[str, int], release_after: int) -> str | None:
        """Record one scored observation.

        Args:
            exceed: Test → 0 (below threshold), +1 or −1 (exceeded, with the direction it went).
            quiet: Every score at most its release level.
            priority: Tests in the order they win when several qualify at once.
            min_consecutive: Run length that opens an episode (one for all tests, or test → its own).
            release_after: Quiet observations that close one.

        Returns:
            The test that opened an episode now, else ``None``.
        """
        for test in CHECKS:
            s = exceed.get(test, 0)
            if s == 0:
                self.hot[test], self.sign[test] = 0, 0
            elif self.hot[test] > 0 and self.sign[test] == s:
                self.hot[test] += 1
            else:
                self.hot[test], self.sign[test] = 1, s
        if self.episode is None:
            need = (min_consecutive if isinstance(min_consecutive, Mapping)
                    else dict.fromkeys(priority, min_consecutive))
            opened = next((t for t in priority if self.hot[t] >= need.get(t, 1)), None)
            if opened is not None:
                self.episode, self.quiet_streak = AlertReason(opened), 0
            return opened
        self.idle(quiet, release_after)
        return None

    def idle(self, quiet: bool, release_after: int) -> None:
        """An observation with nothing to exceed (warm-up, or a quiet one): count towards closing."""
        if self.episode is None:
            return
        self.quiet_streak = self.quiet_streak + 1 if quiet else 0
        if self.quiet_streak >= release_after:
            self.clear()

    def clear(self) -> None:
        self.hot = dict.fromkeys(CHECKS, 0)
        self.sign = dict.fromkeys(CHECKS, 0)
        self.episode, self.quiet_streak = None, 0

    def to_dict(self) -> dict[str, Any]:
        return {"hot": dict(self.hot), "sign": dict(self.sign),
                "episode": None if self.episode is None else self.episode.value, "quiet_streak": self.quiet_streak}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpisodeTracker:
        out = cls()
        for test in CHECKS:
            out.hot[test] = int(data.get("hot", {}).get(test, 0))
            out.sign[test] = int(data.get("sign", {}).get(test, 0))
        episode = data.get("episode")
        out.episode = None if episode is None else AlertReason(episode)
        out.quiet_streak = int(data.get("quiet_streak", 0))
        return out
