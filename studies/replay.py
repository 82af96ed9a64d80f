"""Study 2: replaying the trend-aware detector, and its variants, on the recorded runs.

A run folder holds everything the callback measured (``spinal_trace.jsonl``: per-layer depth traces and the
probe-forward ``"signals"``) and every training log record, so any detector can be replayed offline on
exactly what it would have seen live, each probe step seeing only the past. The variants (protocol in
``docs/evidence.md``) differ only in which signals they watch; each is calibrated on the calibration set's
healthy runs with :func:`spinal_callback.early_warning.calibrate`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.config.signals import DEFAULT_SIGNALS, PROBE_PAIR_SIGNALS
from spinal_callback.early_warning import (
    AlertReason,
    EarlyWarningDetector,
    calibrate,
    signals_from_bands,
    vectors_from_trace,
)
from spinal_callback.sinks.jsonl import read_trace_file

__all__ = [
    "STUDY2_CHECKS", "VARIANTS", "Run", "alarms", "calibrated", "load", "observations", "saved_config",
    "studied_defaults", "variant_config",
]


def studied_defaults() -> DetectorConfig:
    """The library's :class:`DetectorConfig` defaults as studies 2–11 ran them: TRL's metrics and the probe pairs'
    DPO quantities watched (``DEFAULT_SIGNALS`` + ``PROBE_PAIR_SIGNALS``), no signal checked for NON_FINITE alone
    (``finite_signals`` came with study 12), the turn scored at the shared lag alone (``turn_lag`` came with study
    13), no decisive exceedances (``decisive_factor`` came with study 14). Every pinned detector of those studies
    starts from it."""
    return DetectorConfig(signals={**DEFAULT_SIGNALS, **PROBE_PAIR_SIGNALS}, finite_signals=(), turn_lag=0,
                          decisive_factor=0.0)

_GEOMETRY = {f"band/late/{m}": "both" for m in ("contraction", "transport", "entropy", "transport_curvature")}
_PROBE_SET = {f"pairs/{m}": "both" for m in ("logp_chosen", "logp_rejected", "margin", "logratio_margin")}
_HEAD = {"head/log_z": "both", "head/max_logit": "both"}
_TRL = {m: "both" for m in ("rewards/chosen", "logps/chosen", "rewards/accuracies", "rewards/margins")}
_VECTORS = ("layers/late/transport", "layers/late/contraction")

#: Variant name → (watched scalar signals, watched per-layer vectors).
VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "geometry": (_GEOMETRY, _VECTORS),
    "probe-set control": (_PROBE_SET, ()),
    "head": (_HEAD, ()),
    "geometry + head": ({**_GEOMETRY, **_HEAD}, _VECTORS),
    "geometry + probe-set": ({**_GEOMETRY, **_PROBE_SET}, _VECTORS),
    "all three": ({**_GEOMETRY, **_PROBE_SET, **_HEAD}, _VECTORS),
    "TRL metrics": (_TRL, ()),
    # Amendment 1 (docs/evidence.md): combinations with TRL's metrics, added after the calibration set's
    # results and before any test-set scoring.
    "TRL metrics + probe-set": ({**_TRL, **_PROBE_SET}, ()),
    "all signals": ({**_GEOMETRY, **_PROBE_SET, **_HEAD, **_TRL}, _VECTORS),
}


@dataclass
class Run:
    """One finished run: its spec, training logs, held-out evaluations and trace records (``traces``: every reading —
    ``"trace"`` records, and since study 12 the ``"signals"`` records of the readings between probes; a metrics-only
    record, written by a callback that reads every logged value, is not a reading: the logs hold its metrics)."""

    name: str
    spec: dict[str, Any]
    logs: list[dict[str, float]]
    evals: list[dict[str, float]]
    traces: list[dict[str, Any]]
    live_alerts: list[dict[str, Any]]
    rollbacks: list[dict[str, Any]]
    #: Whether the callback read each step with that step's trainer log (since study 14: the HF callback holds a
    #: reading for the log that follows ``on_step_end``); earlier runs' readings saw the log of the step before.
    metrics_at_step: bool = False
    #: Replay as a callback that reads every logged value at its own step (study 15): between two readings each log
    #: is a metrics-only observation, and a reading at a logged step carries that step's log. Implies
    #: ``metrics_at_step``.
    every_log: bool = False

    @property
    def part(self) -> str:
        return str(self.spec.get("part", ""))

    @property
    def is_fault(self) -> bool:
        return self.spec.get("fault_step") is not None

    @property
    def fault_start(self) -> int:
        return int(self.spec["fault_step"]) if self.is_fault else 10**9

    def series(self, key: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[key])) for r in self.logs if key in r]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load(run_dir: str | Path) -> Run:
    """Read a finished run folder (``FileNotFoundError`` when it has no ``run.json``)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    records = read_trace_file(run_dir / "spinal_trace.jsonl")
    return Run(
        name=run_dir.name, spec=meta["spec"],
        logs=[r for r in _jsonl(run_dir / "logs.jsonl") if "loss" in r], evals=_jsonl(run_dir / "evals.jsonl"),
        traces=[r for r in records if r.get("type") == "trace" or (r.get("type") == "signals" and r.get("signals"))],
        live_alerts=[r for r in records if r.get("type") == "alert"],
        rollbacks=[r for r in records if r.get("type") == "rollback"],
        metrics_at_step=bool(meta.get("metrics_at_step", False)),
        every_log=bool((meta.get("settings") or {}).get("read_every_log", False)),
    )


