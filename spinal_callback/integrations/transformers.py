"""``SpinalTrainerCallback``: the geometry monitor for transformers' ``Trainer`` and TRL's ``DPOTrainer``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import Any

from torch import nn
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler, ExportableState

from ..config import SpinalConfig
from ..guard import TrainingHandles
from ..monitor import SpinalMonitor, default_trace_path
from ..sinks.jsonl import TraceWriter
from ..sinks.tensorboard import TensorBoardSink
from ._common import LOGGED_TAGS, broadcast_from_rank_zero, coerce_config, portable_config, summary_writer

__all__ = ["SpinalTrainerCallback", "tensorboard_callback_dir"]


def _reports_to_tensorboard(args: Any) -> bool:
    report_to = getattr(args, "report_to", None) or []
    if isinstance(report_to, str):
        report_to = [report_to]
    return "tensorboard" in report_to or "all" in report_to


def tensorboard_callback_dir(callbacks: Iterable[Any]) -> str | None:
    """The run directory of HF's ``TensorBoardCallback`` among ``callbacks`` (set once training began)."""
    for callback in callbacks:
        if type(callback).__name__ == "TensorBoardCallback" and getattr(callback, "logging_dir", None):
            return str(callback.logging_dir)
    return None


def _calling_handler() -> CallbackHandler | None:
    """The ``CallbackHandler`` dispatching the current event, found on the call stack (read-only)."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(8):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, CallbackHandler):
            return candidate
        frame = frame.f_back
    return None


class SpinalTrainerCallback(TrainerCallback, ExportableState):
    """Live layer-geometry monitoring for ``transformers.Trainer`` / ``trl.DPOTrainer``.

    Add it in one line::

        trainer = DPOTrainer(..., callbacks=[SpinalTrainerCallback(SpinalConfig(interval=50))])

    Every ``config.interval`` optimizer steps (and at step 0) it runs one no-grad, eval-mode
    forward of the policy on a fixed probe set — the first ``num_probe_pairs`` pairs of the training
    data, or ``config.probe_pairs`` tokenized with the trainer's ``processing_class`` — and logs the
    SPINAL depth trace. Off the probe steps it attaches nothing and costs nothing.

    TensorBoard: with ``report_to`` including ``"tensorboard"`` the events go into the same run
    directory as HF's ``TensorBoardCallback``; otherwise into ``config.log_dir`` (default
    ``<output_dir>/spinal``). The JSON-lines trace goes to ``config.trace_path`` or
    ``<tensorboard dir>/spinal_trace.jsonl``. Only the main process writes.

    Logged tags:
    """

    __doc__ = (__doc__ or "") + LOGGED_TAGS + """
    Args:
        config: a :class:`SpinalConfig` (or a dict of its fields).
        reference: the reference model for patching probes; default: the trainer's ``ref_model``
            when the callback knows the trainer, else the PEFT policy with its adapter disabled.
        trainer: optionally the trainer (as TRL's ``LogCompletionsCallback`` takes it).

    Attributes:
        monitor: the framework-neutral :class:`SpinalMonitor`.
        log_dir: the TensorBoard directory in use (after training starts, main process).
        trace_path: the JSON-lines trace file in use (after training starts, main process).
    """

    def __init__(
        self,
        config: SpinalConfig | Mapping[str, Any] | None = None,
        reference: nn.Module | None = None,
        trainer: Any = None,
    ) -> None:
        self.monitor = SpinalMonitor(coerce_config(config))
        self.reference = reference
        self.trainer = trainer
        self.log_dir: str | None = None
        self.trace_path: str | None = None
        self._restored_state: dict[str, Any] | None = None

    @property
    def config(self) -> SpinalConfig:
        return self.monitor.config

    def set_trainer(self, trainer: Any) -> SpinalTrainerCallback:
        """Give the callback its trainer (for the ``ref_model`` and the TensorBoard callback)."""
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
            self.monitor.load_state_dict(self._restored_state)
        handler = getattr(self.trainer, "callback_handler", None) or _calling_handler()
        if self.reference is None and self.trainer is not None:
            self.reference = getattr(self.trainer, "ref_model", None)
        sink = writer = None
        if state.is_world_process_zero:
            self.log_dir = self._tensorboard_dir(args, handler)
            self.trace_path = default_trace_path(self.config, self.log_dir)
            sink = TensorBoardSink(summary_writer(self.log_dir), heatmaps=self.config.heatmaps, owns_writer=True)
            writer = TraceWriter(self.trace_path)
        tokenizer = kwargs.get("processing_class")
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # multimodal processors wrap a tokenizer
        try:
            self.monitor.setup(
                model, records=self._records(kwargs), tokenizer=tokenizer, sink=sink, trace_writer=writer,
                rank_zero=bool(state.is_world_process_zero), reference=self.reference,
            )
        except BaseException:
            for closable in (sink, writer):
                if closable is not None:
                    closable.close()
            raise
        self._step(state, control, kwargs)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if kwargs.get("model") is not None and self.monitor.layout is not None:
            self._step(state, control, kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
               **kwargs: Any) -> None:
        if logs:
            self.monitor.observe_metrics(logs)

    def _step(self, state: Any, control: Any, kwargs: Mapping[str, Any]) -> None:
        accelerator = getattr(self.trainer, "accelerator", None)
        handles = TrainingHandles(
            model=kwargs["model"],
            optimizer=kwargs.get("optimizer"),
            scheduler=kwargs.get("lr_scheduler"),
            scaler=getattr(accelerator, "scaler", None),
        )
        outcome = self.monitor.on_step(
            state.global_step, kwargs["model"], handles, sync=broadcast_from_rank_zero, reference=self.reference
        )
        if outcome is not None and outcome.stop:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.monitor.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _records(self, kwargs: Mapping[str, Any]) -> Any:
        if self.config.probe_pairs is not None:
            return None
        loader = kwargs.get("train_dataloader")
        dataset = getattr(loader, "dataset", None)
        if dataset is None and self.trainer is not None:
            dataset = getattr(self.trainer, "train_dataset", None)
        return dataset

    def _tensorboard_dir(self, args: Any, handler: CallbackHandler | None) -> str:
        if _reports_to_tensorboard(args):
            found = tensorboard_callback_dir(getattr(handler, "callbacks", None) or [])
            if found:
                return found
            env = os.environ.get("TENSORBOARD_LOGGING_DIR")
            if env:
                return os.path.expanduser(env)
        if self.config.log_dir:
            return self.config.log_dir
        return os.path.join(args.output_dir, "spinal")

    # -- ExportableState -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Saved into ``trainer_state.json`` at every checkpoint; restored on resume."""
        return {
            "args": {"config": portable_config(self.config)},
            "attributes": {"_restored_state": self.monitor.state_dict()},
        }
