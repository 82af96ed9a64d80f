"""Signals read off the geometry probe's own forward: the output head's logit statistics and the DPO
quantities of the fixed probe pairs — at no extra forward.

During the probe the last decoder block's output is kept at the positions that predict completion
tokens; the model's own head (:meth:`DecoderLayout.lens_logits`: final norm, unembedding, soft-capping)
turns it into logits in token chunks, from which come

- ``head/log_z`` — mean over scored tokens of log Z = logsumexp of the logits, and ``head/max_logit`` —
  mean of the largest logit (output-logit divergence, Wortsman et al. 2023, arXiv 2309.14322);
- ``pairs/logp_chosen`` / ``pairs/logp_rejected`` — mean over the K probe pairs of the completion
  log-likelihood log π(y|x) (summed over completion tokens, as TRL's ``logps/chosen``), and
  ``pairs/margin`` — their mean difference;
- ``pairs/logratio_chosen`` / ``pairs/logratio_rejected`` / ``pairs/logratio_margin`` — the same minus the
  frozen reference's log-likelihoods (computed once, at setup): the implicit DPO reward divided by β;
  ``pairs/accuracy`` — the fraction of pairs whose log-ratio margin is positive.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from spinal_callback.model.architectures import DecoderLayout
from spinal_callback.monitor.update_size import UPDATE_SIGNALS

if TYPE_CHECKING:
    from spinal_callback.config.detector import DetectorConfig

__all__ = [
    "PROBE_SIGNALS",
    "HeadReadout",
    "ScoredPositions",
    "available_signals",
    "head_readout",
    "probe_signals",
]

#: Every signal :func:`probe_signals` can produce.
PROBE_SIGNALS = (
    "head/log_z", "head/max_logit", "pairs/logp_chosen", "pairs/logp_rejected", "pairs/margin",
    "pairs/logratio_chosen", "pairs/logratio_rejected", "pairs/logratio_margin", "pairs/accuracy",
)
#: Name spaces the monitor itself fills; a name in them that it cannot produce is a typo.
_OWN_PREFIXES = ("band/", "layers/", "head/", "pairs/", "update/")


@dataclass(frozen=True)
class ScoredPositions:
    """The completion tokens a probe scores, and the positions whose hidden state predicts them.

    Attributes:
        rows, cols: ``(n,)`` row and position of each predictor (the position before a scored token).
        targets: ``(n,)`` the scored token ids.
        num_rows: 2K rows of the probe batch (K chosen, then K rejected).
    """

    rows: torch.Tensor
    cols: torch.Tensor
    targets: torch.Tensor
    num_rows: int

    @classmethod
    def from_batch(cls, batch: Mapping[str, torch.Tensor]) -> ScoredPositions:
        """Scored tokens: completion ∧ real ∧ t ≥ 1 (a token at t = 0 has no predictor), as TRL scores them."""
        label = batch["completion_mask"].bool() & batch["attention_mask"].bool()
        label[:, 0] = False
        rows, cols = label.nonzero(as_tuple=True)
        return cls(rows, cols - 1, batch["input_ids"][rows, cols], int(label.shape[0]))

    def take(self, hidden: torch.Tensor) -> torch.Tensor:
        """The predictor positions' rows of ``(2K, T, d)`` hidden states, detached: ``(n, d)``."""
        return hidden.detach()[self.rows.to(hidden.device), self.cols.to(hidden.device)]


@dataclass(frozen=True)
class HeadReadout:
    """What the output head says on the probe pairs.

    Attributes:
        logprobs: ``(2K,)`` float64 completion log-likelihoods, chosen rows first.
        log_z: mean log-partition function over the scored tokens.
        max_logit: mean largest logit over the scored tokens.
    """

    logprobs: torch.Tensor
    log_z: float
    max_logit: float


def head_readout(
    layout: DecoderLayout, hidden: torch.Tensor, positions: ScoredPositions, chunk_size: int = 256
) -> HeadReadout:
    """Completion log-likelihoods and logit statistics from the kept last-block states, in chunks of tokens.

    ``log π(y|x) = Σ_t log_softmax(head(h_L[t−1]))[y_t]`` (float32 logits, float64 sums); at most one
    ``chunk_size × V`` logits matrix is alive at a time.
    """
    device = hidden.device
    rows, targets = positions.rows.to(device), positions.targets.to(device)
    logprobs = torch.zeros(positions.num_rows, dtype=torch.float64, device=device)
    log_z_sum = torch.zeros((), dtype=torch.float64, device=device)
    max_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for start in range(0, hidden.shape[0], chunk_size):
            logits = layout.lens_logits(hidden[start : start + chunk_size])
            log_z = torch.logsumexp(logits, dim=-1)
            target_logits = logits.gather(1, targets[start : start + chunk_size, None]).squeeze(1)
            logprobs.index_add_(0, rows[start : start + chunk_size], (target_logits - log_z).double())
            log_z_sum += log_z.double().sum()
            max_sum += logits.amax(dim=-1).double().sum()
    n = max(int(hidden.shape[0]), 1)
    stats = torch.stack([log_z_sum / n, max_sum / n]).tolist()  # one host sync
    return HeadReadout(logprobs.cpu(), float(stats[0]), float(stats[1]))


