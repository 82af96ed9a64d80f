"""Faults a recipe can inject on purpose, to see the early warning and the rollback at work."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["LearningRateRamp", "LearningRateSpike", "parse_lr_spike", "scale_learning_rate"]


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
    """Multiply the learning rate by ``factor`` for every optimizer step after step ``step`` (a classic divergence).

    Both the optimizer's param groups and the scheduler's ``base_lrs`` are scaled, right before the next optimizer
    step, so the spike survives the scheduler's next update; a spinal rollback to a snapshot taken at or before step
    ``step`` restores the scheduler state from before the spike, which undoes it. (Scaled before the optimizer step,
    not at ``on_step_end``: a snapshot of step ``step`` holds the state before the spike whatever the order of the
    callbacks.)
    """

    def __init__(self, step: int, factor: float) -> None:
        self.step = step
        self.factor = factor

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:  # the optimizer step about to run is step + 1
            scale_learning_rate(kwargs, self.factor)


class LearningRateRamp(TrainerCallback):
    """Multiply the learning rate by ``growth`` after every optimizer step from ``start`` on (a ramp to divergence).

    Like :class:`LearningRateSpike`, both the optimizer's param groups and the scheduler's ``base_lrs``
    are scaled, right before each optimizer step: after step ``start + n`` the learning rate is ``growth ** (n + 1)``
    times what the schedule would give.
    """

    def __init__(self, start: int, growth: float) -> None:
        if start < 1 or not growth > 0:
            raise ValueError(f"LearningRateRamp needs start >= 1 and growth > 0, got start={start}, growth={growth}")
        self.start = start
        self.growth = growth

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.start:  # the optimizer step about to run is global_step + 1
            scale_learning_rate(kwargs, self.growth)


def scale_learning_rate(callback_kwargs: Any, factor: float) -> None:
    """Scale the learning rate of a Trainer callback event's optimizer and scheduler by ``factor``."""
    scheduler = callback_kwargs.get("lr_scheduler")
    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the scheduler
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    optimizer = callback_kwargs.get("optimizer")
    for group in getattr(optimizer, "param_groups", []):
        group["lr"] *= factor
