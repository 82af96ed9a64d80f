"""``SpinalTrainerCallback``: the geometry monitor for ``transformers.Trainer`` / TRL's ``DPOTrainer`` —
callback events translated into session calls."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from spinal_callback.config import SpinalConfig
from spinal_callback.config.signals import DPO_METRICS
from spinal_callback.early_warning.names import NameResolver
from spinal_callback.integrations._common import LOGGED_TAGS
from spinal_callback.integrations._transformers_support import (
    ScalarForwarder,
    scalar_forwarder,
    tensorboard_callback_dir,
    tensorboard_dir,
)
from spinal_callback.monitor.session import MonitorSession, dataset_of, portable_config
from spinal_callback.recovery.guard import TrainingHandles
from spinal_callback.recovery.sync import TorchDistributedSync

__all__ = ["SpinalTrainerCallback", "sparse_logging_advice", "tensorboard_callback_dir"]

log = logging.getLogger("spinal_callback")

#: What transformers' Trainer and TRL's DPOTrainer log, as the detector may watch it.
TRAINER_METRICS = (*DPO_METRICS, "epoch", "entropy", "num_tokens", "mean_token_accuracy")


def sparse_logging_advice(logging_steps: Any, config: SpinalConfig, first_step: bool = False) -> str | None:
    """What a trainer that logs every ``logging_steps`` > 1 steps costs the early warning, or ``None``: the detector
    counts the trainer's metrics in logs (its warm-up too), and every lead in ``docs/evidence.md`` was measured with
    a log at every step. ``first_step``: the trainer also logs step 1 (``logging_first_step``). ``None`` as well when
    the detector watches none of the trainer's metrics."""
    if isinstance(logging_steps, float) and logging_steps.is_integer():
        logging_steps = int(logging_steps)  # TrainingArguments types it a float (a fraction of the run when < 1)
    if not isinstance(logging_steps, int) or isinstance(logging_steps, bool) or logging_steps <= 1:
        return None
    detector = config.detector
    tested = [NameResolver(names) for names in (detector.signals, detector.update_signals, detector.turn_signals)]
    watched = [name for name in TRAINER_METRICS if any(resolve(name) is not None for resolve in tested)]
    if not watched:
        return None
    # a test arms at the signal's (warmup + 1)-th observation; with a log at step 1 the rest come every logging_steps
    arms = detector.warmup * logging_steps if first_step else (detector.warmup + 1) * logging_steps
    return (f"spinal: the trainer logs every {logging_steps} steps (logging_steps={logging_steps}): the early-warning "
            f"tests on its metrics ({', '.join(watched)}) count logs, so they arm only after {detector.warmup + 1} "
            f"logs (step {arms} from the start of training), and each of TRL's values is a {logging_steps}-step mean. "
            "Every lead in docs/evidence.md was measured with logging_steps=1; set it for that early warning. "
            "update/size and update/turn do not depend on logging.")


