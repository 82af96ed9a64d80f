"""The study's scenarios: one healthy run type and three ways a DPO run goes wrong.

Each scenario draws its fault step (when it has one) from the run's seed, so a seed always reproduces
the same run. The faults are chosen a priori and not tuned to the detectors:

- ``stable``: the demo recipe as it ships (learning rate 5e-5, β = 0.1);
- ``lr_ramp``: from a random step on, the learning rate is multiplied by ``lr_growth`` after every
  optimizer step (×1.06 → ×10 after 40 steps, ×100 after 80): a ramp to divergence;
- ``label_flip``: from a random step on, ``flip_fraction`` of the preference pairs arrive with chosen and
  rejected swapped (a broken data shard);
- ``small_beta``: β = 0.005 from the start, at a learning rate of 1e-4 — the implicit KL anchor is 20×
  weaker than the demo's, and the chosen log-probabilities fall while the margin keeps growing (likelihood
  displacement). At the demo's 5e-5 the DPO loss barely leaves log 2 in 240 steps with either β, so the
  two runs cannot differ; at 1e-4 with β = 0.1 a control run stayed healthy for 240 steps.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SCENARIOS", "RunSpec", "run_spec"]

#: Scenario names, in report order.
SCENARIOS = ("stable", "lr_ramp", "label_flip", "small_beta")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one study run.

    Attributes:
        scenario: one of :data:`SCENARIOS`.
        seed: seed of the preference data, its order and training (the pre-trained model is shared).
        max_steps: DPO optimizer steps.
        fault_step: first optimizer step the fault acts on (``None`` for ``stable`` and ``small_beta``,
            whose fault is there from the start).
        learning_rate: DPO learning rate at the start.
        beta: DPO β.
        lr_growth: per-step learning-rate factor from ``fault_step`` on (1.0: no ramp).
        flip_fraction: share of pairs swapped from ``fault_step`` on (0.0: none).
    """

    scenario: str
    seed: int
    max_steps: int
    fault_step: int | None = None
    learning_rate: float = 5e-5
    beta: float = 0.1
    lr_growth: float = 1.0
    flip_fraction: float = 0.0

    @property
    def name(self) -> str:
        """``"<scenario>-s<seed>"``, the run's folder name."""
        return f"{self.scenario}-s{self.seed}"

    @property
    def fault_start(self) -> int:
        """The first step a detector may legitimately alarm at: ``fault_step``, or 0 for faults from the start."""
        return self.fault_step if self.fault_step is not None else 0

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view."""
        return asdict(self)


def run_spec(scenario: str, seed: int, max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> RunSpec:
    """The run of ``scenario`` for ``seed``.

    Args:
        scenario: one of :data:`SCENARIOS`.
        seed: the run's seed; also draws the fault step uniformly from ``fault_window``.
        max_steps: DPO optimizer steps.
        fault_window: inclusive range of fault steps for the mid-run faults. Its start leaves every
            detector its warm-up, including the 128-step window of the OLMo-core-style z-score.

    Raises:
        ValueError: unknown scenario, or a fault window outside ``1..max_steps``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"`scenario` must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    if scenario in ("stable", "small_beta"):
        if scenario == "small_beta":
            return RunSpec(scenario, seed, max_steps, beta=0.005, learning_rate=1e-4)
        return RunSpec(scenario, seed, max_steps)
    low, high = fault_window
    if not 1 <= low <= high < max_steps:
        raise ValueError(f"`fault_window` must satisfy 1 <= low <= high < max_steps ({max_steps}), got {fault_window}")
    fault = random.Random(f"fault:{scenario}:{seed}").randint(low, high)
    if scenario == "lr_ramp":
        return RunSpec(scenario, seed, max_steps, fault_step=fault, lr_growth=1.06)
    return RunSpec(scenario, seed, max_steps, fault_step=fault, flip_fraction=0.75)
