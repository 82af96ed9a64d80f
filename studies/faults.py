"""Study 2's test faults: Trainer callbacks that break the optimizer step, and a data fault.

Every callback acts in ``on_pre_optimizer_step``, which the Hugging Face Trainer calls after the backward
pass and gradient clipping and right before ``optimizer.step()``; the optimizer step being taken there is
``state.global_step + 1``. "From the fault step" therefore means: from optimizer step ``fault_step`` on,
that step included. The grad norm the Trainer logs is measured before these callbacks run.

- :class:`LearningRateJump` — the learning rate ×``factor`` once, at the fault step (optimizer and
  scheduler, so the schedule continues from the jumped value);
- :class:`AdamFault` — Adam's β₂ and ε replaced at every step from the fault step on;
- :class:`GradientNoise` — Gaussian noise of ``scale`` × each gradient tensor's norm, at every step from
  the fault step on, from a seeded generator;
- :func:`label_noise_ramp` — preference pairs swapped with a probability that rises linearly from the fault
  step on (a change of the data, made before training).

Study 3 adds two families no detector choice has seen:

- :class:`WeightNoise` — Gaussian noise of ``scale`` × each parameter tensor's norm added to the weights
  once, right after the fault step's optimizer step (a corrupted update or a bad all-reduce);
- :class:`GradientAscent` — every gradient negated from the fault step on (a sign error in a custom loss:
  the optimizer climbs the DPO loss).

Needs transformers (the ``demo`` extra).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any

import torch
from transformers import TrainerCallback

from spinal_callback.recovery.training_state import scale_learning_rate

__all__ = [
    "AdamFault",
    "GradientAscent",
    "GradientNoise",
    "LearningRateJump",
    "WeightNoise",
    "add_gradient_noise",
    "add_relative_noise",
    "label_noise_ramp",
    "set_adam_hyperparameters",
    "swap_probability",
]


def _check_step(name: str, step: int) -> None:
    if not isinstance(step, int) or isinstance(step, bool) or step < 1:
        raise ValueError(f"{name} needs a fault step >= 1, got {step!r}")


def _params(optimizer: Any) -> Iterable[torch.Tensor]:
    for group in getattr(optimizer, "param_groups", []):  # accelerate's wrapper shares the inner groups
        yield from group["params"]


class LearningRateJump(TrainerCallback):
    """Multiply the learning rate by ``factor`` once, right before optimizer step ``step``.

    Every param group's ``lr`` and the scheduler's ``base_lrs`` and last value are scaled, so optimizer step
    ``step`` and every later one run at ``factor`` × the schedule, and the logged learning rate shows the
    jump at ``step``. A rollback to an earlier snapshot restores the optimizer and scheduler state and so
    undoes the jump (it is an event, not a setting).

    Args:
        step: the first optimizer step at the new learning rate.
        factor: the learning-rate factor (> 0).
    """

    def __init__(self, step: int, factor: float) -> None:
        _check_step("LearningRateJump", step)
        if not factor > 0:
            raise ValueError(f"LearningRateJump needs factor > 0, got {factor!r}")
        self.step = step
        self.factor = float(factor)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            scale_learning_rate(kwargs["optimizer"], kwargs.get("lr_scheduler"), self.factor)


def set_adam_hyperparameters(optimizer: Any, beta2: float | None = None, eps: float | None = None) -> None:
    """Set β₂ (keeping β₁) and ε in every param group of an Adam-type ``optimizer``.

    Raises:
        TypeError: a param group has no ``betas`` / ``eps`` (not an Adam-type optimizer).
    """
    for group in getattr(optimizer, "param_groups", []):
        if "betas" not in group or "eps" not in group:
            keys = sorted(k for k in group if k != "params")
            raise TypeError(f"not an Adam-type optimizer (param group keys: {keys})")
        if beta2 is not None:
            group["betas"] = (group["betas"][0], beta2)
        if eps is not None:
            group["eps"] = eps


class AdamFault(TrainerCallback):
    """Adam's β₂ = ``beta2`` and ε = ``eps`` at every optimizer step from ``step`` on.

    Re-applied before every step, so the setting stays wrong after a rollback restores the optimizer's
    earlier param groups (a misconfiguration, not an event). Adam's moment estimates are left alone.

    Args:
        step: first optimizer step with the new hyperparameters.
        beta2: the new β₂ (``None``: unchanged).
        eps: the new ε (``None``: unchanged).
    """

    def __init__(self, step: int, beta2: float | None, eps: float | None) -> None:
        _check_step("AdamFault", step)
        if beta2 is not None and not 0.0 <= beta2 < 1.0:
            raise ValueError(f"AdamFault needs beta2 in [0, 1), got {beta2!r}")
        if eps is not None and not eps >= 0.0:
            raise ValueError(f"AdamFault needs eps >= 0, got {eps!r}")
        self.step = step
        self.beta2 = beta2
        self.eps = eps

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 >= self.step:
            set_adam_hyperparameters(kwargs["optimizer"], self.beta2, self.eps)


@torch.no_grad()
def add_gradient_noise(params: Iterable[torch.Tensor], scale: float, generator: torch.Generator) -> None:
    """Add Gaussian noise to every gradient: per tensor ``g`` of ``n`` elements, σ = ``scale`` · ‖g‖ / √n.

    The noise's norm is then about ``scale`` · ‖g‖. It is drawn in float32 on the CPU from ``generator``
    (reproducible whatever the device), in the order of ``params``; tensors without a gradient, or with an
    all-zero one, are skipped without drawing.
    """
    for param in params:
        if param.grad is not None:
            add_relative_noise(param.grad, scale, generator)


@torch.no_grad()
def add_relative_noise(tensor: torch.Tensor, scale: float, generator: torch.Generator) -> None:
    """Add Gaussian noise of σ = ``scale`` · ‖t‖ / √n to ``tensor`` in place (noise norm ≈ ``scale`` · ‖t‖),
    drawn in float32 on the CPU from ``generator``; an all-zero tensor is left alone without drawing."""
    norm = float(tensor.float().norm())
    if norm == 0.0:
        return
    noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
    tensor.add_(noise.to(device=tensor.device, dtype=tensor.dtype), alpha=scale * norm / math.sqrt(tensor.numel()))


class GradientNoise(TrainerCallback):
    """Gaussian noise of ``scale`` × each gradient tensor's norm, before every optimizer step from ``step`` on.

    The gradients noised are those of the optimizer's parameters, after the Trainer's clipping.

    Args:
        step: first optimizer step with noisy gradients.
        scale: noise norm relative to the gradient norm, per tensor (σ = scale · ‖g‖ / √n).
        seed: seed of the noise's own ``torch.Generator`` (the run's other random streams are untouched).
    """

    def __init__(self, step: int, scale: float, seed: int) -> None:
        _check_step("GradientNoise", step)
        if not scale > 0:
            raise ValueError(f"GradientNoise needs scale > 0, got {scale!r}")
        self.step = step
        self.scale = float(scale)
        self.generator = torch.Generator().manual_seed(seed)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 >= self.step:
            add_gradient_noise(_params(kwargs["optimizer"]), self.scale, self.generator)


class WeightNoise(TrainerCallback):
    """Gaussian noise of ``scale`` × each parameter tensor's norm (σ = scale · ‖w‖ / √n), added once to the
    optimizer's parameters right after optimizer step ``step`` (``on_optimizer_step``).

    An event: a rollback to an earlier snapshot undoes it and it does not recur.

    Args:
        step: the optimizer step after which the weights are perturbed.
        scale: noise norm relative to each parameter tensor's norm (> 0).
        seed: seed of the noise's own ``torch.Generator``.
    """

    def __init__(self, step: int, scale: float, seed: int) -> None:
        _check_step("WeightNoise", step)
        if not scale > 0:
            raise ValueError(f"WeightNoise needs scale > 0, got {scale!r}")
        self.step = step
        self.scale = float(scale)
        self.generator = torch.Generator().manual_seed(seed)
        self.done = False

    @torch.no_grad()
    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.done or state.global_step + 1 != self.step:
            return
        self.done = True
        for param in _params(kwargs["optimizer"]):
            add_relative_noise(param, self.scale, self.generator)


class GradientAscent(TrainerCallback):
    """Every gradient negated before every optimizer step from ``step`` on: the optimizer climbs the loss.

    Re-applied at every step, so it stays wrong after a rollback (a bug in the code, not an event).
    """

    def __init__(self, step: int) -> None:
        _check_step("GradientAscent", step)
        self.step = step

    @torch.no_grad()
    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 >= self.step:
            for param in _params(kwargs["optimizer"]):
                if param.grad is not None:
                    param.grad.neg_()


def swap_probability(step: int, fault_step: int, ramp_steps: int) -> float:
    """Swap probability of a pair trained at optimizer ``step``: ``min(1, (step − fault_step) / ramp_steps)``
    from ``fault_step`` on (0 at the fault step itself), 0 before."""
    if step < fault_step:
        return 0.0
    return min(1.0, (step - fault_step) / ramp_steps)


def label_noise_ramp(pairs: list[dict[str, str]], fault_step: int, ramp_steps: int, batch_size: int,
                     rng: random.Random) -> list[dict[str, str]]:
    """A copy of ``pairs`` (in training order) with chosen and rejected swapped on a ramp.

    Row ``i`` is trained at optimizer step ``s = i // batch_size + 1`` (sequential sampling); from
    ``fault_step`` on it is swapped with probability :func:`swap_probability` ``(s, fault_step, ramp_steps)``,
    one ``rng`` draw per row from the fault step's first row on.

    Raises:
        ValueError: ``fault_step``, ``ramp_steps`` or ``batch_size`` below 1.
    """
    _check_step("label_noise_ramp", fault_step)
    if ramp_steps < 1 or batch_size < 1:
        raise ValueError(f"label_noise_ramp needs ramp_steps and batch_size >= 1, got {ramp_steps}, {batch_size}")
    out = list(pairs)
    for i in range((fault_step - 1) * batch_size, len(out)):
        if rng.random() < swap_probability(i // batch_size + 1, fault_step, ramp_steps):
            pair = out[i]
            out[i] = {"prompt": pair["prompt"], "chosen": pair["rejected"], "rejected": pair["chosen"]}
    return out
