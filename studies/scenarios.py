"""The studies' scenarios: what each run does, and the exact run lists of the pre-registered protocols (studies 2–4).

Each scenario draws its fault step (when it has one) from the run's seed, so a seed always reproduces
the same run. The faults are chosen a priori and not tuned to the detectors.

**Study 1** (:data:`SCENARIOS`, :func:`run_spec`):

- ``stable``: the demo recipe as it ships (learning rate 5e-5, β = 0.1);
- ``lr_ramp``: from a random step on, the learning rate is multiplied by ``lr_growth`` after every
  optimizer step (×1.06 → ×10 after 40 steps, ×100 after 80): a ramp to divergence;
- ``label_flip``: from a random step on, ``flip_fraction`` of the preference pairs arrive with chosen and
  rejected swapped (a broken data shard);
- ``small_beta``: β = 0.005 from the start, at a learning rate of 1e-4 — the implicit KL anchor is 20×
  weaker than the demo's, and the chosen log-probabilities fall while the margin keeps growing (likelihood
  displacement). At the demo's 5e-5 the DPO loss barely leaves log 2 in 240 steps with either β, so the
  two runs cannot differ; at 1e-4 with β = 0.1 a control run stayed healthy for 240 steps.

**Study 2** (pre-registered in ``docs/evidence.md``; :func:`calibration_set`, :func:`test_set`,
:func:`rollback_set`) adds three models (:data:`MODELS`), three learning-rate schedules
(:data:`SCHEDULES`), healthy runs over a range of learning rates and β (``healthy``), and four fault
families that act from the fault step on (:data:`TEST_FAULTS`):

- ``lr_jump``: the learning rate is multiplied by 20 at the fault step, at once (an event: a rollback that
  restores an earlier optimizer and scheduler state undoes it, as for the demo's ``--lr-spike``);
- ``adam_beta2``: Adam's β₂ is 0.5 and its ε 1e-12 at every optimizer step from the fault step on (a setting
  that stays wrong: it is re-applied after a rollback);
- ``grad_noise``: every gradient tensor gets Gaussian noise of 5× its norm (σ = 5‖g‖/√n) at every step
  from the fault step on;
- ``label_noise_ramp``: the share of pairs with chosen and rejected swapped rises linearly from 0 at the
  fault step to 100 % 60 steps later (a data source going bad).

**Study 3** (pre-registered in ``docs/evidence.md``; :func:`study3_test_set`, :func:`study3_rollback_set`)
calibrates on every study-2 run and tests on new seeds of ``lr_jump`` and ``label_noise_ramp`` and on two
families no choice has seen (:data:`STUDY3_FAULTS`):

- ``weight_noise``: Gaussian noise of 0.3 × each parameter tensor's norm added to the weights once, right
  after the fault step's update (a corrupted update; an event a rollback undoes);
- ``grad_ascent``: every gradient negated from the fault step on (a sign error: the optimizer climbs the
  DPO loss; it stays wrong after a rollback).

**Study 4** (pre-registered in ``docs/evidence.md``; :func:`study4_calibration_set`, :func:`study4_test_set`)
tests the UPDATE_JUMP test (the RMS displacement of a fixed sample of weights between probes). Its calibration
set C4 re-trains study 2's 40 fault-free runs with identical specs (no held-out evaluations: only false alarms
count there); its test set T4 has new healthy seeds and new seeds of four optimizer-side families
(:data:`STUDY4_FAULTS`: ``lr_jump``, ``weight_noise``, ``adam_beta2``, ``grad_noise``).

**Study 5** (pre-registered in ``docs/evidence.md``; :func:`study5_test_set`) restricts the VARIANCE_BURST test to
the signals chosen on every earlier run (no new calibration runs). Its test set T5 has 30 new healthy seeds and new
seeds of ``label_noise_ramp``, ``label_flip`` (study 1's broken data shard — 75 % of the pairs swapped from the
fault step on — now on the demo recipe and T5's seeds) and ``lr_jump`` (:data:`STUDY5_FAULTS`).

**Study 6** (pre-registered in ``docs/evidence.md``; :func:`study6_calibration_set`, :func:`study6_test_set`) adds
``update/turn`` to the update test. C6 re-trains C4's runs once more to record it; T6 has new healthy seeds and new
seeds of ``grad_ascent`` and ``lr_jump`` (:data:`STUDY6_FAULTS`).

**Study 7** (pre-registered in ``docs/evidence.md``; :func:`study7_test_set`, :func:`study7_rollback_set`) makes no
choice: it runs the shipped detector on two decoder families no study has trained, a GPT-2 and a Qwen2 of the demo
model's size (:data:`STUDY7_MODELS`), with new healthy seeds and new seeds of ``lr_jump``, ``label_flip`` and
``grad_ascent`` (:data:`STUDY7_FAULTS`).

**Study 8** (pre-registered in ``docs/evidence.md``; :func:`study8_test_set`, :func:`study8_rollback_set`) tests the
choice made on study 7's spent runs on all five models (:data:`STUDY8_MODELS`), with new healthy seeds and new seeds
of ``label_noise_ramp``, ``label_flip``, ``lr_jump`` and ``grad_ascent`` (:data:`STUDY8_FAULTS`).

**Study 9** (pre-registered in ``docs/evidence.md``; :func:`study9_test_set`, :func:`study9_rollback_set`) tests the
variance test measured against each signal's recent increments, chosen on studies 7 and 8's spent runs, on new seeds
of study 8's models and fault families, 8 seeds per family (:data:`STUDY9_FAULT_SEEDS`).

**Study 10** (pre-registered in ``docs/evidence.md``; :func:`study10_test_set`) chooses nothing: 40 more fault-free
runs (:data:`STUDY10_HEALTHY_SEEDS`) for study 9's detector's false-alarm rate.

**Study 11** (pre-registered in ``docs/evidence.md``; :func:`study11_test_set`, :func:`study11_rollback_set`) chooses
nothing either: study 9's detector on two model shapes no study has used (M3, G2) beside the five, and on four fault
families no detector has been tested on since study 4 (:data:`STUDY11_FAULTS`), 8 new seeds each.

**Study 12** (pre-registered in ``docs/evidence.md``; :func:`study12_test_set`, :func:`study12_rollback_set`) runs
the library's new default live — the probe forward every 50 steps, the forward-free readings (update size and turn,
TRL's metrics) and the detector every 2, the probe pairs no longer watched — on new seeds of the seven models, of the
two data faults and of three optimizer faults (:data:`STUDY12_FAULTS`).

**Study 13** (pre-registered in ``docs/evidence.md``; :func:`study13_test_set`) runs the library's default with the
turn test scored against the course 8 readings back as well (``DetectorConfig.turn_lag``), chosen on studies 11 and
12's spent runs, on new seeds of the seven models and of gradient ascent, label flips and learning-rate ramps
(:data:`STUDY13_FAULTS`).

**Study 14** (pre-registered in ``docs/evidence.md``; :func:`study14_test_set`) runs the library's default with the
HF callback reading a logging step with that step's log and decisive exceedances (``DetectorConfig.decisive_factor``),
chosen on studies 11–13's spent runs, on new seeds of the seven models and of label flips, label-noise ramps and
learning-rate ramps (:data:`STUDY14_FAULTS`).

**Study 15** (pre-registered in ``docs/evidence.md``; :func:`study15_test_set`) replays the library's default fed every
logged value at its own step — a metrics-only observation at each log between two readings — against the default as it
runs (every second logged value), on new seeds of the seven models and of the same three families.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "CALIBRATION_BETAS",
    "CALIBRATION_LRS",
    "MODELS",
    "SCENARIOS",
    "SCHEDULES",
    "STUDY2_SCENARIOS",
    "STUDY3_FAULTS",
    "STUDY3_FAULT_SEEDS",
    "STUDY4_FAULTS",
    "STUDY4_FAULT_SEEDS",
    "STUDY4_HEALTHY_SEEDS",
    "STUDY5_FAULTS",
    "STUDY5_FAULT_SEEDS",
    "STUDY5_HEALTHY_SEEDS",
    "STUDY6_FAULTS",
    "STUDY6_FAULT_SEEDS",
    "STUDY6_HEALTHY_SEEDS",
    "STUDY7_FAULTS",
    "STUDY7_FAULT_SEEDS",
    "STUDY7_HEALTHY_SEEDS",
    "STUDY7_MODELS",
    "STUDY8_FAULTS",
    "STUDY8_FAULT_MODELS",
    "STUDY8_FAULT_SEEDS",
    "STUDY8_HEALTHY_SEEDS",
    "STUDY8_MODELS",
    "STUDY9_FAULT_SEEDS",
    "STUDY9_HEALTHY_SEEDS",
    "STUDY10_HEALTHY_SEEDS",
    "STUDY11_FAULTS",
    "STUDY11_FAULT_MODELS",
    "STUDY11_FAULT_SEEDS",
    "STUDY11_HEALTHY_SEEDS",
    "STUDY11_MODELS",
    "STUDY12_FAULTS",
    "STUDY12_FAULT_SEEDS",
    "STUDY12_HEALTHY_SEEDS",
    "STUDY13_FAULTS",
    "STUDY13_FAULT_SEEDS",
    "STUDY13_HEALTHY_SEEDS",
    "STUDY14_FAULTS",
    "STUDY14_FAULT_SEEDS",
    "STUDY14_HEALTHY_SEEDS",
    "STUDY15_FAULT_SEEDS",
    "STUDY15_HEALTHY_SEEDS",
    "TEST_FAULTS",
    "TEST_FAULT_SEEDS",
    "ModelShape",
    "RunSpec",
    "calibration_set",
    "fault_test_spec",
    "healthy_spec",
    "healthy_test_spec",
    "rollback_set",
    "run_spec",
    "shorten",
    "study3_rollback_set",
    "study3_test_set",
    "study4_calibration_set",
    "study4_rollback_set",
    "study4_test_set",
    "study5_rollback_set",
    "study5_test_set",
    "study6_calibration_set",
    "study6_rollback_set",
    "study6_test_set",
    "study7_rollback_set",
    "study7_test_set",
    "study8_rollback_set",
    "study8_test_set",
    "study9_rollback_set",
    "study9_test_set",
    "study10_test_set",
    "study11_rollback_set",
    "study11_test_set",
    "study12_rollback_set",
    "study12_test_set",
    "study13_test_set",
    "study14_test_set",
    "study15_test_set",
    "test_set",
]

#: Study 1's scenario names, in report order.
SCENARIOS = ("stable", "lr_ramp", "label_flip", "small_beta")

#: Study 2's test fault families, in report order (none of them is in the calibration set).
TEST_FAULTS = ("lr_jump", "adam_beta2", "grad_noise", "label_noise_ramp")

#: Every scenario name study 2 uses: healthy runs, study 1's stable twins and faults (calibration), test faults.
STUDY2_SCENARIOS = ("healthy", "stable", "lr_ramp", "label_flip", *TEST_FAULTS)

#: Learning-rate schedules (``lr_scheduler_type`` of transformers), each with 5 warm-up steps.
SCHEDULES = ("constant_with_warmup", "cosine", "linear")

#: Seeds of the test fault families: 8 per family, 300–307, 310–317, 320–327, 330–337.
TEST_FAULT_SEEDS = {family: tuple(range(300 + 10 * i, 308 + 10 * i)) for i, family in enumerate(TEST_FAULTS)}

#: Study 3's test fault families: two seen in study 2 (new seeds), two never used for any choice.
STUDY3_FAULTS = ("lr_jump", "label_noise_ramp", "weight_noise", "grad_ascent")
#: Their seeds: 500–507, 510–517, 520–527, 530–537.
STUDY3_FAULT_SEEDS = {family: tuple(range(500 + 10 * i, 508 + 10 * i)) for i, family in enumerate(STUDY3_FAULTS)}
#: Study 3's healthy test seeds (drawn as study 2's T-healthy runs are, :func:`healthy_test_spec`).
STUDY3_HEALTHY_SEEDS = tuple(range(400, 425))

#: Study 4's test fault families: optimizer-side faults that move the weights (new seeds for all four).
STUDY4_FAULTS = ("lr_jump", "weight_noise", "adam_beta2", "grad_noise")
#: Their seeds: 800–807, 810–817, 820–827.
STUDY4_FAULT_SEEDS = {family: tuple(range(800 + 10 * i, 808 + 10 * i)) for i, family in enumerate(STUDY4_FAULTS)}
#: Study 4's healthy test seeds (drawn as study 2's T-healthy runs are, :func:`healthy_test_spec`).
STUDY4_HEALTHY_SEEDS = tuple(range(700, 725))
#: Study 5's test fault families: the data faults its change acts on (a rising label-noise ramp, and study 1's
#: broken data shard — 75 % of pairs swapped from the fault step on — on the demo recipe) and the learning-rate
#: jump.
STUDY5_FAULTS = ("label_noise_ramp", "label_flip", "lr_jump")
#: Seeds of T5's fault runs, per family (8 each, 1000–1027).
STUDY5_FAULT_SEEDS = {family: tuple(range(1000 + 10 * i, 1008 + 10 * i)) for i, family in enumerate(STUDY5_FAULTS)}
#: Seeds of T5's fault-free runs.
STUDY5_HEALTHY_SEEDS = tuple(range(900, 930))
#: Study 6's test fault families: gradient ascent (what the turn is for) and the learning-rate jump (what the step
#: size already answers, and which a higher shared threshold could lose).
STUDY6_FAULTS = ("grad_ascent", "lr_jump")
#: Seeds of T6's fault runs, per family (8 each, 1200–1217).
STUDY6_FAULT_SEEDS = {family: tuple(range(1200 + 10 * i, 1208 + 10 * i)) for i, family in enumerate(STUDY6_FAULTS)}
#: Seeds of T6's fault-free runs.
STUDY6_HEALTHY_SEEDS = tuple(range(1100, 1125))
#: Study 7's test fault families: one for each test that answered a family in studies 4-6 (the update test, the
#: variance test, the turn test).
STUDY7_FAULTS = ("lr_jump", "label_flip", "grad_ascent")
#: Seeds of T7's fault runs, per family (6 each, 1600–1625).
STUDY7_FAULT_SEEDS = {family: tuple(range(1600 + 10 * i, 1606 + 10 * i)) for i, family in enumerate(STUDY7_FAULTS)}
#: Seeds of T7's fault-free runs.
STUDY7_HEALTHY_SEEDS = tuple(range(1500, 1524))
#: Study 8's test fault families: the gradual data fault a slope test is made for, and study 7's three.
STUDY8_FAULTS = ("label_noise_ramp", "label_flip", "lr_jump", "grad_ascent")
#: Seeds of T8's fault runs, per family (6 each, 1800–1835).
STUDY8_FAULT_SEEDS = {family: tuple(range(1800 + 10 * i, 1806 + 10 * i)) for i, family in enumerate(STUDY8_FAULTS)}
#: Seeds of T8's fault-free runs.
STUDY8_HEALTHY_SEEDS = tuple(range(1700, 1730))

#: Seeds of T9's fault runs, per family of :data:`STUDY8_FAULTS` (8 each, 2000–2037).
STUDY9_FAULT_SEEDS = {family: tuple(range(2000 + 10 * i, 2008 + 10 * i)) for i, family in enumerate(STUDY8_FAULTS)}
#: Seeds of T9's fault-free runs.
STUDY9_HEALTHY_SEEDS = tuple(range(1900, 1930))

#: Seeds of T10's fault-free runs (study 10 has no fault runs).
STUDY10_HEALTHY_SEEDS = tuple(range(2100, 2140))

#: Study 11's fault families: study 1's learning-rate ramp (×1.06 per step) and study 4's three optimizer-side
#: faults, none tested on a detector since study 4.
STUDY11_FAULTS = ("lr_ramp", "adam_beta2", "grad_noise", "weight_noise")
#: Seeds of T11's fault runs, per family (8 each, 2300–2337).
STUDY11_FAULT_SEEDS = {family: tuple(range(2300 + 10 * i, 2308 + 10 * i)) for i, family in enumerate(STUDY11_FAULTS)}
#: Seeds of T11's fault-free runs.
STUDY11_HEALTHY_SEEDS = tuple(range(2200, 2240))

#: Study 12's fault families: the two data faults on which TRL's log-prob drop has led (label flips, label-noise ramps)
#: and three optimizer faults the update and turn tests answered (learning-rate jump, gradient ascent, lr ramp).
STUDY12_FAULTS = ("label_flip", "label_noise_ramp", "lr_jump", "grad_ascent", "lr_ramp")
#: Seeds of T12's fault runs, per family (8 each, 2500–2547).
STUDY12_FAULT_SEEDS = {family: tuple(range(2500 + 10 * i, 2508 + 10 * i)) for i, family in enumerate(STUDY12_FAULTS)}
#: Seeds of T12's fault-free runs.
STUDY12_HEALTHY_SEEDS = tuple(range(2400, 2432))

#: Study 13's fault families: gradient ascent, the family its change is for, and the two families whose first
#: answers the turn test gave or could give (label flips, learning-rate ramps).
STUDY13_FAULTS = ("grad_ascent", "label_flip", "lr_ramp")
#: Seeds of T13's fault runs, per family (8 each, 2700–2727).
STUDY13_FAULT_SEEDS = {family: tuple(range(2700 + 10 * i, 2708 + 10 * i)) for i, family in enumerate(STUDY13_FAULTS)}
#: Seeds of T13's fault-free runs.
STUDY13_HEALTHY_SEEDS = tuple(range(2600, 2632))

#: Study 14's fault families: the two data faults (label flips, the family its change is for, and label-noise ramps)
#: and learning-rate ramps, whose first answers TREND_BREAK on TRL's metrics has given (the test the change touches).
STUDY14_FAULTS = ("label_flip", "label_noise_ramp", "lr_ramp")
#: Seeds of T14's fault runs, per family (8 each, 2900–2927).
STUDY14_FAULT_SEEDS = {family: tuple(range(2900 + 10 * i, 2908 + 10 * i)) for i, family in enumerate(STUDY14_FAULTS)}
#: Seeds of T14's fault-free runs.
STUDY14_HEALTHY_SEEDS = tuple(range(2800, 2832))
#: Seeds of T15's fault runs, per family of :data:`STUDY14_FAULTS` (8 each, 3100–3127).
STUDY15_FAULT_SEEDS = {family: tuple(range(3100 + 10 * i, 3108 + 10 * i)) for i, family in enumerate(STUDY14_FAULTS)}
#: Seeds of T15's fault-free runs.
STUDY15_HEALTHY_SEEDS = tuple(range(3000, 3032))

#: Fault family → the RunSpec fields that make it (studies 2 and 3; ``lr_ramp``: study 1's, from study 11 on).
FAULT_FIELDS: dict[str, dict[str, Any]] = {
    "lr_ramp": {"lr_growth": 1.06},
    "lr_jump": {"lr_jump": 20.0},
    "adam_beta2": {"adam_beta2": 0.5, "adam_eps": 1e-12},
    "grad_noise": {"grad_noise": 5.0},
    "label_noise_ramp": {"label_noise_ramp": 60},
    "weight_noise": {"weight_noise": 0.3},
    "grad_ascent": {"grad_ascent": True},
    "label_flip": {"flip_fraction": 0.75},
}


@dataclass(frozen=True)
class ModelShape:
    """One pre-trained demo policy of the studies.

    Attributes:
        num_layers: decoder blocks of the tiny model.
        hidden_size: its residual width.
        sft_seed: seed of its initialisation and supervised warm-up (``pretrained_demo_model``'s ``seed``).
        architecture: its decoder family (``pretrained_demo_model``'s ``architecture``; studies 1-6: Llama).
    """

    num_layers: int
    hidden_size: int
    sft_seed: int
    architecture: str = "llama"


#: Study 2's models: M1 is the ``spinal demo`` model, M2 a second shape, M1p (M1′) M1's shape from a second
#: supervised warm-up seed. Study 1 used M1 only.
MODELS = {
    "M1": ModelShape(num_layers=9, hidden_size=96, sft_seed=0),
    "M2": ModelShape(num_layers=6, hidden_size=128, sft_seed=0),
    "M1p": ModelShape(num_layers=9, hidden_size=96, sft_seed=1),
    "G1": ModelShape(num_layers=9, hidden_size=96, sft_seed=0, architecture="gpt2"),
    "Q1": ModelShape(num_layers=9, hidden_size=96, sft_seed=0, architecture="qwen2"),
    "M3": ModelShape(num_layers=12, hidden_size=64, sft_seed=2),
    "G2": ModelShape(num_layers=6, hidden_size=128, sft_seed=3, architecture="gpt2"),
}
#: The models studies 2-6 drew from (T-healthy runs draw uniformly over these, in this order).
STUDY2_MODELS = ("M1", "M2", "M1p")
#: Study 7's models: a GPT-2 and a Qwen2 of M1's size, pre-trained like M1 (G1 for even fault seeds, Q1 for odd).
STUDY7_MODELS = ("G1", "Q1")
#: Study 8's models: every model of the studies, for T8's fault-free runs ...
STUDY8_MODELS = ("M1", "M2", "M1p", "G1", "Q1")
#: ... and for its fault runs, by seed modulo 3: the demo's Llama, the GPT-2, the Qwen2.
STUDY8_FAULT_MODELS = ("M1", "G1", "Q1")
#: Study 11's models: the five and two shapes no earlier study used — a deeper, narrower Llama (12 blocks, width 64)
#: and a shallower, wider GPT-2 (6 blocks, width 128), each from its own warm-up seed — for T11's fault-free runs ...
STUDY11_MODELS = ("M1", "M2", "M1p", "G1", "Q1", "M3", "G2")
#: ... and for its fault runs, by seed modulo 4: two of the five and the two new shapes.
STUDY11_FAULT_MODELS = ("M1", "M3", "Q1", "G2")


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one study run.

    Every fault parameter has a neutral default, so a spec does exactly what its non-default fields say;
    the runner acts on the fields, not on the scenario name.

    Attributes:
        scenario: the run's kind: one of :data:`SCENARIOS` (study 1) or :data:`STUDY2_SCENARIOS`.
        seed: seed of the preference data, its order and training (the pre-trained model is shared).
        max_steps: DPO optimizer steps.
        fault_step: first optimizer step the fault acts on (``None`` for runs without a mid-run fault).
        learning_rate: DPO learning rate at the end of the warm-up.
        beta: DPO β.
        lr_growth: per-step learning-rate factor after every step from ``fault_step`` on (1.0: no ramp).
        flip_fraction: share of pairs swapped from ``fault_step`` on (0.0: none).
        model: the pre-trained policy, a key of :data:`MODELS`.
        schedule: the learning-rate schedule, one of :data:`SCHEDULES`.
        lr_jump: learning-rate factor applied once, at optimizer step ``fault_step`` (1.0: none).
        adam_beta2: Adam's β₂ from ``fault_step`` on (``None``: unchanged).
        adam_eps: Adam's ε from ``fault_step`` on (``None``: unchanged).
        grad_noise: Gaussian gradient noise from ``fault_step`` on, in units of each tensor's gradient norm
            (0.0: none).
        label_noise_ramp: steps over which the share of swapped pairs rises linearly from 0 (at ``fault_step``)
            to 1 (0: no ramp).
        weight_noise: Gaussian noise added to the weights once, after optimizer step ``fault_step``, in units
            of each tensor's norm (0.0: none).
        grad_ascent: every gradient negated from ``fault_step`` on (False: none).
        rollback: the live callback rolls back on an alert (``on_alert=("log", "rollback")``).
        part: the protocol part the run belongs to (``"C-healthy"``, ``"T-faults"``, …; empty for study 1).
    """

    scenario: str
    seed: int
    max_steps: int
    fault_step: int | None = None
    learning_rate: float = 5e-5
    beta: float = 0.1
    lr_growth: float = 1.0
    flip_fraction: float = 0.0
    model: str = "M1"
    schedule: str = "constant_with_warmup"
    lr_jump: float = 1.0
    adam_beta2: float | None = None
    adam_eps: float | None = None
    grad_noise: float = 0.0
    label_noise_ramp: int = 0
    weight_noise: float = 0.0
    grad_ascent: bool = False
    rollback: bool = False
    part: str = ""

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"`model` must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.fault_step is not None and not 1 <= self.fault_step <= self.max_steps:
            raise ValueError(f"`fault_step` must be in 1..max_steps ({self.max_steps}), got {self.fault_step}")

    @property
    def name(self) -> str:
        """``"<scenario>-s<seed>"`` (``"-rb"`` appended for a rollback run), the run's folder name."""
        return f"{self.scenario}-s{self.seed}" + ("-rb" if self.rollback else "")

    @property
    def fault_start(self) -> int:
        """The first step a detector may legitimately alarm at: ``fault_step``, or 0 for faults from the start."""
        return self.fault_step if self.fault_step is not None else 0

    @property
    def is_fault(self) -> bool:
        """Whether the run has a fault (``stable`` and ``healthy`` runs have none)."""
        return self.scenario not in ("stable", "healthy")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able view."""
        return asdict(self)


def _fault_step(scenario: str, seed: int, max_steps: int, fault_window: tuple[int, int]) -> int:
    """The fault step of ``scenario`` for ``seed``: uniform over the inclusive ``fault_window``, seeded."""
    low, high = fault_window
    if not 1 <= low <= high < max_steps:
        raise ValueError(f"`fault_window` must satisfy 1 <= low <= high < max_steps ({max_steps}), got {fault_window}")
    return random.Random(f"fault:{scenario}:{seed}").randint(low, high)


def run_spec(scenario: str, seed: int, max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> RunSpec:
    """Study 1's run of ``scenario`` for ``seed`` (on M1, constant schedule).

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
    fault = _fault_step(scenario, seed, max_steps, fault_window)
    if scenario == "lr_ramp":
        return RunSpec(scenario, seed, max_steps, fault_step=fault, lr_growth=1.06)
    return RunSpec(scenario, seed, max_steps, fault_step=fault, flip_fraction=0.75)


def healthy_spec(seed: int, model: str, learning_rate: float, beta: float, schedule: str, part: str,
                 max_steps: int = 240) -> RunSpec:
    """A fault-free study-2 run (``scenario="healthy"``) with the given recipe."""
    return RunSpec("healthy", seed, max_steps, learning_rate=learning_rate, beta=beta, model=model,
                   schedule=schedule, part=part)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def healthy_test_spec(seed: int, max_steps: int = 240, part: str = "T-healthy",
                      models: tuple[str, ...] = STUDY2_MODELS) -> RunSpec:
    """The T-healthy run of ``seed``: a log-uniform learning rate in [3e-5, 2e-4], a log-uniform β in
    [0.05, 0.3], a schedule uniform over :data:`SCHEDULES` and a model uniform over ``models`` (default: study 2's,
    :data:`STUDY2_MODELS`), all drawn (in that order) from a RNG seeded with the run's seed alone."""
    rng = random.Random(f"T-healthy:{seed}")
    learning_rate = _log_uniform(rng, 3e-5, 2e-4)
    beta = _log_uniform(rng, 0.05, 0.3)
    schedule = rng.choice(SCHEDULES)
    model = rng.choice(models)
    return healthy_spec(seed, model, learning_rate, beta, schedule, part, max_steps)



def fault_test_spec(family: str, seed: int, max_steps: int = 240,
                    fault_window: tuple[int, int] = (130, 160), part: str = "T-faults",
                    models: tuple[str, ...] = ("M1", "M1p")) -> RunSpec:
    """The T-faults run of ``family`` for ``seed``: the demo recipe (5e-5, β 0.1, constant) on
    ``models[seed % len(models)]`` (by default M1 for an even seed and M1p for an odd one), the fault from a step
    drawn from the seed in ``fault_window``.

    Raises:
        ValueError: unknown family, or a fault window outside ``1..max_steps``.
    """
    if family not in FAULT_FIELDS:
        raise ValueError(f"`family` must be one of {', '.join(FAULT_FIELDS)}, got {family!r}")
    fault = _fault_step(family, seed, max_steps, fault_window)
    model = models[seed % len(models)]
    return RunSpec(family, seed, max_steps, fault_step=fault, model=model, part=part, **FAULT_FIELDS[family])



#: C-healthy's grid: learning rates (rows of the Latin square) and β (its columns).
CALIBRATION_LRS = (3e-5, 1e-4, 2e-4)
CALIBRATION_BETAS = (0.05, 0.1, 0.3)


def calibration_set(max_steps: int = 240) -> list[RunSpec]:
    """Calibration set C of study 2, in protocol order (21 runs).

    - C-healthy (12, seeds 100–111): M1 on the 9 combinations of learning rate × β, row by row (learning
      rate), the schedule from a Latin square — row ``r``, column ``c`` → ``SCHEDULES[(r + c) % 3]``
      (constant, cosine, linear, shifted by one per row) —, then M2 on the diagonal (3e-5, 0.05, constant),
      (1e-4, 0.1, cosine), (2e-4, 0.3, linear);
    - C-stable (3, seeds 0–2): study 1's ``stable`` runs (M1, the demo recipe) — the twins of C-faults;
    - C-faults (6): study 1's ``lr_ramp`` and ``label_flip`` on M1, seeds 0–2, with study 1's fault draw.
    """
    runs: list[RunSpec] = []
    seed = 100
    for r, lr in enumerate(CALIBRATION_LRS):
        for c, beta in enumerate(CALIBRATION_BETAS):
            runs.append(healthy_spec(seed, "M1", lr, beta, SCHEDULES[(r + c) % 3], "C-healthy", max_steps))
            seed += 1
    for i, (lr, beta) in enumerate(zip(CALIBRATION_LRS, CALIBRATION_BETAS)):
        runs.append(healthy_spec(seed, "M2", lr, beta, SCHEDULES[i], "C-healthy", max_steps))
        seed += 1
    runs += [replace(run_spec("stable", s, max_steps), part="C-stable") for s in range(3)]
    runs += [replace(run_spec(scenario, s, max_steps), part="C-faults")
             for scenario in ("lr_ramp", "label_flip") for s in range(3)]
    return runs


def test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T of study 2, in protocol order (57 runs): T-healthy seeds 200–224 (:func:`healthy_test_spec`),
    then each family of :data:`TEST_FAULTS` on its 8 seeds (:func:`fault_test_spec`)."""
    runs = [healthy_test_spec(seed, max_steps) for seed in range(200, 225)]
    for family in TEST_FAULTS:
        runs += [fault_test_spec(family, seed, max_steps, fault_window) for seed in TEST_FAULT_SEEDS[family]]
    return runs


test_set.__test__ = False  # type: ignore[attr-defined]  # a protocol function, not a pytest test


def rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """The rollback-value runs (8): the first seed of each test fault family and T-healthy seeds 200–203, each
    identical to its T run except ``rollback=True`` (its name ends in ``-rb``; ``part`` is kept)."""
    firsts = [fault_test_spec(family, TEST_FAULT_SEEDS[family][0], max_steps, fault_window)
              for family in TEST_FAULTS]
    healthy = [healthy_test_spec(seed, max_steps) for seed in range(200, 204)]
    return [replace(spec, rollback=True) for spec in (*firsts, *healthy)]


def study3_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T3 of study 3, in protocol order (57 runs): T3-healthy seeds 400–424, then each family of
    :data:`STUDY3_FAULTS` on its 8 seeds (demo recipe; M1 for even seeds, M1′ for odd ones)."""
    return _test_set(STUDY3_FAULT_SEEDS, STUDY3_HEALTHY_SEEDS, "T3", max_steps, fault_window)


def _test_set(fault_seeds: dict[str, tuple[int, ...]], healthy_seeds: tuple[int, ...], test_set: str,
              max_steps: int, fault_window: tuple[int, int], healthy_models: tuple[str, ...] = STUDY2_MODELS,
              fault_models: tuple[str, ...] = ("M1", "M1p")) -> list[RunSpec]:
    """Test set ``test_set`` ("T3"): its healthy seeds, then each fault family on its seeds."""
    runs = [healthy_test_spec(seed, max_steps, f"{test_set}-healthy", healthy_models) for seed in healthy_seeds]
    for family, seeds in fault_seeds.items():
        runs += [fault_test_spec(family, seed, max_steps, fault_window, f"{test_set}-faults", fault_models)
                 for seed in seeds]
    return runs


study3_test_set.__test__ = False  # type: ignore[attr-defined]


def study3_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 3's rollback-value runs (8): the first seed of each T3 fault family and T3-healthy seeds
    400–403, each identical to its T3 run except ``rollback=True``."""
    return _rollback_set(STUDY3_FAULT_SEEDS, STUDY3_HEALTHY_SEEDS, "T3", max_steps, fault_window)


def _rollback_set(fault_seeds: dict[str, tuple[int, ...]], healthy_seeds: tuple[int, ...], test_set: str,
                  max_steps: int, fault_window: tuple[int, int], healthy_models: tuple[str, ...] = STUDY2_MODELS,
                  fault_models: tuple[str, ...] = ("M1", "M1p")) -> list[RunSpec]:
    """The first seed of each fault family and the first 4 healthy seeds of test set ``test_set`` ("T3"),
    each as in that test set except ``rollback=True``."""
    firsts = [fault_test_spec(family, seeds[0], max_steps, fault_window, f"{test_set}-faults", fault_models)
              for family, seeds in fault_seeds.items()]
    healthy = [healthy_test_spec(seed, max_steps, f"{test_set}-healthy", healthy_models)
               for seed in healthy_seeds[:4]]
    return [replace(spec, rollback=True) for spec in (*firsts, *healthy)]


def study4_calibration_set(max_steps: int = 240) -> list[RunSpec]:
    """Calibration set C4 of study 4, in protocol order (40 runs): study 2's fault-free runs — C-healthy (12),
    C-stable (3), then T-healthy (25) — with identical specs except ``part="C4-healthy"``."""
    fault_free = ("C-healthy", "C-stable", "T-healthy")
    runs = calibration_set(max_steps) + test_set(max_steps)
    return [replace(spec, part="C4-healthy") for spec in runs if spec.part in fault_free]


def study4_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T4 of study 4, in protocol order (57 runs): T4-healthy seeds 700–724, then each family of
    :data:`STUDY4_FAULTS` on its 8 seeds (demo recipe; M1 for even seeds, M1′ for odd ones)."""
    return _test_set(STUDY4_FAULT_SEEDS, STUDY4_HEALTHY_SEEDS, "T4", max_steps, fault_window)


study4_test_set.__test__ = False  # type: ignore[attr-defined]


def study4_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 4's rollback-value runs (8): the first seed of each T4 fault family and T4-healthy seeds 700–703,
    each identical to its T4 run except ``rollback=True`` (every one with held-out evaluations)."""
    return _rollback_set(STUDY4_FAULT_SEEDS, STUDY4_HEALTHY_SEEDS, "T4", max_steps, fault_window)


def study5_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T5 of study 5, in protocol order (54 runs): T5-healthy seeds 900–929, then each family of
    :data:`STUDY5_FAULTS` on its 8 seeds (demo recipe; M1 for even seeds, M1′ for odd ones)."""
    return _test_set(STUDY5_FAULT_SEEDS, STUDY5_HEALTHY_SEEDS, "T5", max_steps, fault_window)


study5_test_set.__test__ = False  # type: ignore[attr-defined]


def study5_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 5's rollback-value runs (7): the first seed of each T5 fault family and T5-healthy seeds 900–903,
    each identical to its T5 run except ``rollback=True``."""
    return _rollback_set(STUDY5_FAULT_SEEDS, STUDY5_HEALTHY_SEEDS, "T5", max_steps, fault_window)


def study6_calibration_set(max_steps: int = 240) -> list[RunSpec]:
    """Calibration set C6 of study 6 (40 runs): C4's runs — study 2's fault-free runs — with ``part="C6-healthy"``."""
    return [replace(spec, part="C6-healthy") for spec in study4_calibration_set(max_steps)]


def study6_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T6 of study 6, in protocol order (41 runs): T6-healthy seeds 1100–1124, then each family of
    :data:`STUDY6_FAULTS` on its 8 seeds (demo recipe; M1 for even seeds, M1′ for odd ones)."""
    return _test_set(STUDY6_FAULT_SEEDS, STUDY6_HEALTHY_SEEDS, "T6", max_steps, fault_window)


study6_test_set.__test__ = False  # type: ignore[attr-defined]


def study6_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 6's rollback-value runs (6): the first seed of each T6 fault family and T6-healthy seeds 1100–1103,
    each identical to its T6 run except ``rollback=True``."""
    return _rollback_set(STUDY6_FAULT_SEEDS, STUDY6_HEALTHY_SEEDS, "T6", max_steps, fault_window)


def study7_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T7 of study 7, in protocol order (42 runs): T7-healthy seeds 1500–1523 drawn as study 2's
    T-healthy runs but over :data:`STUDY7_MODELS`, then each family of :data:`STUDY7_FAULTS` on its 6 seeds (demo
    recipe; the GPT-2 G1 for even seeds, the Qwen2 Q1 for odd ones)."""
    return _test_set(STUDY7_FAULT_SEEDS, STUDY7_HEALTHY_SEEDS, "T7", max_steps, fault_window, STUDY7_MODELS,
                     STUDY7_MODELS)


study7_test_set.__test__ = False  # type: ignore[attr-defined]


def study7_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 7's rollback-value runs (7): the first seed of each T7 fault family and T7-healthy seeds 1500–1503,
    each identical to its T7 run except ``rollback=True``."""
    return _rollback_set(STUDY7_FAULT_SEEDS, STUDY7_HEALTHY_SEEDS, "T7", max_steps, fault_window, STUDY7_MODELS,
                         STUDY7_MODELS)


def study8_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T8 of study 8, in protocol order (54 runs): T8-healthy seeds 1700–1729 drawn as study 2's T-healthy
    runs but over :data:`STUDY8_MODELS`, then each family of :data:`STUDY8_FAULTS` on its 6 seeds (demo recipe; M1,
    G1, Q1 by seed modulo 3)."""
    return _test_set(STUDY8_FAULT_SEEDS, STUDY8_HEALTHY_SEEDS, "T8", max_steps, fault_window, STUDY8_MODELS,
                     STUDY8_FAULT_MODELS)


study8_test_set.__test__ = False  # type: ignore[attr-defined]


def study8_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 8's rollback-value runs (8): the first seed of each T8 fault family and T8-healthy seeds 1700–1703,
    each identical to its T8 run except ``rollback=True``."""
    return _rollback_set(STUDY8_FAULT_SEEDS, STUDY8_HEALTHY_SEEDS, "T8", max_steps, fault_window, STUDY8_MODELS,
                         STUDY8_FAULT_MODELS)


def study9_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T9 of study 9, in protocol order (62 runs): T9-healthy seeds 1900–1929 drawn as T8's (the model
    uniform over :data:`STUDY8_MODELS`), then each family of :data:`STUDY8_FAULTS` on its 8 seeds (demo recipe; M1,
    G1, Q1 by seed modulo 3)."""
    return _test_set(STUDY9_FAULT_SEEDS, STUDY9_HEALTHY_SEEDS, "T9", max_steps, fault_window, STUDY8_MODELS,
                     STUDY8_FAULT_MODELS)


study9_test_set.__test__ = False  # type: ignore[attr-defined]


def study9_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 9's rollback-value runs (8): the first seed of each T9 fault family and T9-healthy seeds 1900–1903,
    each identical to its T9 run except ``rollback=True``."""
    return _rollback_set(STUDY9_FAULT_SEEDS, STUDY9_HEALTHY_SEEDS, "T9", max_steps, fault_window, STUDY8_MODELS,
                         STUDY8_FAULT_MODELS)


def study10_test_set(max_steps: int = 240) -> list[RunSpec]:
    """Test set T10 of study 10 (40 runs): T10-healthy seeds 2100–2139 drawn as T8's and T9's (the model uniform over
    :data:`STUDY8_MODELS`); no fault runs."""
    return [healthy_test_spec(seed, max_steps, "T10-healthy", STUDY8_MODELS) for seed in STUDY10_HEALTHY_SEEDS]


study10_test_set.__test__ = False  # type: ignore[attr-defined]


def study11_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T11 of study 11, in protocol order (72 runs): T11-healthy seeds 2200–2239 drawn as T8's but over
    :data:`STUDY11_MODELS`, then each family of :data:`STUDY11_FAULTS` on its 8 seeds (demo recipe; M1, M3, Q1, G2 by
    seed modulo 4)."""
    return _test_set(STUDY11_FAULT_SEEDS, STUDY11_HEALTHY_SEEDS, "T11", max_steps, fault_window, STUDY11_MODELS,
                     STUDY11_FAULT_MODELS)


study11_test_set.__test__ = False  # type: ignore[attr-defined]


def study11_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 11's rollback-value runs (8): the first seed of each T11 fault family and T11-healthy seeds 2200–2203,
    each identical to its T11 run except ``rollback=True``."""
    return _rollback_set(STUDY11_FAULT_SEEDS, STUDY11_HEALTHY_SEEDS, "T11", max_steps, fault_window, STUDY11_MODELS,
                         STUDY11_FAULT_MODELS)


def study12_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T12 of study 12, in protocol order (72 runs): T12-healthy seeds 2400–2431 drawn as T11's (over
    :data:`STUDY11_MODELS`), then each family of :data:`STUDY12_FAULTS` on its 8 seeds (demo recipe; M1, M3, Q1, G2 by
    seed modulo 4)."""
    return _test_set(STUDY12_FAULT_SEEDS, STUDY12_HEALTHY_SEEDS, "T12", max_steps, fault_window, STUDY11_MODELS,
                     STUDY11_FAULT_MODELS)


study12_test_set.__test__ = False  # type: ignore[attr-defined]


def study12_rollback_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Study 12's rollback-value runs (9): the first seed of each T12 fault family and T12-healthy seeds 2400–2403,
    each identical to its T12 run except ``rollback=True``."""
    return _rollback_set(STUDY12_FAULT_SEEDS, STUDY12_HEALTHY_SEEDS, "T12", max_steps, fault_window, STUDY11_MODELS,
                         STUDY11_FAULT_MODELS)


def study13_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T13 of study 13, in protocol order (56 runs): T13-healthy seeds 2600–2631 drawn as T12's (over
    :data:`STUDY11_MODELS`), then each family of :data:`STUDY13_FAULTS` on its 8 seeds (demo recipe; M1, M3, Q1, G2 by
    seed modulo 4)."""
    return _test_set(STUDY13_FAULT_SEEDS, STUDY13_HEALTHY_SEEDS, "T13", max_steps, fault_window, STUDY11_MODELS,
                     STUDY11_FAULT_MODELS)


study13_test_set.__test__ = False  # type: ignore[attr-defined]


def study14_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T14 of study 14, in protocol order (56 runs): T14-healthy seeds 2800–2831 drawn as T13's (over
    :data:`STUDY11_MODELS`), then each family of :data:`STUDY14_FAULTS` on its 8 seeds (demo recipe; M1, M3, Q1, G2 by
    seed modulo 4)."""
    return _test_set(STUDY14_FAULT_SEEDS, STUDY14_HEALTHY_SEEDS, "T14", max_steps, fault_window, STUDY11_MODELS,
                     STUDY11_FAULT_MODELS)


study14_test_set.__test__ = False  # type: ignore[attr-defined]


def study15_test_set(max_steps: int = 240, fault_window: tuple[int, int] = (130, 160)) -> list[RunSpec]:
    """Test set T15 of study 15, in protocol order (56 runs): T15-healthy seeds 3000–3031 drawn as T14's, then each
    family of :data:`STUDY14_FAULTS` on its 8 seeds of :data:`STUDY15_FAULT_SEEDS` (demo recipe; M1, M3, Q1, G2 by
    seed modulo 4)."""
    return _test_set(STUDY15_FAULT_SEEDS, STUDY15_HEALTHY_SEEDS, "T15", max_steps, fault_window, STUDY11_MODELS,
                     STUDY11_FAULT_MODELS)


study15_test_set.__test__ = False  # type: ignore[attr-defined]


def shorten(spec: RunSpec, max_steps: int) -> RunSpec:
    """``spec`` squeezed into ``max_steps`` for a smoke run: the fault step and the label-noise ramp are scaled
    by ``max_steps / spec.max_steps`` (a fault step stays at least 1, a ramp at least 1 step)."""
    ratio = max_steps / spec.max_steps
    fault = None if spec.fault_step is None else min(max_steps, max(1, round(spec.fault_step * ratio)))
    ramp = max(1, round(spec.label_noise_ramp * ratio)) if spec.label_noise_ramp else 0
    return replace(spec, max_steps=max_steps, fault_step=fault, label_noise_ramp=ramp)
