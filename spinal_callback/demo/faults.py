"""Faults a recipe can inject on purpose, to see the early warning and the rollback at work."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["LearningRateSpike", "parse_lr_spike"]


def parse_lr_spike(text: str) -> tuple[int, float]:
    """``"STEP:FACTOR"`` (e.g. ``"60:30"``) → ``(60, 30.0)``; raises ``ValueError`` with the expected form."""
    try:
        step_text, factor_text = text.split(":")
        step, factor = int(step_text), float(factor_text)
    except ValueError:
        raise ValueError(f"--lr-spike must look like STEP:FACTOR (e.g. 60:30), got {text!r}") from None
    if step < 1 or factor <= 0:
        raise ValueError(f"--lr-spike needs STEP >= 1 and FACTOR > 0, got {text!r}")
    return step, factor


class LearningRateSpike(TrainerCallback):
    """Multiply the learning rate by ``factor`` from optimizer step ``step`` on (a classic divergence).

    Both the optimizer's param groups and the scheduler's ``base_lrs`` are scaled, so the spike
    survives the scheduler's next update; a spinal rollback restores the scheduler state of its
    snapshot, which undoes the spike.
    """

    def __init__(self, step: int, factor: float) -> None:
        self.step = step
        self.factor = factor

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step:
            return
        scheduler = kwargs.get("lr_scheduler")
        scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the scheduler
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * self.factor for lr in scheduler.base_lrs]
        optimizer = kwargs.get("optimizer")
        for group in getattr(optimizer, "param_groups", []):
            group["lr"] *= self.factor