def observations(run: Run, stride: int = 1) -> list[tuple[int, dict[str, float], dict[str, list[float]]]]:
    """What the monitor feeds its detector at each probe step: band summaries, probe-forward signals, per-layer
    vectors, and the TRL metrics logged since the previous one and *before* the step (HF calls ``on_step_end``
    before it logs the step) — or, for a run recorded since study 14 (``run.metrics_at_step``), at the step too; the
    latest value of each, each logged value once, as the monitor feeds them (a reading with no new log has none).

    ``stride`` keeps every ``stride``-th probe (a probe interval ``stride`` times the recorded one). With
    ``run.every_log`` (study 15), each logged value is fed once, at its own step: a log between two readings is an
    observation of its own (the metrics alone), a log at a reading's step goes with that reading, and logs after the
    last reading follow it.
    """
    logs = sorted(run.logs, key=lambda r: r["step"])
    if run.every_log:
        return _every_log(run.traces[::stride], logs)
    out, i = [], 0
    for record in run.traces[::stride]:
        step = int(record["step"])
        fresh: dict[str, float] = {}
        while i < len(logs) and (logs[i]["step"] <= step if run.metrics_at_step else logs[i]["step"] < step):
            fresh.update(_logged(logs[i]))
            i += 1
        signals, vectors = _reading(record)
        signals.update(fresh)
        out.append((step, signals, vectors))
    return out


