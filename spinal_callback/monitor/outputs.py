"""Where the monitor's results go: TensorBoard (through a sink) and the JSON-lines trace file.

:class:`MonitorOutputs` turns typed results — a geometry probe, a patching probe, a probe failure, the
guard's outcome — into tags, text and trace records. Every write is guarded: an output that fails
becomes a warning (unless ``strict``), never a crashed run. On ranks other than 0 it holds no sink and
no writer and writes nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from spinal_callback.config import SpinalConfig
from spinal_callback.model.architectures import DecoderLayout
from spinal_callback.monitor.probing import GeometryResult, PatchingResult, ProbeFailure
from spinal_callback.recovery.guard import AlertGuard, GuardOutcome

if TYPE_CHECKING:
    from spinal_callback.early_warning.alerts import Alert
    from spinal_callback.sinks.jsonl import TraceWriter
    from spinal_callback.sinks.tensorboard import TensorBoardSink

__all__ = ["MonitorOutputs", "alert_markdown", "config_markdown"]

log = logging.getLogger("spinal_callback")


class MonitorOutputs:
    """The sinks of one run (rank 0) and how each kind of result is written to them.

    Args:
        sink: TensorBoard output, or ``None``.
        trace_writer: JSON-lines output, or ``None``.
        strict: re-raise output errors instead of warning.
    """

    def __init__(
        self, sink: TensorBoardSink | None = None, trace_writer: TraceWriter | None = None, strict: bool = False
    ) -> None:
        self.sink = sink
        self.trace_writer = trace_writer
        self.strict = strict
        self._deferred: dict[int, dict[str, float]] = {}  # a reading's scalars, written with its guard outcome

    # -- results ---------------------------------------------------------------------------------
    def config(self, config: SpinalConfig, layout: DecoderLayout, num_pairs: int) -> None:
        self._to_sink(lambda s: s.write_text("spinal/config", config_markdown(config, layout, num_pairs), 0))

    def geometry(self, result: GeometryResult, failures: int, metrics: Mapping[str, float] | None = None) -> None:
        """A successful geometry probe: its trace, the probe-forward signals (``spinal/head/…``,
        ``spinal/pairs/…``; a ``"signals"`` entry of the trace record), the trainer ``metrics`` the detector
        saw at this step (a ``"metrics"`` entry, so that the trace file alone replays the detector),
        ``spinal/probe/seconds`` and the failure count."""
        trace = result.trace
        if trace is None:
            return
        self._to_sink(lambda s: s.write_trace(result.step, trace, defer_images=True))  # drawn in guard_outcome
        scalars = {f"spinal/{name}": value for name, value in result.signals.items()}
        scalars.update({"spinal/probe/seconds": result.seconds, "spinal/probe/failures": float(failures)})
        self._to_sink(lambda s: s.write_scalars(result.step, scalars))
        from spinal_callback.sinks.jsonl import trace_record

        record = trace_record(result.step, trace)
        if result.signals:
            record["signals"] = dict(result.signals)
        if result.noise:
            record["noise"] = dict(result.noise)
        if metrics:
            record["metrics"] = dict(metrics)
        self.record(record)

    def reading(self, step: int, signals: Mapping[str, float], metrics: Mapping[str, float] | None = None,
                *, defer_scalars: bool = False) -> None:
        """A reading between probes: the forward-free ``signals`` as ``spinal/<name>`` scalars, and a
        ``"signals"`` trace record with them and the trainer ``metrics`` the detector saw at this step.

        ``defer_scalars``: write the scalars with this step's :meth:`guard_outcome` (one TensorBoard event per
        reading instead of three; :meth:`close` writes any still held)."""
        scalars = {f"spinal/{name}": v for name, v in signals.items()}
        if defer_scalars:
            self._deferred.setdefault(step, {}).update(scalars)
        elif scalars:
            self._to_sink(lambda s: s.write_scalars(step, scalars))
        if signals or metrics:
            record: dict[str, Any] = {"type": "signals", "step": int(step), "signals": dict(signals)}
            if metrics:
                record["metrics"] = dict(metrics)
            self.record(record)

    def patching(self, result: PatchingResult, failures: int) -> None:
        """A successful patching probe: ``spinal/patch/...`` scalars, its heatmap column and record."""
        outcome = result.outcome
        if outcome is None:
            return
        scalars = {**outcome.scalars, "spinal/patch/seconds": result.seconds, "spinal/patch/failures": float(failures)}
        self._to_sink(lambda s: s.write_scalars(result.step, scalars))
        if outcome.normalized_effect:
            exact = outcome.record.get("exact", {}).get("policy_to_reference", {})
            layers = exact.get("layers") if len(exact.get("layers") or ()) == len(outcome.normalized_effect) else None
            self._to_sink(
                lambda s: s.write_heatmap(
                    "spinal/heatmap/patch_normalized_effect",
                    result.step,
                    outcome.normalized_effect,
                    layers=layers,
                    defer_images=True,
                )
            )
        for note in outcome.notes:
            log.info("spinal: %s", note)
        self.record({"type": "patch", "step": result.step, **outcome.record})

    def failure(self, failure: ProbeFailure, count: int, tag: str) -> None:
        """A failed probe: a RuntimeWarning, a logged warning and the counter ``tag``; CUDA cache freed after
        an out-of-memory error."""
        message = failure.message(count)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        log.warning(message)
        if failure.out_of_memory:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self._to_sink(lambda s: s.write_scalars(failure.step, {tag: float(count)}))

    def guard_outcome(self, step: int, outcome: GuardOutcome, guard: AlertGuard, log_alerts: bool) -> None:
        """Alerts, the rollback, snapshot/restore failures and the detector's scores of one step; the marker
        series ``spinal/alerts/marker`` / ``spinal/rollbacks/marker`` (0 at a quiet step), written in one event
        with the scores and the step's deferred reading scalars, and the heatmaps of this step, drawn last so
        that they show its alert and rollback lines."""
        for alert in outcome.alerts:
            if log_alerts:
                log.warning("spinal alert at step %d: %s", step, alert.message)
            text = alert_markdown(alert)
            self._to_sink(lambda s, text=text: s.write_text("spinal/alerts", text, step))  # type: ignore[misc]
            self.record({"type": "alert", "step": step, **alert.to_dict()})
        if outcome.rollback is not None:
            record = outcome.rollback
            log.warning("spinal: %s", record.message)
            self._to_sink(lambda s: s.write_text("spinal/rollbacks", record.message, step))
            self.record({"type": "rollback", "step": step, **record.to_dict()})
        failure = outcome.failure  # the guard has already warned and logged it
        if failure:
            self._to_sink(lambda s: s.write_text("spinal/rollbacks", failure, step))
            self._to_sink(lambda s: s.write_scalars(step, {"spinal/rollback/failures": float(guard.failures)}))
        if outcome.alerts or outcome.rollback is not None:
            rollbacks = guard.rollback.rollbacks if guard.rollback is not None else 0
            self._to_sink(
                lambda s: s.write_scalars(
                    step,
                    {
                        "spinal/alerts/total": float(guard.alerts_total),
                        "spinal/rollbacks/total": float(rollbacks),
                    },
                )
            )
        if outcome.stop and outcome.message:
            log.warning("%s", outcome.message)
            self._to_sink(lambda s: s.write_text("spinal/alerts", outcome.message, step))
        scalars = {**self._deferred.pop(step, {}), **guard.scores()}
        rolled_back = int(outcome.rollback is not None)
        self._to_sink(lambda s: s.write_events(step, alerts=len(outcome.alerts), rollbacks=rolled_back,
                                               scalars=scalars))
        self._to_sink(lambda s: s.write_pending_images())

    # -- plumbing --------------------------------------------------------------------------------
    def record(self, record: dict[str, Any]) -> None:
        """One trace-file record."""
        writer = self.trace_writer
        if writer is not None:
            self._guarded(lambda: writer.write(record))

    def _to_sink(self, fn: Callable[[TensorBoardSink], Any]) -> None:
        sink = self.sink
        if sink is not None:
            self._guarded(lambda: fn(sink))

    def _guarded(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as exc:
            if self.strict:
                raise
            message = f"spinal: writing monitor output failed ({type(exc).__name__}: {exc}); training goes on"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)

    def close(self) -> None:
        """Write any deferred reading scalars, flush and close the sinks (idempotent)."""
        deferred, self._deferred = self._deferred, {}
        for step, scalars in deferred.items():
            self._to_sink(lambda s, step=step, scalars=scalars: s.write_scalars(step, scalars))  # type: ignore[misc]
        sink, self.sink = self.sink, None
        writer, self.trace_writer = self.trace_writer, None
        if sink is not None:
            self._guarded(sink.flush)
            self._guarded(sink.close)
        if writer is not None:
            self._guarded(writer.close)


def alert_markdown(alert: Alert) -> str:
    """The TensorBoard text of one alert."""
    layers = ", ".join(str(x) for x in alert.layers) or "-"
    return (
        f"**{alert.reason.value}** on `{alert.signal}` at step {alert.step} (onset ≈ step {alert.onset_step}; "
        f"layers {layers}): value {alert.value:.4g} vs baseline {alert.baseline:.4g}, score {alert.score:.3g}.\n\n"
        f"{alert.message}"
    )


def _config_rows(prefix: str, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            rows += _config_rows(f"{prefix}{key}.", value)
        else:
            rows.append((f"{prefix}{key}", str(value)))
    return rows


def config_markdown(cfg: SpinalConfig, layout: DecoderLayout, num_pairs: int) -> str:
    """The ``spinal/config`` text: the monitored model, then every configuration field as ``name  value`` lines
    in a code block (nested settings as ``detector.window``): TensorBoard shows a code block unwrapped, where a
    wide table would be wrapped in the middle of words."""
    rows = _config_rows("", {k: v for k, v in cfg.to_dict().items() if k != "probe_pairs"})
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(
        [
            f"**spinal-callback** monitoring `{type(layout.model).__name__}` ({layout.architecture}, "
            f"{layout.num_layers} blocks, vocabulary {layout.vocab_size}) on {num_pairs} probe pairs.",
            "",
            "```",
            *(f"{name.ljust(width)}  {value}" for name, value in rows),
            "```",
        ]
    )
