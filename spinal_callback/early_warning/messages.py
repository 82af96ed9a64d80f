"""The human-readable part of an :class:`~spinal_callback.early_warning.alerts.Alert`.

Each message says what moved (signal, layers), since when (the estimated onset), how big (score against
threshold, value against forecast, in the signal's own noise units) and what to look at or try on the
*training* side (data around the onset, learning rate, β). It never names an ``on_alert`` action: the
detector does not know which are configured; the guard or monitor may append their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from spinal_callback.early_warning.alerts import chart_hint, describe_layers
from spinal_callback.early_warning.scores import ScalarScores

__all__ = ["non_finite_message", "pattern_message", "scalar_message"]


def _head(reason: str, name: str, layers: tuple[int, ...], step: int) -> str:
    return f"{reason} in {name}{describe_layers(layers)} at step {step}"


def scalar_message(
    reason: str, name: str, layers: tuple[int, ...], step: int, x: float, sc: ScalarScores, score: float,
    threshold: float, onset: int, window_steps: tuple[int, int],
) -> str:
    """Message of a TREND_BREAK, SLOPE_CHANGE, VARIANCE_BURST, SPEED_JUMP, UPDATE_JUMP or TURN_JUMP alert.

    Args:
        reason: The reason's name, e.g. ``"TREND_BREAK"``.
        score: The statistic that fired; ``threshold`` what it was compared with.
        window_steps: First and last step of the trend window the forecast came from.
    """
    head = _head(reason, name, layers, step)
    chart = chart_hint(name)
    trend = (f"{x:.4g} against {sc.forecast:.4g} forecast by its trend over steps {window_steps[0]}–{window_steps[1]} "
             f"(slope {sc.slope:+.3g} per observation, noise σ̂ = {sc.noise:.2g})")
    if reason == "TREND_BREAK":
        return (f"{head}: it left its trend — {trend}, a residual of {sc.residual:+.3g} or z = {sc.z:+.1f} "
                f"(threshold {threshold:g}) — since about step {onset}. Its drift so far, of either sign, is "
                f"accounted for; this jump or sharp bend is not. Look at {chart}, check the training data and "
                f"the loss / gradient norm around step {onset}; if it recurs, lower the learning rate.")
    if reason == "SPEED_JUMP":
        return (f"{head}: it moved {math.exp(score):.0f}× as far in one observation as it typically did over steps "
                f"{window_steps[0]}–{window_steps[1]} (log ratio {score:.2f}, threshold {threshold:g}) — since step "
                f"{onset}; now {x:.4g}. One update changed the model far more than the ones before it: check the "
                f"learning rate and the optimizer state at step {onset} (a schedule restart, a jump, a resumed "
                "run with the wrong settings), the gradient norm, and the loss for a blow-up starting. If the "
                "learning rate jumped, restore it.")
    if reason == "UPDATE_JUMP":
        ratio = math.exp(score)
        typical = x / ratio
        return (f"{head}: the weights moved {ratio:.{1 if ratio < 10 else 0}f}× further per step than expected, about "
                f"{typical:.3g} from steps {window_steps[0]}–{window_steps[1]} (log ratio {score:.2f}, threshold "
                f"{threshold:g}); now {x:.4g} per step, since step {onset}. The optimizer's step grew at once: "
                f"check the learning rate and the optimizer's settings and state at step {onset} (a jump, a "
                "schedule restart, β₂ or ε changed, a resumed run with the wrong settings) and any code that "
                "writes the weights. If the learning rate jumped, restore it.")
    if reason == "TURN_JUMP":
        ratio = math.exp(score)
        return (f"{head}: the latest update turned {ratio:.1f}× further from the weights' recent course than "
                f"expected, about {x / ratio:.3g} from steps {window_steps[0]}–{window_steps[1]} (log ratio "
                f"{score:.2f}, threshold {threshold:g}); now {x:.3g} (0: on course, 1: orthogonal, 2: reversed), "
                f"since step {onset}. The updates changed direction, not size: check for a sign error in a custom "
                f"loss or its gradient (the optimizer climbing the loss), a changed objective or data source around "
                f"step {onset}, and the loss and held-out metrics over the next steps.")
    if reason == "SLOPE_CHANGE":
        side = "above" if sc.residual >= 0 else "below"
        return (f"{head}: its increments changed — it has been running {side} its trend since about step {onset} "
                f"(CUSUM {score:.1f} noise units, threshold {threshold:g}); now {trend}. A steady drift is normal "
                f"in DPO; a change of its rate is not. Look at {chart} and at the learning-rate schedule around "
                f"step {onset} (end of warm-up, restarts); if the change is unwanted, lower the learning rate or "
                "raise β (DPO beta).")
    return (f"{head}: its step-to-step changes are {math.sqrt(max(score, 0.0)):.1f}× the measured noise "
            f"(variance ratio {score:.1f}, threshold {threshold:g}) since about step {onset}; now {trend}. Training "
            f"has become jumpy on this signal: look at {chart} and the loss / gradient norm for spikes; gradient "
            "clipping or a lower learning rate usually calms it.")


def pattern_message(
    name: str, layers: tuple[int, ...], step: int, t2: float, score: float, threshold: float, onset: int,
    standardized: Sequence[float], mean_residual: float,
) -> str:
    """Message of a PATTERN_CHANGE alert: which layers departed most from their own trends."""
    labels = [f"layer {layers[i]}" if i < len(layers) else f"component {i}" for i in range(len(standardized))]
    order = sorted(range(len(standardized)), key=lambda i: -abs(standardized[i]))[:3]
    top = ", ".join(f"{labels[i]} ({standardized[i]:+.1f}σ)" for i in order)
    return (f"{_head('PATTERN_CHANGE', name, layers, step)}: the layers stopped moving together — Hotelling T² = "
            f"{t2:.1f} over {len(standardized)} layers (score {score:.1f}, threshold {threshold:g}) since about step "
            f"{onset}. Largest departures from their own trends: {top}; the mean over the layers is "
            f"{mean_residual:+.3g} off its forecast. Look at {chart_hint(name)} of those layers and check the "
            f"training data around step {onset}; a change confined to a few late layers is where DPO concentrates "
            "its effect — a larger β (DPO beta) or a lower learning rate slows it.")


def non_finite_message(name: str, layers: tuple[int, ...], step: int, x: object, last_value: float,
                       last_step: int | None) -> str:
    """Message of a NON_FINITE alert."""
    return (f"{_head('NON_FINITE', name, layers, step)}: it became {x} after finite values (last finite value "
            f"{last_value:.4g} at step {last_step}). The model or the probe is producing non-finite numbers: check "
            f"the loss and gradient norm for a blow-up, and mixed-precision overflow; see {chart_hint(name)}.")