def pair_values(readout: HeadReadout, reference_logprobs: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per-pair values of the ``pairs/…`` signals (each signal is their mean over the K pairs)."""
    k = readout.logprobs.shape[0] // 2
    chosen, rejected = readout.logprobs[:k], readout.logprobs[k:]
    out = {"pairs/logp_chosen": chosen, "pairs/logp_rejected": rejected, "pairs/margin": chosen - rejected}
    if reference_logprobs is not None:
        ratio = readout.logprobs - reference_logprobs.to(readout.logprobs)
        out["pairs/logratio_margin"] = ratio[:k] - ratio[k:]
    return out


def pair_noise(now: Mapping[str, torch.Tensor], before: Mapping[str, torch.Tensor] | None) -> dict[str, float]:
    """Measured noise floor of each ``pairs/…`` signal: the standard error, across the K probe pairs, of its
    change since the previous probe, std_i(Δv_i)/√K — how much the mean's step would differ on another draw
    of probe pairs. A fixed probe set of a smoothly moving model is nearly noiseless, so without this floor a
    small healthy bend of the mean looks like many σ (SPEC §3: a measured floor, not a fixed fraction)."""
    if before is None:
        return {}
    out = {}
    for name, values in now.items():
        previous = before.get(name)
        if previous is None or values.numel() < 2 or previous.shape != values.shape:
            continue
        change = (values - previous).double()
        out[name] = float(change.std(unbiased=True) / change.numel() ** 0.5)
    return out


def probe_signals(readout: HeadReadout, reference_logprobs: torch.Tensor | None) -> dict[str, float]:
    """The detector and TensorBoard signals of one readout (names in the module docstring)."""
    k = readout.logprobs.shape[0] // 2
    chosen, rejected = readout.logprobs[:k], readout.logprobs[k:]
    out = {
        "head/log_z": readout.log_z,
        "head/max_logit": readout.max_logit,
        "pairs/logp_chosen": float(chosen.mean()),
        "pairs/logp_rejected": float(rejected.mean()),
        "pairs/margin": float((chosen - rejected).mean()),
    }
    if reference_logprobs is not None:
        ratio = readout.logprobs - reference_logprobs.to(readout.logprobs)
        margin = ratio[:k] - ratio[k:]
        out.update({
            "pairs/logratio_chosen": float(ratio[:k].mean()),
            "pairs/logratio_rejected": float(ratio[k:].mean()),
            "pairs/logratio_margin": float(margin.mean()),
            "pairs/accuracy": float((margin > 0).double().mean()),
        })
    return out


def available_signals(configured: Iterable[str], metric_names: Collection[str] | None) -> set[str]:
    """Every detector input name a run can feed: band summaries, per-layer vectors, probe-forward signals and
    the trainer's metrics. With ``metric_names=None`` (a trainer whose metric names are not known before it
    logs them, e.g. Lightning) configured names outside the monitor's own name spaces are taken on trust."""
    from spinal_callback.geometry import BAND_NAMES, LAYER_METRICS

    names = {f"{kind}/{band}/{metric}"
             for kind in ("band", "layers") for band in BAND_NAMES for metric in LAYER_METRICS}
    names.update(PROBE_SIGNALS)
    names.update(UPDATE_SIGNALS)
    if metric_names is None:
        names.update(name for name in configured if not name.startswith(_OWN_PREFIXES))
    else:
        names.update(metric_names)
    return names


def check_detector_inputs(config: DetectorConfig, metric_names: Collection[str] | None) -> None:
    """Refuse, before training, detector settings the run cannot feed: unknown signal or vector names (the
    message lists the available ones), or watched vectors without scikit-learn."""
    from spinal_callback.early_warning import check_signal_names
    from spinal_callback.early_warning.t2 import require_pattern_support

    configured = [*config.signals, *config.vectors, *config.variance_signals, *config.speed_signals,
                  *config.update_signals, *config.turn_signals, *config.finite_signals]
    check_signal_names(config, available_signals(configured, metric_names))
    if config.vectors and "pattern_change" in config.checks:
        require_pattern_support()


@dataclass
class DetectorInputs:
    """What one probe step feeds the detector: scalar signals, their layers, per-layer vectors, noise floors."""

    signals: dict[str, float] = field(default_factory=dict)
    layers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    noise: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, result: Any, last_trace: Any, metrics: Mapping[str, float]) -> DetectorInputs:
        """From a probe result: band summaries, vectors, probe-forward signals, their floors and the trainer's
        fresh ``metrics``. A probe that met non-finite activations feeds NaN for every band signal of the
        last good trace and every probe-forward signal, which the detector reports as NON_FINITE whatever
        it watches; a failed probe still feeds the update signals read before it and the ``metrics``."""
        from spinal_callback.early_warning import signals_from_bands, vectors_from_trace

        if result.trace is not None:
            signals, layers = signals_from_bands(result.trace.bands)
            vectors, vector_layers = vectors_from_trace(result.trace.to_dict())
            return cls({**signals, **result.signals, **metrics}, {**layers, **vector_layers}, vectors,
                       dict(result.noise))
        if result.failure is not None and result.failure.non_finite and last_trace is not None:
            geometry, layers = signals_from_bands(last_trace.bands)
            return cls({**{name: math.nan for name in [*geometry, *PROBE_SIGNALS]}, **result.signals, **metrics},
                       layers)
        return cls({**result.signals, **metrics})

    def astuple(self) -> tuple[dict, dict, dict, dict]:
        """``(signals, layers, vectors, noise)`` — the arguments of ``AlertGuard.decide`` after the step."""
        return self.signals, self.layers, self.vectors, self.noise