class SpinalTrainerCallback(TrainerCallback, ExportableState):
    """Live layer-geometry monitoring for ``transformers.Trainer`` / ``trl.DPOTrainer``.

    Add it in one line::

        trainer = DPOTrainer(..., callbacks=[SpinalTrainerCallback(SpinalConfig(interval=50))])

    Every ``config.interval`` optimizer steps (and at step 0) it runs one no-grad, eval-mode
    forward of the policy on a fixed probe set — the first ``num_probe_pairs`` pairs of the training
    data, or ``config.probe_pairs`` tokenized with the trainer's ``processing_class`` — and logs the
    SPINAL depth trace. Off the probe steps it attaches nothing and costs nothing.

    Output follows ``report_to``: with ``"tensorboard"`` the events go into HF's own run directory
    (found through the trainer when the callback has it, else as the run directory this process's HF
    writer just opened under ``<output_dir>/runs``); without it TensorBoard is written only into
    ``config.log_dir`` when that is set. Every other reporting integration (W&B, MLflow, Comet, …)
    receives the scalars through its ``on_log`` when the callback knows the trainer. The JSON-lines trace
    goes to ``config.trace_path``, else next to the TensorBoard events, else
    ``<output_dir>/spinal/spinal_trace.jsonl``. Only the main process writes.

    Logged tags:
    """

    __doc__ = (__doc__ or "") + LOGGED_TAGS + """
    Args:
        config: a :class:`SpinalConfig` (or a dict of its fields).
        reference: the reference model for patching probes; default: the trainer's ``ref_model``
            when the callback knows the trainer, else the PEFT policy with its adapter disabled.
        trainer: optionally the trainer (as TRL's ``LogCompletionsCallback`` takes it), or later
            through :meth:`set_trainer`: gives the ``ref_model``, HF's TensorBoard directory and the
            reporting integrations (W&B, MLflow, …) the scalars are handed to.

    Attributes:
        session: the framework-neutral :class:`~spinal_callback.monitor.session.MonitorSession`.
        monitor: its :class:`~spinal_callback.SpinalMonitor`.
        log_dir: the TensorBoard directory in use (after training starts, main process).
        trace_path: the JSON-lines trace file in use (after training starts, main process).
    """

    def __init__(
        self,
        config: SpinalConfig | Mapping[str, Any] | None = None,
        reference: nn.Module | None = None,
        trainer: Any = None,
    ) -> None:
        self.session = MonitorSession(config)
        self.monitor = self.session.monitor
        self.reference = reference
        self.trainer = trainer
        self._restored_state: dict[str, Any] | None = None
        self._forwarder: ScalarForwarder | None = None
        self._held: tuple[int, Mapping[str, Any]] | None = None  # a step whose reading waits for its log

    config = property(lambda self: self.session.config)
    log_dir = property(lambda self: self.session.log_dir)
    trace_path = property(lambda self: self.session.trace_path)

    def set_trainer(self, trainer: Any) -> SpinalTrainerCallback:
        """Give the callback its trainer (``ref_model``, HF's TensorBoard directory, reporting integrations)."""
        self.trainer = trainer
        return self

    # -- events ----------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        model = kwargs.get("model")
        if model is None:
            raise ValueError("SpinalTrainerCallback: the trainer passed no `model` to on_train_begin")
        saved = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(saved, Mapping):
            self._restored_state = saved.get("attributes", {}).get("_restored_state") or self._restored_state
        if self._restored_state:
            self.session.load_state_dict(self._restored_state)
        if self.reference is None and self.trainer is not None:
            self.reference = getattr(self.trainer, "ref_model", None)
        tokenizer = kwargs.get("processing_class")
        records = dataset_of(kwargs.get("train_dataloader"))
        if records is None and self.trainer is not None:
            records = getattr(self.trainer, "train_dataset", None)
        rank_zero = bool(state.is_world_process_zero)
        self._forwarder = scalar_forwarder(self.trainer, args) if rank_zero else None
        self.session.start(
            model, rank_zero=rank_zero, log_dir=tensorboard_dir(args, self.config, self.trainer),
            output_dir=args.output_dir, log_scalars=self._forwarder,
            log_text=self._forwarder.text if self._forwarder is not None else None,
            records=records, tokenizer=getattr(tokenizer, "tokenizer", tokenizer),  # processors wrap a tokenizer
            reference=self.reference, metric_names=TRAINER_METRICS,
        )
        if rank_zero:
            every = getattr(state, "logging_steps", None) or getattr(args, "logging_steps", None)
            advice = sparse_logging_advice(every, self.config, bool(getattr(args, "logging_first_step", False)))
            if advice is not None:
                log.warning(advice)
        self._step(state.global_step, control, kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if kwargs.get("model") is None:
            return
        self._release(control)
        step = state.global_step
        if getattr(control, "should_log", False) and self.session.due(step):
            # The trainer logs this step's metrics right after on_step_end: read the step with them, at on_log,
            # so that the detector sees the metrics of the step it reads, not of the step before.
            self._held = (step, kwargs)
            return
        self._step(step, control, kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if logs:
            self.monitor.observe_metrics(logs)  # HF logs plain floats: no device sync
        self._release(control)
        if logs and kwargs.get("model") is not None:  # a log no reading took: its own observation (read_every_log)
            self._finish(self.session.log(state.global_step, self._handles(kwargs), sync=TorchDistributedSync()),
                         control)

    def _release(self, control: Any) -> None:
        """Read the step held for its log (at that log, or — should the log not come — at the next event)."""
        if self._held is not None:
            (step, kwargs), self._held = self._held, None
            self._step(step, control, kwargs)

    def _step(self, step: int, control: Any, kwargs: Mapping[str, Any]) -> None:
        if not self.session.due(step):
            return
        self._finish(self.session.step(step, kwargs["model"], self._handles(kwargs), sync=TorchDistributedSync(),
                                       reference=self.reference), control)

    def _handles(self, kwargs: Mapping[str, Any]) -> Callable[[], TrainingHandles]:
        """The rollback handles of an event's ``kwargs``, built only when asked for."""
        return lambda: TrainingHandles(
            model=kwargs["model"], optimizer=kwargs.get("optimizer"), scheduler=kwargs.get("lr_scheduler"),
            scaler=getattr(getattr(self.trainer, "accelerator", None), "scaler", None),
        )

    def _finish(self, stop: bool, control: Any) -> None:
        """After the monitor ran: send its scalars to the trainer's loggers, stop training if it must."""
        if self._forwarder is not None:
            self._forwarder.flush()
        if stop:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._release(control)
        self.session.close()
        if self._forwarder is not None:
            self._forwarder.flush()

    # -- ExportableState -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Saved into ``trainer_state.json`` at every checkpoint; restored on resume."""
        return {
            "args": {"config": portable_config(self.config)},
            "attributes": {"_restored_state": self.session.state_dict()},
        }
