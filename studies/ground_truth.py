"""The behavioural onset of a degradation, from held-out evaluations — the study's ground truth.

Fixed before any detector was scored (``docs/evidence.md`` states it the same way). A run is *degraded*
at an evaluation step ``t`` when, on held-out data the run never trains on,

- greedy accuracy has fallen at least ``accuracy_drop`` (10 points) below its best value so far, or
- the mean log-probability of the correct answer has fallen at least ``logp_drop`` (0.5 nats, the
  correct answer 39 % less likely) below its best value so far.

The **onset** is the first evaluation step at which the run is degraded at ``confirm`` consecutive
evaluations (2: one noisy evaluation does not count). A run with no onset stayed healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["behavioural_onset", "degraded_steps"]


def degraded_steps(evals: Sequence[Mapping[str, Any]], *, accuracy_drop: float = 0.10,
                   logp_drop: float = 0.5) -> list[int]:
    """Evaluation steps at which the run is degraded (see the module docstring), in order.

    Args:
        evals: ``[{"step", "accuracy", "chosen_logp"}, ...]`` in step order.
        accuracy_drop: fall of greedy accuracy below its best so far that counts (fraction, not points).
        logp_drop: fall of the held-out chosen log-probability below its best so far that counts (nats).
    """
    best_accuracy = best_logp = -float("inf")
    out = []
    for record in evals:
        accuracy, logp = float(record["accuracy"]), float(record["chosen_logp"])
        best_accuracy = max(best_accuracy, accuracy)
        best_logp = max(best_logp, logp)
        if accuracy <= best_accuracy - accuracy_drop or logp <= best_logp - logp_drop or logp != logp:
            out.append(int(record["step"]))
    return out


def behavioural_onset(evals: Sequence[Mapping[str, Any]], *, accuracy_drop: float = 0.10, logp_drop: float = 0.5,
                      confirm: int = 2) -> int | None:
    """The first step degraded at ``confirm`` consecutive evaluations, or ``None`` if the run stayed healthy."""
    if confirm < 1:
        raise ValueError(f"`confirm` must be a positive integer, got {confirm!r}")
    steps = [int(r["step"]) for r in evals]
    bad = set(degraded_steps(evals, accuracy_drop=accuracy_drop, logp_drop=logp_drop))
    for i in range(len(steps) - confirm + 1):
        if all(steps[j] in bad for j in range(i, i + confirm)):
            return steps[i]
    return None