def _reading(record: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A trace record's band summaries and probe-forward or update signals, and its per-layer vectors."""
    signals, _ = signals_from_bands(record.get("bands", {}))
    signals.update({k: (math.nan if v is None else float(v)) for k, v in (record.get("signals") or {}).items()})
    vectors, _ = vectors_from_trace(record)
    return signals, vectors


def _logged(log: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in log.items() if k != "step"}


def _every_log(records: Sequence[Mapping[str, Any]],
               logs: Sequence[Mapping[str, Any]]) -> list[tuple[int, dict[str, float], dict[str, list[float]]]]:
    """:func:`observations` for a callback that reads every logged value at its own step (``Run.every_log``)."""
    out: list[tuple[int, dict[str, float], dict[str, list[float]]]] = []
    i = 0
    for record in records:
        step = int(record["step"])
        while i < len(logs) and logs[i]["step"] < step:
            out.append((int(logs[i]["step"]), _logged(logs[i]), {}))
            i += 1
        signals, vectors = _reading(record)
        if i < len(logs) and logs[i]["step"] == step:
            signals.update(_logged(logs[i]))
            i += 1
        out.append((step, signals, vectors))
    out += [(int(log["step"]), _logged(log), {}) for log in logs[i:]]
    return out


#: Study 2's tests: the speed, update and turn tests came later, and its variance test watched every signal.
STUDY2_CHECKS = ("trend_break", "slope_change", "variance_burst", "pattern_change")


def saved_config(saved: Mapping[str, Any], ran: DetectorConfig) -> DetectorConfig:
    """A detector config an earlier study saved, read back as it ran: fields the save lacks (added to
    :class:`DetectorConfig` since) come from ``ran``, the detector that study ran, not from today's defaults."""
    return DetectorConfig.from_dict({**ran.to_dict(), **saved})


def variant_config(name: str, base: DetectorConfig | None = None) -> DetectorConfig:
    """The detector settings of variant ``name`` (uncalibrated thresholds of ``base``; by default the library's,
    with study 2's tests on every watched signal)."""
    signals, vectors = VARIANTS[name]
    base = base or replace(studied_defaults(), checks=STUDY2_CHECKS, variance_signals=("*",), variance_reference=0)
    checks = tuple(c for c in base.checks if c != "pattern_change" or vectors)
    return replace(base, signals=dict(signals), vectors=tuple(vectors), checks=checks)


def calibrated(name: str, healthy: Sequence[Run], stride: int = 1, target_rate: float = 0.5,
               base: DetectorConfig | None = None) -> DetectorConfig:
    """Variant ``name`` with thresholds set on ``healthy`` runs to ``target_rate`` alarms per 1000 probe steps."""
    streams = [observations(run, stride) for run in healthy]
    return calibrate(streams, variant_config(name, base), target_rate=target_rate)


def alarms(run: Run, config: DetectorConfig, stride: int = 1) -> list[int]:
    """Steps at which the detector raises an alert on ``run`` (NON_FINITE included: a real instability)."""
    detector = EarlyWarningDetector(config)
    out = []
    for step, signals, vectors in observations(run, stride):
        found = detector.update(step, signals, vectors=vectors)
        if found:
            out.append(step)
    return out


def alarm_reasons(run: Run, config: DetectorConfig, stride: int = 1) -> list[tuple[int, str, str]]:
    """``(step, reason, signal)`` of every alert, for the per-run listing."""
    detector = EarlyWarningDetector(config)
    out = []
    for step, signals, vectors in observations(run, stride):
        for alert in detector.update(step, signals, vectors=vectors):
            reason = alert.reason.value if isinstance(alert.reason, AlertReason) else str(alert.reason)
            out.append((step, reason, alert.signal))
    return out


def signal_series(run: Run, signal: str) -> dict[int, float]:
    """One signal over the run's probe steps (band summaries and probe-forward signals)."""
    out = {}
    for step, signals, _ in observations(run):
        value = signals.get(signal)
        if value is not None and math.isfinite(value):
            out[step] = value
    return out


def eval_series(run: Run, key: str) -> dict[int, float]:
    return {int(r["step"]): float(r[key]) for r in run.evals if r.get(key) is not None}


def first_divergence(run: Mapping[int, float], twin: Mapping[int, float], start: int, k: float = 3.0) -> int | None:
    """Study 1's twin oracle on any two series: the first step ≥ ``start`` where ``|run − twin|`` exceeds ``k`` ×
    the twin's step-to-step fluctuation (1.4826·MAD of its differences) at two consecutive observations."""
    import itertools
    import statistics

    steps = sorted(set(run) & set(twin))
    diffs = [twin[t] - twin[s] for s, t in itertools.pairwise(steps)]
    if len(diffs) < 3:
        return None
    centre = statistics.median(diffs)
    noise = 1.4826 * statistics.median(abs(d - centre) for d in diffs) or 1e-12
    out = [s for s in steps if s >= start and abs(run[s] - twin[s]) > k * noise]
    for first, second in itertools.pairwise(out):
        if steps.index(second) == steps.index(first) + 1:
            return first
    return None
