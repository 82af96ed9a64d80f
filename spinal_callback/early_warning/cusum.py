"""Two-sided CUSUM on standardized residuals, with its change-point estimate (Page 1954).

``S⁺_t = max(0, S⁺_{t−1} + clip(z_t, ±4) − k)`` and ``S⁻_t = max(0, S⁻_{t−1} − clip(z_t, ±4) − k)``.
A sustained bend of a signal's trend (its increments grow or shrink) makes its residuals against the lagged
trend forecast drift away from 0 together, so one of the sums grows steadily; residuals of a healthy
trend stay centred and the allowance ``k`` drains the sums. Clipping (Huber) keeps one outlier — a
TREND_BREAK's business — from passing for a bend. The step where a sum last left 0 is the classical
CUSUM estimate of when the change began.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLIP", "Cusum"]

#: z is clipped to ±CLIP inside the CUSUM.
CLIP = 4.0
_SIDES = ("up", "down")


def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


@dataclass
class Cusum:
    """The two one-sided sums of one signal, with where each last left zero.

    Attributes:
        value: ``{"up": S⁺, "down": S⁻}``.
        start: Step of the observation at which each sum last left 0 (``None`` while it is 0).
        before: Step of the observation before that one (the last one known to be on the trend).
    """

    value: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SIDES, 0.0))
    start: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(_SIDES))
    before: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(_SIDES))

    def update(self, z: float, k: float, step: int, previous_step: int | None, cap: float) -> None:
        """Add one standardized residual ``z`` observed at ``step``; sums are capped at ``cap``."""
        zc = max(-CLIP, min(CLIP, z))
        for side, signed in (("up", zc), ("down", -zc)):
            new = self.value[side] + signed - k
            if new <= 0.0:
                self.value[side], self.start[side], self.before[side] = 0.0, None, None
                continue
            if self.start[side] is None:
                self.start[side], self.before[side] = step, previous_step
            self.value[side] = min(new, cap)

    def score(self, direction: str) -> tuple[float, str]:
        """``(S, side)``: the larger sum among the sides ``direction`` allows ('both', 'up', 'down')."""
        sides = _SIDES if direction == "both" else (direction,)
        side = max(sides, key=lambda s: self.value[s])
        return self.value[side], side

    def to_dict(self) -> dict[str, Any]:
        return {"value": dict(self.value), "start": dict(self.start), "before": dict(self.before)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cusum:
        out = cls()
        for side in _SIDES:
            value = float(data.get("value", {}).get(side, 0.0))
            out.value[side] = value if math.isfinite(value) else 0.0
            out.start[side] = _opt_int(data.get("start", {}).get(side))
            out.before[side] = _opt_int(data.get("before", {}).get(side))
        return out
