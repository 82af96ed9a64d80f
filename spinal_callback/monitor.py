"""``SpinalMonitor``: the framework-neutral orchestrator both callbacks delegate to.

It owns the probe schedule, the fixed probe set, the depth-trace computation and the sinks. The
adapters (``integrations/lightning.py``, ``integrations/transformers.py``) only translate hook
arguments into :meth:`SpinalMonitor.setup`, :meth:`SpinalMonitor.on_step`,
:meth:`SpinalMonitor.observe_metrics` and :meth:`SpinalMonitor.close` calls.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .architectures import DecoderLayout, resolve_layout
from .config import SpinalConfig
from .detector import EarlyWarningDetector, signals_from_bands
from .geometry.trace import DepthTrace, capture_hidden, trace_from_hidden
from .guard import AlertGuard, GuardOutcome, Sync, TrainingHandles
from .probe_set import collate_pairs, pairs_from_records, tokenize_pairs
from .rollback import RollbackManager

if TYPE_CHECKING:
    from .sinks.jsonl import TraceWriter
    from .sinks.tensorboard import TensorBoardSink

__all__ = ["ProbeError", "SpinalMonitor", "TrainingHandles"]

log = logging.getLogger("spinal_callback")

TRACE_FILENAME = "spinal_trace.jsonl"
_STATE_VERSION = 1


class ProbeError(RuntimeError):
    """A probe pass produced no usable measurement (e.g. non-finite activations)."""

    def __init__(self, message: str, non_finite: bool = False) -> None:
        super().__init__(message)
        self.non_finite = non_finite


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


class SpinalMonitor:
    """Probe schedule, fixed probe set, depth traces and sinks — no training framework inside.

    Typical use by an adapter::

        monitor = SpinalMonitor(config)
        monitor.setup(policy, records=train_dataset, tokenizer=tok, sink=sink, trace_writer=writer)
        monitor.on_step(0, policy, handles)               # baseline probe (and snapshot)
        ...                                               # after every optimizer step:
        outcome = monitor.on_step(global_step, policy, handles, sync, reference)
        if outcome is not None and outcome.stop: ...      # the trainer stops
        monitor.close()

    Attributes:
        config: the :class:`SpinalConfig`.
        layout: the resolved decoder layout of the policy (after :meth:`setup`).
        probe_batch: the tokenized probe set in TRL's ``(2K, T)`` layout (after :meth:`setup`).
        last_trace: the most recent :class:`DepthTrace`, or ``None``.
        probes_done / failures / last_probe_step: counters, saved by :meth:`state_dict`.
    """

    def __init__(self, config: SpinalConfig | None = None) -> None:
        if config is None:
            config = SpinalConfig()
        if not isinstance(config, SpinalConfig):
            raise TypeError(f"`config` must be a SpinalConfig, got {type(config).__name__}")
        self.config = config
        self.layout: DecoderLayout | None = None
        self.probe_batch: dict[str, torch.Tensor] | None = None
        self.sink: TensorBoardSink | None = None
        self.trace_writer: TraceWriter | None = None
        self.last_trace: DepthTrace | None = None
        self.probes_done = 0
        self.failures = 0
        self.last_probe_step = -1
        self.last_probe_seconds = math.nan
        self._non_finite_at: int | None = None
        self.last_patch_step = 0
        self.patch_failures = 0
        self.last_patch: Any = None
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
    ) -> None:
        """Resolve the policy's layout and build the probe set. Misconfiguration raises here.

        Args:
            policy: the model being trained (wrappers allowed).
            records: the training data (first ``num_probe_pairs`` records are used) when the config
                has no explicit ``probe_pairs``.
            tokenizer: tokenizes text pairs.
            sink: TensorBoard output (rank zero only; ``None`` elsewhere).
            trace_writer: JSON-lines output (rank zero only; ``None`` elsewhere).
            reference: the reference model, checked here when patching probes are on (``None`` is
                fine for a PEFT policy: its adapter-disabled base is the reference).
            rank_zero: whether this process is global rank 0. Other ranks keep their rollback
                snapshots in memory even with ``storage="disk"``: only rank 0 writes files.

        Raises:
            UnsupportedArchitectureError: the policy's architecture is not registered.
            ValueError: no usable probe pair.
        """
        self.layout = resolve_layout(policy)
        cfg = self.config
        if not rank_zero and self.guard.rollback is not None and cfg.rollback.storage == "disk":
            self.guard.rollback = RollbackManager(replace(cfg.rollback, storage="memory", snapshot_dir=None))
        if cfg.probe_pairs is not None:
            pairs = tokenize_pairs(cfg.probe_pairs, tokenizer)
        elif records is not None:
            pairs = pairs_from_records(records, cfg.num_probe_pairs, tokenizer)
        else:
            raise ValueError(
                "No probe data: give SpinalConfig(probe_pairs=[...]) or train on a dataset of "
                "prompt/chosen/rejected records the callback can read"
            )
        self.probe_batch = collate_pairs(pairs, pad_token_id=_pad_id(tokenizer), max_length=cfg.max_length)
        if cfg.patch_interval > 0:
            self._check_reference(policy, reference)
        self.sink = sink
        self.trace_writer = trace_writer
        if sink is not None:
            sink.write_text("spinal/config", _config_markdown(cfg, self.layout, len(pairs)), 0)

    # -- schedule --------------------------------------------------------------------------------
    def should_probe(self, step: int) -> bool:
        """True at step 0 (if ``probe_at_start``) and at every multiple of ``interval``, once each."""
        if step <= self.last_probe_step:
            return False
        if step == 0:
            return self.config.probe_at_start
        return step % self.config.interval == 0

    def should_patch(self, step: int) -> bool:
        """True at every positive multiple of ``patch_interval`` (once each); never when it is 0."""
        interval = self.config.patch_interval
        return interval > 0 and step > self.last_patch_step and step % interval == 0

    def patch(self, step: int, policy: nn.Module, reference: nn.Module | None) -> Any:
        """Run the patching probe now; failures become a warning and ``spinal/patch/failures``."""
        from .patching_probe import PatchingSettings, run_patching_probe

        if self.probe_batch is None:
            raise RuntimeError("SpinalMonitor.patch() called before setup()")
        self.last_patch_step = step
        cfg = self.config
        settings = PatchingSettings(
            directions=cfg.patch_directions, low_rank_layers=cfg.patch_low_rank_layers, ranks=cfg.patch_ranks,
            lasso=cfg.patch_lasso, attribution=cfg.patch_attribution,
        )
        started = time.perf_counter()
        try:
            outcome = run_patching_probe(policy, reference, self.probe_batch, settings)
        except Exception as exc:
            if cfg.strict:
                raise
            self.patch_failures += 1
            self._report_failure("patching probe", step, exc, self.patch_failures, "spinal/patch/failures")
            return None
        seconds = time.perf_counter() - started
        self.last_patch = outcome
        scalars = {**outcome.scalars, "spinal/patch/seconds": seconds,
                   "spinal/patch/failures": float(self.patch_failures)}
        self._safe_write(lambda s: s.write_scalars(step, scalars))
        if outcome.normalized_effect:
            self._safe_write(lambda s: s.write_heatmap(
                "spinal/heatmap/patch_normalized_effect", step, outcome.normalized_effect))
        for note in outcome.notes:
            log.info("spinal: %s", note)
        self._record({"type": "patch", "step": step, **outcome.record})
        return outcome

    def _check_reference(self, policy: nn.Module, reference: nn.Module | None) -> None:
        from .architectures import unwrap_parallel

        needs = [("sklearn", "patch_lasso")] if self.config.patch_lasso else []
        needs += [("scipy", "patch_attribution")] if self.config.patch_attribution else []
        for module, flag in needs:
            try:
                __import__(module)
            except ImportError:
                raise ImportError(
                    f"{flag}=True needs {module}: pip install \"spinal-callback[probes]\" (or set {flag}=False)"
                ) from None

        if reference is None and not callable(getattr(unwrap_parallel(policy), "disable_adapter", None)):
            raise ValueError(
                f"patch_interval={self.config.patch_interval} needs a reference model: give the trainer a "
                "ref_model and the callback the trainer (SpinalTrainerCallback(..., trainer=trainer) or "
                ".set_trainer(trainer)), pass reference= to the callback, give the LightningModule a "
                "`reference` attribute, or train a PEFT policy (its adapter-disabled base is the reference)"
            )
        if reference is not None:
            ref_layout = resolve_layout(reference)
            assert self.layout is not None
            if (ref_layout.num_layers, ref_layout.vocab_size) != (self.layout.num_layers, self.layout.vocab_size):
                raise ValueError(
                    f"Policy and reference differ: {self.layout.num_layers} blocks / vocabulary "
                    f"{self.layout.vocab_size} vs {ref_layout.num_layers} blocks / vocabulary "
                    f"{ref_layout.vocab_size}; patching needs the same architecture"
                )

    def observe_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Remember the latest training metrics (e.g. TRL's ``rewards/chosen``) for the detector."""
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
        sync: Sync | None = None,
        reference: nn.Module | None = None,
    ) -> GuardOutcome | None:
        """Everything due after optimizer step ``step``: probe, early warning, snapshot, actions.

        Off the probe and snapshot schedule this returns ``None`` at once (no hook, no forward, no
        collective). ``sync`` broadcasts rank 0's decision to every rank (identity on one process).

        Returns:
            What the guard did, or ``None`` when nothing was due. The adapter stops training when
            ``outcome.stop``.
        """
        probe_due = self.should_probe(step)
        patch_due = self.should_patch(step)
        if patch_due:
            self.patch(step, policy, reference)
        if not (probe_due or self.guard.wants_snapshot(step)):
            return None
        signals: dict[str, float] = {}
        layers: dict[str, tuple[int, ...]] = {}
        if probe_due:
            self._non_finite_at = None
            trace = self.probe(step, policy)
            if trace is not None:
                signals, layers = signals_from_bands(trace.bands)
                signals.update(self._metrics)
            elif self._non_finite_at == step and self.last_trace is not None:
                geometry, layers = signals_from_bands(self.last_trace.bands)
                signals = {name: math.nan for name in geometry}
        decision = self.guard.decide(step, signals, layers)
        if sync is not None:
            decision = sync(decision)
        outcome = self.guard.act(step, decision, handles)
        self._report(step, outcome)
        return outcome

    def _report(self, step: int, outcome: GuardOutcome) -> None:
        for alert in outcome.alerts:
            if "log" in self.config.on_alert:
                log.warning("spinal alert at step %d: %s", step, alert.message)
            self._safe_write(lambda s, a=alert: s.write_text("spinal/alerts", _alert_markdown(a), step))
            self._record({"type": "alert", "step": step, **alert.to_dict()})
        if outcome.rollback is not None:
            record = outcome.rollback
            log.warning("spinal: %s", record.message)
            self._safe_write(lambda s: s.write_text("spinal/rollbacks", record.message, step))
            self._record({"type": "rollback", "step": step, **record.to_dict()})
        if outcome.alerts or outcome.rollback is not None:
            rollbacks = self.guard.rollback.rollbacks if self.guard.rollback is not None else 0
            self._safe_write(lambda s: s.write_scalars(step, {
                "spinal/alerts/total": float(self.guard.alerts_total),
                "spinal/rollbacks/total": float(rollbacks),
            }))
        scores = self.guard.scores()
        if scores:
            self._safe_write(lambda s: s.write_scalars(step, scores))
        if outcome.stop and outcome.message:
            log.warning("%s", outcome.message)
            self._safe_write(lambda s: s.write_text("spinal/alerts", outcome.message, step))

    def _record(self, record: dict[str, Any]) -> None:
        if self.trace_writer is not None:
            self._guarded(lambda: self.trace_writer.write(record))  # type: ignore[union-attr]

    # -- the probe -------------------------------------------------------------------------------
    def probe(self, step: int, policy: nn.Module) -> DepthTrace | None:
        """Run one geometry probe now and write it to the sinks.

        A failure (non-finite activations, out of memory, …) becomes a ``RuntimeWarning``, a logged
        warning and an increment of ``spinal/probe/failures`` — unless ``config.strict``.
        """
        if self.layout is None or self.probe_batch is None:
            raise RuntimeError("SpinalMonitor.probe() called before setup()")
        self.last_probe_step = step
        started = time.perf_counter()
        try:
            trace = self._measure(policy)
        except Exception as exc:
            if self.config.strict:
                raise
            if isinstance(exc, ProbeError) and exc.non_finite:
                self._non_finite_at = step
            self.failures += 1
            self._report_failure("geometry probe", step, exc, self.failures, "spinal/probe/failures")
            return None
        self.last_probe_seconds = time.perf_counter() - started
        self.probes_done += 1
        self.last_trace = trace
        self._safe_write(lambda s: s.write_trace(step, trace))
        self._safe_write(
            lambda s: s.write_scalars(
                step,
                {"spinal/probe/seconds": self.last_probe_seconds, "spinal/probe/failures": float(self.failures)},
            )
        )
        from .sinks.jsonl import trace_record

        self._record(trace_record(step, trace))
        return trace

    def _measure(self, policy: nn.Module) -> DepthTrace:
        assert self.layout is not None and self.probe_batch is not None
        cfg = self.config
        hidden = capture_hidden(
            policy,
            self.probe_batch["input_ids"],
            self.probe_batch["attention_mask"],
            self.probe_batch["completion_mask"],
            layout=self.layout,
            max_tokens=cfg.max_tokens,
            seed=cfg.seed,
        )
        bad = [i + 1 for i, h in enumerate(hidden) if not bool(torch.isfinite(h).all())]
        if bad:
            raise ProbeError(f"non-finite activations (NaN/inf) at layers {bad}", non_finite=True)
        return trace_from_hidden(
            hidden, self.layout, tail=cfg.tail, rtol=cfg.rtol, bands=cfg.bands, chunk_size=cfg.chunk_size
        )

    def _report_failure(self, what: str, step: int, exc: Exception, count: int, tag: str) -> None:
        """A failed probe: a RuntimeWarning, a logged warning, the failure counter ``tag``; CUDA cache freed
        after an out-of-memory error."""
        message = (
            f"spinal: {what} at step {step} failed ({type(exc).__name__}: {exc}); training goes on "
            f"({count} failure(s) so far). Set SpinalConfig(strict=True) to raise instead."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)
        if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._safe_write(lambda s: s.write_scalars(step, {tag: float(count)}))

    def _safe_write(self, fn: Any) -> None:
        if self.sink is not None:
            self._guarded(lambda: fn(self.sink))

    def _guarded(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:
            if self.config.strict:
                raise
            message = f"spinal: writing monitor output failed ({type(exc).__name__}: {exc}); training goes on"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state: counters and the last probe step."""
        return {
            "version": _STATE_VERSION,
            "probes_done": self.probes_done,
            "failures": self.failures,
            "last_probe_step": self.last_probe_step,
            "last_patch_step": self.last_patch_step,
            "patch_failures": self.patch_failures,
            "config_fingerprint": self.config.fingerprint(),
            "guard": self.guard.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; unknown keys are ignored, missing ones keep defaults."""
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
        self.last_probe_step = int(state.get("last_probe_step", self.last_probe_step))
        self.last_patch_step = int(state.get("last_patch_step", self.last_patch_step))
        self.patch_failures = int(state.get("patch_failures", self.patch_failures))
        if state.get("guard"):
            self.guard.load_state_dict(state["guard"])

    def close(self) -> None:
        """Flush and close the sinks (idempotent)."""
        sink, self.sink = self.sink, None
        writer, self.trace_writer = self.trace_writer, None
        if sink is not None:
            self._guarded(sink.flush)
            self._guarded(sink.close)
        if writer is not None:
            self._guarded(writer.close)


def _alert_markdown(alert: Any) -> str:
    layers = ", ".join(str(x) for x in alert.layers) or "-"
    return (
        f"**{alert.reason.value}** on `{alert.signal}` at step {alert.step} (onset ≈ step {alert.onset_step}; "
        f"layers {layers}): value {alert.value:.4g} vs baseline {alert.baseline:.4g}, score {alert.score:.3g}.\n\n"
        f"{alert.message}"
    )


def _config_markdown(cfg: SpinalConfig, layout: DecoderLayout, num_pairs: int) -> str:
    lines = [
        f"**spinal-callback** monitoring `{type(layout.model).__name__}` ({layout.architecture}, "
        f"{layout.num_layers} blocks, vocabulary {layout.vocab_size}) on {num_pairs} probe pairs.",
        "",
        "| field | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | `{v}` |" for k, v in cfg.to_dict().items() if k != "probe_pairs"]
    return "\n".join(lines)


def default_trace_path(config: SpinalConfig, tensorboard_dir: str) -> str:
    """``config.trace_path`` or ``<tensorboard_dir>/spinal_trace.jsonl``."""
    return config.trace_path or os.path.join(tensorboard_dir, TRACE_FILENAME)
