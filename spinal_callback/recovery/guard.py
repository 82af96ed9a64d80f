"""``AlertGuard``: early-warning decisions and the actions they trigger (framework-neutral).

Per optimizer step, the monitor feeds the guard the geometry signals of a probe (and the DPO metrics
it has seen); the guard asks the :class:`~spinal_callback.early_warning.detector.EarlyWarningDetector`, takes
known-good snapshots while the run is quiet, and on an alert carries out ``on_alert``: user callables,
``rollback`` (restore the newest snapshot before the estimated onset) and ``stop``. Logging the alert
and the rollback is the monitor's job; the guard only returns what happened.

The guard is the one failure-isolation boundary of snapshot and restore I/O: a failing snapshot (disk
full, ``snapshot_dir`` gone) or restore (a snapshot of another model, an unreadable file, an optimizer that
refuses the state) becomes a ``RuntimeWarning``, a logged warning, an increment of :attr:`AlertGuard.failures`
and :attr:`GuardOutcome.failure` — never an exception in the trainer, unless ``strict``.

Under DDP/FSDP the *decision* is computed on rank 0 and handed to every rank by a
:class:`~spinal_callback.recovery.sync.RankSync`; whether an action *worked* is agreed on through the same
object (:mod:`spinal_callback.recovery.lockstep`), so all ranks snapshot, restore and stop in lockstep and
keep identical snapshot indexes.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spinal_callback.early_warning.alerts import Alert
from spinal_callback.early_warning.detector import EarlyWarningDetector
from spinal_callback.recovery.lockstep import Failure, rollback_in_lockstep, snapshot_in_lockstep
from spinal_callback.recovery.records import RollbackRecord, TrainingHandles
from spinal_callback.recovery.rollback import RollbackManager
from spinal_callback.recovery.sync import LocalSync, RankSync

__all__ = ["AlertGuard", "GuardOutcome", "TrainingHandles"]

log = logging.getLogger("spinal_callback")


@dataclass
class GuardOutcome:
    """What one step's decision did.

    Attributes:
        alerts: alerts raised at this step (one per signal episode).
        rollback: the rollback made, if any.
        stop: the adapter must stop training (``stop`` action, or the rollback limit was reached).
        message: why training stops, for the user.
        snapshot: a known-good snapshot was taken at this step.
        failure: set when a snapshot or restore failed at this step: what failed, at which step, why and
            what to do (the same text as the warning). :attr:`AlertGuard.failures` counts them.
    """

    alerts: list[Alert] = field(default_factory=list)
    rollback: RollbackRecord | None = None
    stop: bool = False
    message: str = ""
    snapshot: bool = False
    failure: str | None = None


class AlertGuard:
    """Detector + rollback manager + ``on_alert`` actions for one run.

    Args:
        detector: the early-warning detector.
        actions: ``on_alert`` entries: ``"log"``, ``"stop"``, ``"rollback"`` or callables.
        rollback: the rollback manager; required when ``"rollback"`` is among the actions.
        strict: re-raise exceptions from user callables, snapshots and restores instead of warning.

    Attributes:
        alerts_total: alerts raised so far.
        failures: snapshots and restores that failed so far (``spinal/rollback/failures``).
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
        self.failures = 0

    def wants_snapshot(self, step: int) -> bool:
        """Would a snapshot be due at ``step`` (before knowing this step's probe result)?"""
        return self.rollback is not None and self.rollback.should_snapshot(step, episode_open=False)

    def decide(
        self,
        step: int,
        signals: Mapping[str, float],
        layers: Mapping[str, tuple[int, ...]],
        vectors: Mapping[str, Sequence[float]] | None = None,
        noise: Mapping[str, float] | None = None,
    ) -> dict:
        """The pure decision of this step (computed on rank 0, then synced): alerts and snapshot."""
        alerts = self.detector.update(step, signals, layers, noise=noise, vectors=vectors) if signals or vectors else []
        quiet = self.detector.quiet and not alerts
        snapshot = self.rollback is not None and self.rollback.should_snapshot(step, episode_open=not quiet)
        return {"alerts": [a.to_dict() for a in alerts], "snapshot": snapshot}

    def act(
        self, step: int, decision: Mapping[str, Any], handles: TrainingHandles | None, sync: RankSync | None = None
    ) -> GuardOutcome:
        """Carry out rank 0's decision (already broadcast by ``sync``) on this rank.

        Every rank must call this with the same ``step`` and ``decision``: snapshots and restores run
        ``sync``'s collectives (``None``: one process, :class:`LocalSync`).

        Raises:
            Exception: only with ``strict=True``: what a snapshot or restore raised on this rank (or a
                ``RuntimeError`` when it failed on another rank).
        """
        sync = sync if sync is not None else LocalSync()
        outcome = GuardOutcome(alerts=[Alert.from_dict(a) for a in decision.get("alerts", [])])
        if outcome.alerts:
            self.alerts_total += len(outcome.alerts)
            self._call_user_actions(outcome.alerts)
            if self.rollback is not None:
                self._rollback(step, outcome, handles, sync)
            if "stop" in self.actions and outcome.rollback is None:
                outcome.stop = True
                outcome.message = outcome.message or (
                    f"spinal-callback stopped training at step {step}: {outcome.alerts[0].message}"
                )
        elif decision.get("snapshot") and self.rollback is not None and handles is not None:
            failure = snapshot_in_lockstep(self.rollback, step, handles, sync)
            if failure is None:
                outcome.snapshot = True
            else:
                self._fail(outcome, failure)
        return outcome

    def _rollback(self, step: int, outcome: GuardOutcome, handles: TrainingHandles | None, sync: RankSync) -> None:
        assert self.rollback is not None
        if handles is None:
            warnings.warn("spinal: rollback requested but the trainer gave no model/optimizer", RuntimeWarning,
                          stacklevel=3)
            return
        restore_before = min(a.restore_before for a in outcome.alerts)
        onset = min(a.onset_step for a in outcome.alerts)
        result = rollback_in_lockstep(self.rollback, step, restore_before, handles, sync)
        if result.record is not None:
            outcome.rollback = result.record
            self.detector.reset(keep_baseline=True, since_step=onset)
        if result.stop is not None:
            outcome.stop, outcome.message = True, result.stop
        if result.no_snapshot is not None:
            warnings.warn(result.no_snapshot, RuntimeWarning, stacklevel=3)
            log.warning(result.no_snapshot)
        for failure in (result.unreadable, result.failure):
            if failure is not None:
                self._fail(outcome, failure)

    def _fail(self, outcome: GuardOutcome, failure: Failure) -> None:
        """The failure-isolation boundary: count, warn and go on (or raise, with ``strict``)."""
        self.failures += 1
        if self.strict:
            if failure.error is not None:
                raise failure.error
            raise RuntimeError(failure.message(self.failures, strict=True))
        message = failure.message(self.failures)
        outcome.failure = message if outcome.failure is None else f"{outcome.failure}\n{message}"
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)

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
        """Plain state: detector, rollback manager, alert and failure counters."""
        return {
            "detector": self.detector.state_dict(),
            "rollback": self.rollback.state_dict() if self.rollback is not None else None,
            "alerts_total": self.alerts_total,
            "failures": self.failures,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; missing keys keep their current values."""
        if state.get("detector"):
            self.detector.load_state_dict(state["detector"])
        if self.rollback is not None and state.get("rollback"):
            self.rollback.load_state_dict(state["rollback"])
        self.alerts_total = int(state.get("alerts_total", self.alerts_total))
        self.failures = int(state.get("failures", self.failures))
