"""``AlertGuard``: early-warning decisions and the actions they trigger (framework-neutral).

Per optimizer step, the monitor feeds the guard the geometry signals of a probe (and the DPO metrics
it has seen); the guard asks the :class:`~spinal_callback.detector.EarlyWarningDetector`, takes
known-good snapshots while the run is quiet, and on an alert carries out ``on_alert``: user callables,
``rollback`` (restore the newest snapshot before the estimated onset) and ``stop``. Logging the alert
and the rollback is the monitor's job; the guard only returns what happened.

Under DDP/FSDP the *decision* is computed on rank 0 and passed to every rank through the adapter's
``sync`` function, so all ranks snapshot, restore and stop in lockstep.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .alerts import Alert
from .detector import EarlyWarningDetector
from .rollback import NoSnapshotError, RollbackLimitReached, RollbackManager, RollbackRecord

__all__ = ["AlertGuard", "GuardOutcome", "TrainingHandles"]

log = logging.getLogger("spinal_callback")
Sync = Callable[[Any], Any]


@dataclass
class TrainingHandles:
    """The live training objects a rollback restores (the adapters fill them in)."""

    model: nn.Module
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None


@dataclass
class GuardOutcome:
    """What one step's decision did.

    Attributes:
        alerts: alerts raised at this step (one per signal episode).
        rollback: the rollback made, if any.
        stop: the adapter must stop training (``stop`` action, or the rollback limit was reached).
        message: why training stops, for the user.
        snapshot: a known-good snapshot was taken at this step.
    """

    alerts: list[Alert] = field(default_factory=list)
    rollback: RollbackRecord | None = None
    stop: bool = False
    message: str = ""
    snapshot: bool = False


class AlertGuard:
    """Detector + rollback manager + ``on_alert`` actions for one run.

    Args:
        detector: the early-warning detector.
        actions: ``on_alert`` entries: ``"log"``, ``"stop"``, ``"rollback"`` or callables.
        rollback: the rollback manager; required when ``"rollback"`` is among the actions.
        strict: re-raise exceptions from user callables instead of warning.
    """

    def __init__(
        self,
        detector: EarlyWarningDetector,
        actions: tuple[Any, ...],
        rollback: RollbackManager | None = None,
        strict: bool = False,
    ) -> None:
        if "rollback" in actions and rollback is None:
            raise ValueError("on_alert includes 'rollback' but no RollbackManager was given")
        self.detector = detector
        self.actions = actions
        self.rollback = rollback if "rollback" in actions else None
        self.strict = strict
        self.alerts_total = 0

    def wants_snapshot(self, step: int) -> bool:
        """Would a snapshot be due at ``step`` (before knowing this step's probe result)?"""
        return self.rollback is not None and self.rollback.should_snapshot(step, episode_open=False)

    def decide(self, step: int, signals: Mapping[str, float], layers: Mapping[str, tuple[int, ...]]) -> dict:
        """The pure decision of this step (computed on rank 0, then synced): alerts and snapshot."""
        alerts = self.detector.update(step, signals, layers) if signals else []
        quiet = self.detector.quiet and not alerts
        snapshot = self.rollback is not None and self.rollback.should_snapshot(step, episode_open=not quiet)
        return {"alerts": [a.to_dict() for a in alerts], "snapshot": snapshot}

    def act(self, step: int, decision: Mapping[str, Any], handles: TrainingHandles | None) -> GuardOutcome:
        """Carry out a (synced) decision on this rank."""
        outcome = GuardOutcome(alerts=[Alert.from_dict(a) for a in decision.get("alerts", [])])
        if outcome.alerts:
            self.alerts_total += len(outcome.alerts)
            self._call_user_actions(outcome.alerts)
            if self.rollback is not None:
                self._rollback(step, outcome, handles)
            if "stop" in self.actions and outcome.rollback is None:
                outcome.stop = True
                outcome.message = outcome.message or (
                    f"spinal-callback stopped training at step {step}: {outcome.alerts[0].message}"
                )
        elif decision.get("snapshot") and self.rollback is not None and handles is not None:
            self.rollback.snapshot(step, handles.model, handles.optimizer, handles.scheduler, handles.scaler)
            outcome.snapshot = True
        return outcome

    def _rollback(self, step: int, outcome: GuardOutcome, handles: TrainingHandles | None) -> None:
        assert self.rollback is not None
        if handles is None:
            warnings.warn("spinal: rollback requested but the trainer gave no model/optimizer", RuntimeWarning,
                          stacklevel=3)
            return
        restore_before = min(a.restore_before for a in outcome.alerts)
        onset = min(a.onset_step for a in outcome.alerts)
        try:
            outcome.rollback = self.rollback.rollback(
                restore_before, handles.model, handles.optimizer, handles.scheduler, handles.scaler, step=step
            )
        except RollbackLimitReached as exc:
            outcome.stop, outcome.message = True, str(exc)
            return
        except NoSnapshotError as exc:
            warnings.warn(str(exc), RuntimeWarning, stacklevel=3)
            log.warning(str(exc))
            return
        self.detector.reset(keep_baseline=True, since_step=onset)

    def _call_user_actions(self, alerts: list[Alert]) -> None:
        for action in self.actions:
            if not callable(action):
                continue
            for alert in alerts:
                try:
                    action(alert)
                except Exception as exc:
                    if self.strict:
                        raise
                    name = getattr(action, "__name__", repr(action))
                    warnings.warn(f"spinal: on_alert callable {name} failed: {exc!r}", RuntimeWarning,
                                  stacklevel=4)

    def scores(self) -> dict[str, float]:
        """Latest detector scores as TensorBoard scalars ``spinal/detector/<signal>/<score>``."""
        out: dict[str, float] = {}
        for signal, scores in self.detector.last_scores.items():
            for name, value in scores.items():
                if isinstance(value, float) and math.isfinite(value):
                    out[f"spinal/detector/{signal}/{name}"] = value
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector.state_dict(),
            "rollback": self.rollback.state_dict() if self.rollback is not None else None,
            "alerts_total": self.alerts_total,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("detector"):
            self.detector.load_state_dict(state["detector"])
        if self.rollback is not None and state.get("rollback"):
            self.rollback.load_state_dict(state["rollback"])
        self.alerts_total = int(state.get("alerts_total", self.alerts_total))
