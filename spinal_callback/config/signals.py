"""The shipped detector's signals and tests: what it watches by default, which test applies to which signal,
and the names it knows at setup — each with the study that chose it (``docs/evidence.md``) — and the checks of the
signal lists a :class:`~spinal_callback.config.detector.DetectorConfig` is given.

:class:`~spinal_callback.config.detector.DetectorConfig` takes its defaults from here (and re-exports these names);
pass your own lists to it to watch other signals or run other tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "CHECKS",
    "DEFAULT_CHECKS",
    "DEFAULT_FINITE_SIGNALS",
    "DEFAULT_SIGNALS",
    "DEFAULT_SPEED_SIGNALS",
    "DEFAULT_TURN_SIGNALS",
    "DEFAULT_UPDATE_SIGNALS",
    "DEFAULT_VARIANCE_SIGNALS",
    "DEFAULT_VECTORS",
    "DIRECTIONS",
    "DPO_METRICS",
    "PROBE_PAIR_SIGNALS",
    "check_names",
    "check_signal_map",
]

#: Direction priors a signal can carry: ``"both"`` (no prior: a break either way counts), ``"up"`` / ``"down"``
#: (only a break in that direction counts; use only for quantities that never move the other way in healthy runs).
DIRECTIONS = ("both", "up", "down")
#: Tests the detector can run (the values of the matching ``AlertReason`` members).
CHECKS = ("trend_break", "slope_change", "variance_burst", "pattern_change", "speed_jump", "update_jump",
          "turn_jump")

#: Tests run by default: all but SLOPE_CHANGE, which study 8 dropped (docs/evidence.md): on a GPT-2 it raised both
#: false alarms of study 7's healthy runs (the CUSUM on the probe pairs' margins) and answered no fault there first.
#: It stays available: ``checks=CHECKS`` runs every test.
DEFAULT_CHECKS: tuple[str, ...] = tuple(c for c in CHECKS if c != "slope_change")

#: Signals the SPEED_JUMP test applies to by default: the fixed probe pairs' completion log-likelihoods. On a
#: fixed, eval-mode probe set their step-to-step change measures how far one optimizer update moved the model,
#: with almost no sampling noise. The test applies only to watched signals, and the probe pairs are not watched by
#: default since study 12: it runs when you watch them (:data:`PROBE_PAIR_SIGNALS`).
DEFAULT_SPEED_SIGNALS: tuple[str, ...] = ("pairs/logp_chosen", "pairs/logp_rejected")

#: Signals the VARIANCE_BURST test applies to, among the watched signals: TRL's batch chosen log-probability, as
#: study 5 chose on every earlier run (docs/evidence.md). A data fault (swapped pairs) makes its batch-to-batch
#: increments burst well before held-out behaviour degrades; on the other watched signals healthy runs burst too.
#: Since study 9 the burst is measured against the signal's own last 32 increments (``variance_reference``).
DEFAULT_VARIANCE_SIGNALS: tuple[str, ...] = ("logps/chosen",)

#: Signals the UPDATE_JUMP test watches by default: ``update/size``, the RMS per-step change of a fixed sample of
#: trainable weights since the previous probe (:mod:`spinal_callback.monitor.update_size`) — the optimizer's
#: step size, read without a forward.
DEFAULT_UPDATE_SIGNALS: tuple[str, ...] = ("update/size",)

#: Signals the TURN_JUMP test watches by default: ``update/turn``, how far the latest update turned from the
#: course the sampled weights took over the probes before it (:mod:`spinal_callback.monitor.update_size`).
DEFAULT_TURN_SIGNALS: tuple[str, ...] = ("update/turn",)

#: Watched scalar signals and their direction priors: TRL's DPO metrics (watched when the trainer logs them), read
#: with the update signals at every reading, without a forward. The lead-time study's calibration set chose these
#: and the DPO quantities of the fixed probe pairs (docs/evidence.md, studies 2 and 3); since the probe forward runs
#: only every ``SpinalConfig.interval`` steps (50 by default) — too seldom for a lead of tens of steps, and a cadence
#: their thresholds were not calibrated at — the probe pairs are no longer watched by default (study 12). Watch them
#: (:data:`PROBE_PAIR_SIGNALS`) when you probe at the reading interval (``SpinalConfig(interval=2)``). On the
#: calibration set no geometry or head variant separated faults from healthy runs; they stay available
#: (``band/<band>/<metric>``, ``head/…``, ``layers/<band>/<metric>`` vectors). No direction prior: healthy DPO moves
#: every one of them either way (likelihood displacement, Razin et al. 2024).
DEFAULT_SIGNALS: dict[str, str] = {
    "rewards/chosen": "both",
    "logps/chosen": "both",
    "rewards/accuracies": "both",
    "rewards/margins": "both",
}

#: The probe pairs' DPO quantities the studies up to 11 watched by default (``DEFAULT_SIGNALS`` until study 12);
#: ``DetectorConfig(signals={**DEFAULT_SIGNALS, **PROBE_PAIR_SIGNALS})`` watches them again.
PROBE_PAIR_SIGNALS: dict[str, str] = {
    "pairs/logp_chosen": "both",
    "pairs/logp_rejected": "both",
    "pairs/margin": "both",
    "pairs/logratio_margin": "both",
}

#: Signals checked for NON_FINITE alone by default: the probe forward's head and probe-pair signals, which a probe
#: that meets non-finite activations feeds as NaN — so such a probe raises NON_FINITE whatever else is watched.
DEFAULT_FINITE_SIGNALS: tuple[str, ...] = ("head/*", "pairs/*")

#: Watched per-layer vectors (see :func:`~spinal_callback.early_warning.inputs.vectors_from_trace`) for the
#: cross-layer PATTERN_CHANGE test: none by default (the study's calibration set did not choose them); e.g.
#: ``("layers/late/transport", "layers/late/contraction")``.
DEFAULT_VECTORS: tuple[str, ...] = ()

#: TRL's DPO training metrics (names as logged, without ``train/``), for
#: :func:`~spinal_callback.early_warning.names.check_signal_names` at setup.
DPO_METRICS: tuple[str, ...] = (
    "loss", "grad_norm", "learning_rate",
    "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "logps/chosen", "logps/rejected", "logits/chosen", "logits/rejected",
)


def check_names(what: str, names: object) -> tuple[str, ...]:
    """A ``DetectorConfig`` list of signal names (``what``: the field): non-empty strings, repeats dropped, in order.
    Whether a name exists is checked at setup (:func:`~spinal_callback.early_warning.names.check_signal_names`),
    when the available ones are known."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ValueError(f"`{what}` must be a list of names, got {names!r:.80}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`{what}` entries must be non-empty strings, got {name!r}")
    return tuple(dict.fromkeys(names))


def check_signal_map(signals: object) -> dict[str, str]:
    """``DetectorConfig.signals``: ``{name: direction prior}`` (one of :data:`DIRECTIONS`), or a list of names, each
    then with ``"both"``; at least one."""
    if isinstance(signals, Mapping):
        items = list(signals.items())
    elif isinstance(signals, Sequence) and not isinstance(signals, (str, bytes)):
        items = [(name, "both") for name in check_names("signals", signals)]
    else:
        raise ValueError(f"`signals` must be a mapping {{name: direction}} or a list of names, got {signals!r:.80}")
    if not items:
        raise ValueError("`signals` must name at least one signal, got an empty collection")
    checked: dict[str, str] = {}
    for name, direction in items:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`signals` keys must be non-empty strings, got {name!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"`signals[{name!r}]` must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        checked[name] = direction
    return checked
