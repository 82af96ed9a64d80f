"""Where the Hugging Face adapter's output goes: TensorBoard directory, ``report_to`` and the Trainer's loggers.

``report_to`` is honoured: TensorBoard events are written only when it includes ``"tensorboard"`` (then
into HF's own run directory) or when ``SpinalConfig(log_dir=...)`` asks for them; every other reporting
integration of the Trainer (W&B, MLflow, Comet, …) receives the callback's scalars through its own
``on_log``, at the trainer's global step. The JSON-lines trace file is always written.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from spinal_callback.config import SpinalConfig

__all__ = [
    "TEXT_INTEGRATIONS",
    "ScalarForwarder",
    "reporters",
    "scalar_forwarder",
    "tensorboard_callback_dir",
    "tensorboard_dir",
]

log = logging.getLogger("spinal_callback")


def report_to(args: Any) -> list[str]:
    """``args.report_to`` as a list of integration names (``"all"`` kept as is, ``"none"`` dropped)."""
    value = getattr(args, "report_to", None) or []
    names = [value] if isinstance(value, str) else list(value)
    return [name for name in names if name != "none"]


def _reports_to_tensorboard(args: Any) -> bool:
    names = report_to(args)
    return "tensorboard" in names or "all" in names


def tensorboard_callback_dir(callbacks: Iterable[Any], args: Any = None) -> str | None:
    """The run directory of HF's ``TensorBoardCallback`` among ``callbacks`` (known once training began).

    transformers 5 keeps it on the callback (``logging_dir``). transformers 4 keeps it on its open writer
    during training and in ``TrainingArguments.logging_dir`` (pass the trainer's ``args`` to read it after
    training, when the writer is closed).
    """
    for callback in callbacks:
        if type(callback).__name__ != "TensorBoardCallback":
            continue
        found = getattr(callback, "logging_dir", None)  # transformers >= 5
        if not found:  # transformers 4.x: the open writer, else the arguments it was opened from
            writer = getattr(callback, "tb_writer", None)
            get_logdir = getattr(writer, "get_logdir", None)
            found = get_logdir() if callable(get_logdir) else getattr(writer, "log_dir", None)
            found = found or getattr(args, "logging_dir", None)
        if found:
            return str(found)
    return None


def _run_dir_of_this_process(runs: str) -> str | None:
    """The newest directory under ``runs`` holding a TensorBoard event file written by this process.

    HF's ``TensorBoardCallback`` opens its writer (and so its event file) in ``on_train_begin``, before
    any user callback's; event file names end in ``.<pid>.<n>`` of the writing process.
    """
    pid = f".{os.getpid()}."
    found: list[tuple[float, str]] = []
    if not os.path.isdir(runs):
        return None
    for entry in os.scandir(runs):
        if entry.is_dir():
            for name in os.listdir(entry.path):
                if name.startswith("events.out.tfevents.") and pid in name:
                    found.append((os.path.getmtime(os.path.join(entry.path, name)), entry.path))
    return max(found)[1] if found else None


def tensorboard_dir(args: Any, config: SpinalConfig, trainer: Any) -> str | None:
    """The TensorBoard directory to write, or ``None`` when nobody asked for TensorBoard.

    With ``report_to`` including TensorBoard: HF's run directory (through the trainer when known, else
    ``TENSORBOARD_LOGGING_DIR``, else the run directory this process's HF writer opened under
    ``<output_dir>/runs``), falling back to ``config.log_dir`` / ``<output_dir>/spinal``. Without it:
    ``config.log_dir`` if set, else ``None``.
    """
    if _reports_to_tensorboard(args):
        handler = getattr(trainer, "callback_handler", None)
        found = tensorboard_callback_dir(getattr(handler, "callbacks", None) or [], args)
        env = os.environ.get("TENSORBOARD_LOGGING_DIR")
        found = found or (os.path.expanduser(env) if env else None)
        found = found or _run_dir_of_this_process(os.path.join(args.output_dir, "runs"))
        return found or config.log_dir or os.path.join(args.output_dir, "spinal")
    return config.log_dir


def _integration_callback_types() -> tuple[type, ...]:
    """HF's reporting-integration callback classes other than TensorBoard's (the callback writes that itself)."""
    try:
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    except ImportError:  # pragma: no cover - present in every transformers the package admits
        return ()
    return tuple(cls for name, cls in INTEGRATION_TO_CALLBACK.items() if name != "tensorboard")


def reporters(trainer: Any) -> list[Any]:
    """The trainer's reporting-integration callbacks (W&B, MLflow, Comet, …), TensorBoard's excluded."""
    handler = getattr(trainer, "callback_handler", None)
    kinds = _integration_callback_types()
    return [cb for cb in getattr(handler, "callbacks", None) or [] if kinds and isinstance(cb, kinds)]


#: Reporting-integration callbacks that log a text value of ``logs`` as text (W&B); the others only take numbers.
TEXT_INTEGRATIONS = frozenset({"WandbCallback"})


class ScalarForwarder:
    """Collects the scalars of one probe step and hands them, as one log entry, to every reporting
    integration of the trainer (W&B, MLflow, Comet, …) through its ``on_log`` at the trainer's step.

    Call it as the session's ``log_scalars`` (and :meth:`text` as its ``log_text``); :meth:`flush` after each
    step the session handled.
    """

    def __init__(self, trainer: Any, args: Any, callbacks: list[Any]) -> None:
        self.trainer, self.args, self.callbacks = trainer, args, callbacks
        self.pending: dict[str, float] = {}
        self.pending_text: dict[str, str] = {}

    def __call__(self, scalars: Mapping[str, float], step: int) -> None:
        self.pending.update(scalars)

    def text(self, tag: str, text: str, step: int) -> None:
        """Alert, rollback or config text: handed, with the step's scalars, to the integrations that take
        text (:data:`TEXT_INTEGRATIONS`); the others would drop it with a warning of their own."""
        if tag in self.pending_text:
            text = f"{self.pending_text[tag]}\n{text}"
        self.pending_text[tag] = text

    def flush(self) -> None:
        scalars, self.pending = self.pending, {}
        texts, self.pending_text = self.pending_text, {}
        for callback in self.callbacks if scalars or texts else ():
            logs: dict[str, Any] = dict(scalars)
            if type(callback).__name__ in TEXT_INTEGRATIONS:
                logs.update(texts)
            if not logs:
                continue
            try:
                callback.on_log(self.args, self.trainer.state, self.trainer.control, logs=logs)
            except Exception as exc:  # a logger's failure is a warning, never a crashed run
                message = (
                    f"spinal: handing scalars to {type(callback).__name__} failed ({type(exc).__name__}: {exc}); "
                    "training goes on"
                )
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                log.warning(message)


def scalar_forwarder(trainer: Any, args: Any) -> ScalarForwarder | None:
    """A :class:`ScalarForwarder` to the reporting integrations of ``trainer``, or ``None`` if there is none.

    Without the trainer the integrations cannot be reached; when ``report_to`` names one, a warning says
    how to fix it (``SpinalTrainerCallback(trainer=trainer)`` or ``callback.set_trainer(trainer)``).
    """
    if trainer is None:
        others = [name for name in report_to(args) if name != "tensorboard"]
        if others:
            log.warning(
                "spinal: report_to=%s, but the callback does not know the trainer, so only TensorBoard and the "
                "trace file receive its scalars; pass SpinalTrainerCallback(trainer=trainer) or call "
                "callback.set_trainer(trainer) before train() to send them to %s too",
                report_to(args), ", ".join(others),
            )
        return None
    found = reporters(trainer)
    return ScalarForwarder(trainer, args, found) if found else None
