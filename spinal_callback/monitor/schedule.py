"""``ProbeSchedule``: which probes are due at an optimizer step — pure bookkeeping, no torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ProbeSchedule"]


class ProbeSchedule:
    """Geometry probes at step 0 (optional) and every ``interval`` steps; patching every ``patch_interval``.

    Each step is probed at most once, however often the trainer calls (gradient accumulation calls the
    batch hook several times per optimizer step; a resumed run starts past its last probe).

    Args:
        interval: geometry probe every N optimizer steps (N ≥ 1).
        patch_interval: patching probe every N steps, step 0 excluded; 0 turns it off.
        probe_at_start: also probe at step 0 (the baseline).
    """

    def __init__(self, interval: int, patch_interval: int = 0, probe_at_start: bool = True) -> None:
        self.interval = interval
        self.patch_interval = patch_interval
        self.probe_at_start = probe_at_start
        self.last_probe_step = -1
        self.last_patch_step = 0

    def probe_due(self, step: int) -> bool:
        """True at step 0 (if ``probe_at_start``) and at every multiple of ``interval``, once each."""
        if step <= self.last_probe_step:
            return False
        if step == 0:
            return self.probe_at_start
        return step % self.interval == 0

    def patch_due(self, step: int) -> bool:
        """True at every positive multiple of ``patch_interval`` (once each); never when it is 0."""
        interval = self.patch_interval
        return interval > 0 and step > self.last_patch_step and step % interval == 0

    def state_dict(self) -> dict[str, Any]:
        return {"last_probe_step": self.last_probe_step, "last_patch_step": self.last_patch_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_probe_step = int(state.get("last_probe_step", self.last_probe_step))
        self.last_patch_step = int(state.get("last_patch_step", self.last_patch_step))
