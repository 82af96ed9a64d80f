"""``ProbeSchedule``: which probes are due at an optimizer step — pure bookkeeping, no torch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ProbeSchedule"]


class ProbeSchedule:
    """Readings of the forward-free signals at step 0 (optional) and every ``reading_interval`` steps, the
    geometry probe at step 0 and every ``interval`` steps (always a reading step too); patching every
    ``patch_interval``.

    Each step is read and probed at most once, however often the trainer calls (gradient accumulation calls
    the batch hook several times per optimizer step; a resumed run starts past its last probe).

    Args:
        interval: geometry probe every N optimizer steps (N ≥ 1, a multiple of ``reading_interval``).
        patch_interval: patching probe every N steps, step 0 excluded; 0 turns it off.
        probe_at_start: also read and probe at step 0 (the baseline).
        reading_interval: forward-free readings (and the detector) every N steps; default ``interval``.
    """

    def __init__(self, interval: int, patch_interval: int = 0, probe_at_start: bool = True,
                 reading_interval: int | None = None) -> None:
        reading_interval = interval if reading_interval is None else reading_interval
        if interval % reading_interval:
            raise ValueError(f"the probe interval ({interval}) must be a multiple of the reading interval "
                             f"({reading_interval})")
        self.interval = interval
        self.reading_interval = reading_interval
        self.patch_interval = patch_interval
        self.probe_at_start = probe_at_start
        self.last_probe_step = -1
        self.last_reading_step = -1
        self.last_patch_step = 0

    def reading_due(self, step: int) -> bool:
        """True at step 0 (if ``probe_at_start``) and at every multiple of ``reading_interval``, once each."""
        return step > self.last_reading_step and self._on_grid(step, self.reading_interval)

    def probe_due(self, step: int) -> bool:
        """True at step 0 (if ``probe_at_start``) and at every multiple of ``interval``, once each."""
        return step > self.last_probe_step and self._on_grid(step, self.interval)

    def _on_grid(self, step: int, every: int) -> bool:
        return self.probe_at_start if step == 0 else step % every == 0

    def patch_due(self, step: int) -> bool:
        """True at every positive multiple of ``patch_interval`` (once each); never when it is 0."""
        interval = self.patch_interval
        return interval > 0 and step > self.last_patch_step and step % interval == 0

    def state_dict(self) -> dict[str, Any]:
        return {"last_probe_step": self.last_probe_step, "last_reading_step": self.last_reading_step,
                "last_patch_step": self.last_patch_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last_probe_step = int(state.get("last_probe_step", self.last_probe_step))
        # a state saved before readings existed: every probe was a reading
        self.last_reading_step = int(state.get("last_reading_step", self.last_probe_step))
        self.last_patch_step = int(state.get("last_patch_step", self.last_patch_step))
