"""Score every detector on the study's runs: alarms, detection, lead time and false alarms.

A run folder (written by :func:`~studies.runner.run_study`) is read into a
:class:`RunRecord`; :data:`DETECTORS` turns a record into alarm steps; :func:`score_run` compares them
with the behavioural onset; :func:`summarise` aggregates per scenario and detector.

Scoring rules (stated in ``docs/evidence.md`` too):

- an alarm before the fault starts (any alarm at all in a stable run) is a **false alarm**;
- a fault run is **detected** by a detector when its first alarm at or after the fault start comes no
  later than ``onset + late_tolerance`` steps; the **lead time** is ``onset − alarm`` (positive: the
  alarm came before held-out behaviour degraded);
- a fault run whose held-out behaviour never degraded has no onset and is left out of the detection
  rate (reported as such).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinal_callback.early_warning.detector import DEFAULT_SIGNALS, signals_from_bands
from spinal_callback.sinks.jsonl import read_trace_file
from studies.baselines import drop_from_best_alarms, lightning_spike_alarms, spinal_alarms, window_zscore_alarms
from studies.ground_truth import behavioural_onset
from studies.replay import first_divergence

__all__ = [
    "DETECTORS",
    "GEOMETRY_SIGNALS",
    "METRIC_SIGNALS",
    "RunRecord",
    "RunScore",
    "load_run",
    "score_run",
    "spinal_observations",
    "summarise",
    "twin_divergence",
]

#: Spinal's default signals split into its geometry (late-band depth trace) and TRL-metric halves.
GEOMETRY_SIGNALS = {k: v for k, v in DEFAULT_SIGNALS.items() if k.startswith("band/")}
METRIC_SIGNALS = {k: v for k, v in DEFAULT_SIGNALS.items() if not k.startswith("band/")}


@dataclass
class RunRecord:
    """What one study run recorded.

    Attributes:
        name: the run folder's name (``<scenario>-s<seed>``).
        spec: the run's :class:`~studies.scenarios.RunSpec` as a dict.
        logs: per-step training log records (``step``, ``loss``, ``grad_norm``, TRL's metrics, …).
        evals: held-out evaluations (``step``, ``accuracy``, ``chosen_logp``).
        traces: ``(step, bands)`` of every depth trace the callback wrote.
        online_alerts: the callback's own alert records (its default detector, live).
        seconds: wall time of the training.
    """

    name: str
    spec: dict[str, Any]
    logs: list[dict[str, float]]
    evals: list[dict[str, float]]
    traces: list[tuple[int, dict[str, Any]]]
    online_alerts: list[dict[str, Any]]
    seconds: float

    @property
    def scenario(self) -> str:
        return str(self.spec["scenario"])

    @property
    def fault_start(self) -> int:
        """First step an alarm may legitimately come at (0 for faults present from the start)."""
        fault = self.spec.get("fault_step")
        return int(fault) if fault is not None else 0

    @property
    def is_fault(self) -> bool:
        return self.scenario != "stable"

    def series(self, key: str) -> list[tuple[int, float]]:
        """``[(step, value)]`` of a training log key, in step order."""
        return [(int(r["step"]), float(r[key])) for r in self.logs if key in r]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_run(run_dir: str | Path) -> RunRecord:
    """Read a finished run folder (raises ``FileNotFoundError`` naming the folder if ``run.json`` is missing)."""
    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished study run (no run.json); run the study again")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    records = read_trace_file(run_dir / "spinal_trace.jsonl")
    return RunRecord(
        name=run_dir.name,
        spec=meta["spec"],
        logs=[r for r in _read_jsonl(run_dir / "logs.jsonl") if "loss" in r],
        evals=_read_jsonl(run_dir / "evals.jsonl"),
        traces=[(int(r["step"]), r["bands"]) for r in records if r.get("type") == "trace"],
        online_alerts=[r for r in records if r.get("type") == "alert"],
        seconds=float(meta.get("seconds", math.nan)),
    )


def spinal_observations(run: RunRecord, signals: Mapping[str, str]) -> list[tuple[int, dict[str, float]]]:
    """What the monitor feeds its detector at each probe step, restricted to ``signals``.

    At probe step ``s`` that is the depth trace's band summaries plus the latest TRL metrics logged
    *before* it — HF's Trainer calls ``on_step_end`` (where the probe runs) before it logs step ``s``.
    """
    logs = sorted(run.logs, key=lambda r: r["step"])
    out = []
    latest: dict[str, float] = {}
    i = 0
    for step, bands in run.traces:
        while i < len(logs) and logs[i]["step"] < step:
            latest.update({k: v for k, v in logs[i].items() if k != "step"})
            i += 1
        observed, _ = signals_from_bands(bands)
        observed.update(latest)
        out.append((step, {k: v for k, v in observed.items() if k in signals}))
    return out


def _spinal(signals: Mapping[str, str]) -> Callable[[RunRecord], list[int]]:
    def detect(run: RunRecord) -> list[int]:
        return [a.step for a in spinal_alarms(spinal_observations(run, signals), {"signals": dict(signals)})]

    return detect


def _either(*detectors: Callable[[RunRecord], list[int]]) -> Callable[[RunRecord], list[int]]:
    return lambda run: sorted({step for detect in detectors for step in detect(run)})


_olmo_loss = lambda run: window_zscore_alarms(run.series("loss"))  # noqa: E731
_olmo_grad = lambda run: window_zscore_alarms(run.series("grad_norm"))  # noqa: E731

#: Detector name → alarm steps of a run. Spinal's rows replay its detector with the shipped settings.
DETECTORS: dict[str, Callable[[RunRecord], list[int]]] = {
    "spinal (default: geometry + TRL metrics)": _spinal(DEFAULT_SIGNALS),
    "spinal geometry only (late band)": _spinal(GEOMETRY_SIGNALS),
    "spinal TRL metrics only": _spinal(METRIC_SIGNALS),
    "Lightning SpikeDetection (loss)": lambda run: lightning_spike_alarms(run.series("loss")),
    "OLMo-core 6σ/128 (loss)": _olmo_loss,
    "OLMo-core 6σ/128 (grad norm)": _olmo_grad,
    "OLMo-core 6σ/128 (loss or grad norm)": _either(_olmo_loss, _olmo_grad),
    "TRL reward accuracy drop ≥ 0.2": lambda run: drop_from_best_alarms(run.series("rewards/accuracies"), drop=0.2),
    "TRL chosen log-prob drop ≥ 0.5": lambda run: drop_from_best_alarms(run.series("logps/chosen"), drop=0.5),
}


@dataclass
class RunScore:
    """One detector on one run."""

    run: str
    scenario: str
    detector: str
    onset: int | None
    fault_start: int
    alarms: list[int]
    false_alarms: list[int] = field(default_factory=list)
    first_alarm: int | None = None
    detected: bool = False
    lead: int | None = None


def score_run(run: RunRecord, detector: str, alarms: Sequence[int], onset: int | None,
              late_tolerance: int = 20) -> RunScore:
    """Score ``alarms`` of ``detector`` on ``run`` against the behavioural ``onset`` (rules in the module docstring)."""
    alarms = sorted(alarms)
    start = run.fault_start if run.is_fault else math.inf
    score = RunScore(run.name, run.scenario, detector, onset, run.fault_start, list(alarms))
    score.false_alarms = [a for a in alarms if a < start]
    after = [a for a in alarms if a >= start]
    if run.is_fault and after:
        score.first_alarm = after[0]
        if onset is not None and after[0] <= onset + late_tolerance:
            score.detected = True
            score.lead = onset - after[0]
    return score


def summarise(scores: Sequence[RunScore]) -> list[dict[str, Any]]:
    """Per scenario and detector: runs, runs with an onset, detected, median lead, runs with false alarms."""
    rows = []
    for scenario in dict.fromkeys(s.scenario for s in scores):
        for detector in dict.fromkeys(s.detector for s in scores):
            group = [s for s in scores if s.scenario == scenario and s.detector == detector]
            with_onset = [s for s in group if s.onset is not None]
            leads = [s.lead for s in group if s.detected and s.lead is not None]
            rows.append({
                "scenario": scenario,
                "detector": detector,
                "runs": len(group),
                "with_onset": len(with_onset),
                "detected": sum(s.detected for s in with_onset),
                "before_onset": sum(1 for s in with_onset if s.detected and (s.lead or 0) > 0),
                "median_lead": statistics.median(leads) if leads else None,
                "leads": leads,
                "false_alarm_runs": sum(1 for s in group if s.false_alarms),
            })
    return rows


def onsets(runs: Sequence[RunRecord]) -> dict[str, int | None]:
    """Behavioural onset per run name."""
    return {run.name: behavioural_onset(run.evals) for run in runs}


def twin_divergence(run: RunRecord, twin: RunRecord, signal: str, *, k: float = 3.0) -> int | None:
    """First step at or after the fault where ``run`` leaves its fault-free ``twin`` on ``signal`` — an oracle.

    Runs of one seed are identical until the fault step (same data, order and initialisation), so any
    difference after it is the fault's doing. The step counted is the first where ``|run − twin|`` exceeds
    ``k`` times the twin's own step-to-step fluctuation (1.4826 · MAD of its successive differences) at two
    consecutive observations. It needs the counterfactual twin, so it is no detector: it shows *which
    signals carry the fault, and how early*, whatever a detector's thresholds.

    Args:
        run: a fault run.
        twin: the stable run of the same seed.
        signal: ``"band/<band>/<metric>"`` (depth trace) or a training log key (``"loss"``, ``"logps/chosen"``).
        k: threshold in units of the twin's fluctuation.
    """
    def series(record: RunRecord) -> dict[int, float]:
        if signal.startswith("band/"):
            _, band, metric = signal.split("/", 2)
            return {s: float(b[band][metric]) for s, b in record.traces if b.get(band, {}).get(metric) is not None}
        return dict(record.series(signal))

    return first_divergence(series(run), series(twin), run.fault_start, k=k)
