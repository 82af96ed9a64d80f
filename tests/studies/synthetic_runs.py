"""Finished study-run folders as the runner writes them, from synthetic signals (for the analysis-phase tests of
studies 4-8: no training)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

from studies.scenarios import RunSpec

#: ``f(step, rng, spec)`` → values at ``step`` (probe signals, or one training-log record).
Values = Callable[[int, random.Random, RunSpec], dict[str, float]]


def base_signals(step: int, rng: random.Random) -> dict[str, float]:
    """The probe pairs' log-likelihoods, smooth with a little noise."""
    return {"pairs/logp_chosen": -1 - 0.01 * step + rng.gauss(0, 0.02),
            "pairs/logp_rejected": -5 - 0.03 * step + rng.gauss(0, 0.02)}


def update_signals(step: int, rng: random.Random, spec: RunSpec) -> dict[str, float]:
    """``update/size`` and ``update/turn`` wandering within ±10 %; from the fault step on, an ``lr_jump`` run's size
    jumps ×50 and a ``grad_ascent`` run's turn ×3 (other faults move neither)."""
    after = spec.fault_step is not None and step > spec.fault_step
    size = 1e-3 * (50.0 if after and spec.scenario == "lr_jump" else 1.0) * math.exp(rng.gauss(0, 0.05))
    turn = 0.3 * (3.0 if after and spec.scenario == "grad_ascent" else 1.0) * math.exp(rng.gauss(0, 0.05))
    return {"update/size": size, "update/turn": turn}


def base_log(step: int, rng: random.Random) -> dict[str, float]:
    """A quiet training-log record: loss, grad norm, TRL's reward accuracy and chosen log-prob."""
    return {"step": step, "loss": 0.69 - 0.001 * step + rng.gauss(0, 0.01), "grad_norm": 1 + rng.gauss(0, 0.05),
            "rewards/accuracies": 0.5 + rng.gauss(0, 0.05), "logps/chosen": -1 + rng.gauss(0, 0.05)}


def write_run(root: Path, spec: RunSpec, probes: int, onset: int, evals: bool, signals: Values,
              log: Values | None = None, metrics_at_step: bool = False) -> None:
    """Write ``root/<spec.name>``: ``probes`` probe records every 2 steps with :func:`base_signals` updated by
    ``signals``, a log record per step (:func:`base_log` updated by ``log``), held-out evaluations every 2 steps
    when ``evals`` (accuracy 0.9, 0.5 from ``onset`` on), and ``run.json`` (``metrics_at_step``: recorded by a callback
    that reads a step with that step's log, as since study 14). One seeded RNG per run name."""
    rng = random.Random(spec.name)
    run = root / spec.name
    run.mkdir(parents=True)
    with open(run / "spinal_trace.jsonl", "w") as trace:
        for i in range(probes):
            step = 2 * i
            record = {**base_signals(step, rng), **signals(step, rng, spec)}
            trace.write(json.dumps({"type": "trace", "step": step, "layers": [], "signals": record}) + "\n")
    with open(run / "logs.jsonl", "w") as logs:
        for step in range(1, 2 * probes):
            record = {**base_log(step, rng), **(log(step, rng, spec) if log else {})}
            logs.write(json.dumps(record) + "\n")
    with open(run / "evals.jsonl", "w") as out:
        for step in range(0, 2 * probes, 2) if evals else ():
            out.write(json.dumps({"step": step, "accuracy": 0.9 if step < onset else 0.5, "chosen_logp": -1.0}) + "\n")
    (run / "run.json").write_text(json.dumps({"spec": spec.to_dict(), "metrics_at_step": metrics_at_step}))
