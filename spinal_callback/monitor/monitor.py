"""``SpinalMonitor``: the framework-neutral core both callbacks drive, one optimizer step at a time.

Per step it asks the :class:`~spinal_callback.monitor.schedule.ProbeSchedule` what is due, runs the
probes (:mod:`~spinal_callback.monitor.probing`, typed results), feeds the detector through the
alert pipeline (:class:`~spinal_callback.recovery.guard.AlertGuard`: detector → actions → snapshot /
rollback, its own failure boundary) and hands every result to
:class:`~spinal_callback.monitor.outputs.MonitorOutputs`. The adapters reach it through
:class:`~spinal_callback.monitor.session.MonitorSession`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.early_warning import EarlyWarningDetector
from spinal_callback.geometry.trace import DepthTrace
from spinal_callback.model.architectures import DecoderLayout, resolve_layout
from spinal_callback.model.sharding_rules import check_sharded_config
from spinal_callback.monitor.outputs import MonitorOutputs
from spinal_callback.monitor.probe_set import ProbeSet, check_reference, tier_layers
from spinal_callback.monitor.probing import GeometryResult, Measurement, PatchingResult, attempt, measure_geometry
from spinal_callback.monitor.schedule import ProbeSchedule
from spinal_callback.monitor.signals import DetectorInputs, check_detector_inputs
from spinal_callback.monitor.update_size import UpdateSampler
from spinal_callback.recovery.guard import AlertGuard, GuardOutcome, TrainingHandles
from spinal_callback.recovery.rollback import RollbackManager
from spinal_callback.recovery.sync import LocalSync, RankSync

if TYPE_CHECKING:
    from spinal_callback.sinks.jsonl import TraceWriter
    from spinal_callback.sinks.tensorboard import TensorBoardSink

__all__ = ["SpinalMonitor", "TrainingHandles"]

log = logging.getLogger("spinal_callback")

_STATE_VERSION = 1


class SpinalMonitor:
    """Probe schedule, fixed probe set, probes, alert pipeline and outputs — no training framework inside.

    Use: ``setup(policy, ...)`` once, then ``on_step(step, policy, handles, sync, reference)`` after each
    optimizer step where :meth:`due` (the trainer stops when ``outcome.stop``), ``close()`` at the end; the
    adapters do this through a :class:`~spinal_callback.monitor.session.MonitorSession`.

    Attributes:
        config: the :class:`SpinalConfig`.
        layout: the resolved decoder layout of the policy (after :meth:`setup`).
        probe_batch: the tokenized probe set in TRL's ``(2K, T)`` layout (after :meth:`setup`).
        schedule: which probes are due when.
        guard: the alert pipeline (detector, actions, rollback).
        outputs: TensorBoard and trace-file writing (rank 0).
        last_trace / last_patch: the latest depth trace and patching outcome, or ``None``.
        probes_done / failures / patch_failures: counters, saved by :meth:`state_dict`.
    """

    def __init__(self, config: SpinalConfig | None = None) -> None:
        if config is None:
            config = SpinalConfig()
        if not isinstance(config, SpinalConfig):
            raise TypeError(f"`config` must be a SpinalConfig, got {type(config).__name__}")
        self.config = config
        self.layout: DecoderLayout | None = None
        self.probe_set: ProbeSet | None = None
        self._restored_probe_set: Mapping[str, Any] = {}
        self._tier_layers: list[int] | None = None
        self._updates: UpdateSampler | None = None
        self.schedule = ProbeSchedule(config.interval, config.patch_interval, config.probe_at_start,
                                      config.reading_interval)
        self.outputs = MonitorOutputs(strict=config.strict)
        self.last_trace: DepthTrace | None = None
        self.last_patch: Any = None
        self.last_probe_seconds = math.nan
        self.probes_done = 0
        self.failures = 0
        self.patch_failures = 0
        self._metrics: dict[str, float] = {}
        needs_rollback = "rollback" in config.on_alert
        self.guard = AlertGuard(
            EarlyWarningDetector(config.detector),
            config.on_alert,
            RollbackManager(config.rollback) if needs_rollback else None,
            strict=config.strict,
        )

    # -- setup -----------------------------------------------------------------------------------
    def setup(
        self,
        policy: nn.Module,
        *,
        records: Iterable[Mapping[str, Any]] | None = None,
        tokenizer: Any = None,
        sink: TensorBoardSink | None = None,
        trace_writer: TraceWriter | None = None,
        rank_zero: bool = True,
        reference: nn.Module | None = None,
        metric_names: Collection[str] | None = None,
    ) -> None:
        """Resolve the policy's layout, check the detector's signal names, build the probe set and score it
        with the reference. Misconfiguration raises here.

        Args:
            policy: the model being trained (wrappers allowed).
            records: the training data (first ``num_probe_pairs`` records are used) when the config
                has no explicit ``probe_pairs``.
            tokenizer: tokenizes text pairs.
            sink: TensorBoard output (rank zero only; ``None`` elsewhere).
            trace_writer: JSON-lines output (rank zero only; ``None`` elsewhere).
            rank_zero: whether this process is global rank 0. Other ranks keep their rollback
                snapshots in memory even with ``storage="disk"``: only rank 0 writes files.
            reference: scores the probe pairs once (``pairs/logratio_*``; ``None``: a PEFT policy's
                adapter-disabled base, else the first probe); checked when patching probes are on.
            metric_names: the trainer's metric names the detector may watch (``None``: not known before
                training logs them; names outside the monitor's own name spaces are then taken on trust).

        Raises:
            UnsupportedArchitectureError: the policy's architecture is not registered.
            ValueError: a detector signal name that no input can produce (the message lists the available
                ones), no usable probe pair, patching probes without a usable reference, rollback on a
                sharded (FSDP, ZeRO-3) model, or patching on a ZeRO-3 model.
        """
        cfg = self.config
        check_detector_inputs(cfg.detector, metric_names)
        check_sharded_config(policy, rollback=self.guard.rollback is not None, patching=cfg.patch_interval > 0)
        self.layout = resolve_layout(policy)
        if not rank_zero and self.guard.rollback is not None and cfg.rollback.storage == "disk":
            self.guard.rollback = RollbackManager(replace(cfg.rollback, storage="memory", snapshot_dir=None))
        probe_set = ProbeSet.build(cfg, records, tokenizer)
        if cfg.patch_interval > 0:
            check_reference(cfg, self.layout, policy, reference)
        probe_set.measure_reference(policy, reference)
        probe_set.load_state_dict(self._restored_probe_set)
        self.probe_set = probe_set
        self._tier_layers = tier_layers(cfg, self.layout.num_layers)
        self.outputs = MonitorOutputs(sink, trace_writer, strict=cfg.strict)
        self.outputs.config(cfg, self.layout, probe_set.num_pairs)

    @property
    def probe_batch(self) -> dict[str, torch.Tensor] | None:
        """The tokenized probe set in TRL's ``(2K, T)`` layout (after :meth:`setup`)."""
        return self.probe_set.batch if self.probe_set is not None else None

    # -- one step --------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether anything — a reading, a probe, a patching probe, a snapshot — is due at ``step``. Pure and
        cheap: the adapters call it first, so steps off the schedule cost nothing."""
        schedule = self.schedule
        return (schedule.reading_due(step) or schedule.probe_due(step) or schedule.patch_due(step)
                or self.guard.wants_snapshot(step))

    def observe_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Remember training metrics (e.g. TRL's ``rewards/chosen``) for the detector.

        The detector sees each logged value once, at the next reading: a trainer that logs every 10 steps
        while the monitor reads every 2 feeds its metrics at every 5th reading, never the same value twice
        (a repeated value would look like a flat trend)."""
        for key, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._metrics[key.removeprefix("train/")] = float(value)

    def on_step(
        self,
        step: int,
        policy: nn.Module,
        handles: TrainingHandles | None = None,
        sync: RankSync | None = None,
        reference: nn.Module | None = None,
    ) -> GuardOutcome | None:
        """Everything due after optimizer step ``step``: readings, probes, early warning, snapshot, actions.

        Off the schedule this returns ``None`` at once (no hook, no forward, no collective). ``sync``
        hands rank 0's decision to every rank and lets the ranks agree on whether a snapshot or restore
        worked (default: one process).

        Returns:
            What the guard did, or ``None`` when nothing was due. The adapter stops training when
            ``outcome.stop``.
        """
        probe_due = self.schedule.probe_due(step)
        reading_due = probe_due or self.schedule.reading_due(step)
        if self.schedule.patch_due(step):
            self.patch(step, policy, reference)
        if not (reading_due or self.guard.wants_snapshot(step)):
            return None
        inputs = DetectorInputs()
        if reading_due:  # probe() and read() mark the step read
            if probe_due:
                inputs = DetectorInputs.of(self.probe(step, policy), self.last_trace, self._metrics)
            else:
                inputs = DetectorInputs({**self.read(step, policy, defer_scalars=True), **self._metrics})
            self._metrics = {}  # each logged value is fed once
        return self._guard(step, inputs, handles, sync)

    def on_log(self, step: int, handles: TrainingHandles | None = None,
               sync: RankSync | None = None) -> GuardOutcome | None:
        """With ``config.read_every_log``: feed the metrics logged at ``step`` that no reading took to the detector
        now, an observation of their own (a metrics-only ``"signals"`` record; no forward, no gather). Call it after
        the step's reading, if any, has run. ``None`` when there is nothing to feed: the option is off, nothing was
        logged since the last observation, or nothing logged is a signal the detector watches (an evaluation log)."""
        metrics = self._metrics
        if not self.config.read_every_log or not any(map(self.guard.detector.watches, metrics)):
            return None
        self._metrics = {}
        self.outputs.reading(step, {}, metrics)
        return self._guard(step, DetectorInputs(metrics), handles, sync)

    def _guard(self, step: int, inputs: DetectorInputs, handles: TrainingHandles | None,
               sync: RankSync | None) -> GuardOutcome:
        """Decide on rank 0, hand the decision to every rank, act on it, write the outcome."""
        sync = sync or LocalSync()
        decision = sync.broadcast(self.guard.decide(step, *inputs.astuple()))
        outcome = self.guard.act(step, decision, handles, sync)
        if outcome.rollback is not None and self._updates is not None:
            self._updates.reset()  # the weights were restored: the next reading is a new baseline
        self.outputs.guard_outcome(step, outcome, self.guard, log_alerts="log" in self.config.on_alert)
        return outcome

    def read(self, step: int, policy: nn.Module, *, defer_scalars: bool = False) -> dict[str, float]:
        """Read the signals that need no forward now (``update/size``, ``update/turn``) and write them out with
        the trainer metrics the detector sees at this step; returns the update signals. ``defer_scalars``: their
        TensorBoard scalars go out with the step's guard outcome (as :meth:`on_step` does)."""
        self.schedule.last_reading_step = max(self.schedule.last_reading_step, step)
        signals = self._update_size(step, policy)
        self.outputs.reading(step, signals, self._metrics, defer_scalars=defer_scalars)
        return signals

    def probe(self, step: int, policy: nn.Module) -> GeometryResult:
        """Run one geometry probe now and write it out.

        A failure (non-finite activations, out of memory, …) becomes a ``RuntimeWarning``, a logged
        warning and an increment of ``spinal/probe/failures`` — unless ``config.strict``.
        """
        if self.layout is None or self.probe_set is None:
            raise RuntimeError("SpinalMonitor.probe() called before setup()")
        probe_set = self.probe_set
        self.schedule.last_probe_step = step
        self.schedule.last_reading_step = max(self.schedule.last_reading_step, step)
        signals = self._update_size(step, policy)
        measured, failure, seconds = attempt(
            "geometry probe", step, lambda: self._measure(policy), self.config.strict
        )
        if failure is not None:
            self.failures += 1
            self.outputs.failure(failure, self.failures, "spinal/probe/failures")
            self.outputs.reading(step, signals, self._metrics)  # what the detector still reads at this step
            return GeometryResult(step, None, failure, seconds, signals)
        noise: dict[str, float] = {}
        if measured.readout is not None:
            head, noise = probe_set.signals(measured.readout)
            signals.update(head)
        result = GeometryResult(step, measured.trace, None, seconds, signals, noise)
        self.last_probe_seconds = seconds
        self.probes_done += 1
        self.last_trace = measured.trace
        self.outputs.geometry(result, self.failures, self._metrics)
        return result

    def _update_size(self, step: int, policy: nn.Module) -> dict[str, float]:
        """``{"update/size": …, "update/turn": …}`` since the previous probe
        (:mod:`~spinal_callback.monitor.update_size`), each left out when it is off or cannot be read yet; a failure
        is a warning (``spinal/probe/failures``)."""
        coordinates = self.config.update_coordinates
        if coordinates == 0:
            return {}

        def read() -> dict[str, float]:
            if self._updates is None:  # at the first probe: the trainer has wrapped (and sharded) the model
                self._updates = UpdateSampler(policy, coordinates, seed=self.config.seed)
            return self._updates.measure(step)

        readings, failure, _ = attempt("update size", step, read, self.config.strict)
        if failure is not None:
            self.failures += 1
            self.outputs.failure(failure, self.failures, "spinal/probe/failures")
        return readings or {}

    def _measure(self, policy: nn.Module) -> Measurement:
        assert self.layout is not None and self.probe_set is not None
        step, every = self.schedule.last_probe_step, self.config.trace_interval
        layers = None if every == 0 or step % every == 0 else self._tier_layers
        return measure_geometry(policy, self.layout, self.probe_set.batch, self.config, self.probe_set.positions,
                                compute_layers=layers)

    def patch(self, step: int, policy: nn.Module, reference: nn.Module | None) -> PatchingResult:
        """Run the patching probe now; a failure becomes a warning and ``spinal/patch/failures``."""
        from spinal_callback.probes.protocol import run_patching_probe

        if self.probe_set is None:
            raise RuntimeError("SpinalMonitor.patch() called before setup()")
        batch = self.probe_set.batch
        self.schedule.last_patch_step = step
        outcome, failure, seconds = attempt(
            "patching probe", step, lambda: run_patching_probe(policy, reference, batch, self.config),
            self.config.strict,
        )
        result = PatchingResult(step, outcome, failure, seconds)
        if failure is not None:
            self.patch_failures += 1
            self.outputs.failure(failure, self.patch_failures, "spinal/patch/failures")
            return result
        self.last_patch = outcome
        self.outputs.patching(result, self.patch_failures)
        return result

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state: counters, the schedule and the alert pipeline."""
        return {
            "version": _STATE_VERSION,
            "probes_done": self.probes_done,
            "failures": self.failures,
            **self.schedule.state_dict(),
            "patch_failures": self.patch_failures,
            "config_fingerprint": self.config.fingerprint(),
            "guard": self.guard.state_dict(),
            "probe_set": self.probe_set.state_dict() if self.probe_set is not None else dict(self._restored_probe_set),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; unknown keys are ignored, missing ones keep defaults."""
        import warnings

        fingerprint = state.get("config_fingerprint")
        if fingerprint is not None and fingerprint != self.config.fingerprint():
            warnings.warn(
                "spinal: restoring monitor state saved with a different SpinalConfig (probe settings changed); "
                "counters are restored, but traces before and after the resume are not comparable.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.probes_done = int(state.get("probes_done", self.probes_done))
        self.failures = int(state.get("failures", self.failures))
        self.patch_failures = int(state.get("patch_failures", self.patch_failures))
        self.schedule.load_state_dict(state)
        self._restored_probe_set = dict(state.get("probe_set") or {})
        if self.probe_set is not None:
            self.probe_set.load_state_dict(self._restored_probe_set)
        if state.get("guard"):
            self.guard.load_state_dict(state["guard"])

    def close(self) -> None:
        """Flush and close the outputs (idempotent)."""
        self.outputs.close()
