"""``ProbeSet``: the fixed probe pairs of a run, tokenized once, with what every probe reuses.

Built at setup: the ``(2K, T)`` batch, the scored completion positions, and the frozen reference's
log-likelihoods of the probe targets (one no-grad forward, once per run) — so that each probe's DPO
signals cost nothing beyond the geometry forward.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from spinal_callback.config import SpinalConfig
from spinal_callback.model.architectures import DecoderLayout, resolve_layout, unwrap_parallel
from spinal_callback.model.probe_batch import collate_pairs, pad_token_id, pairs_from_records, tokenize_pairs
from spinal_callback.monitor.signals import (
    HeadReadout,
    ScoredPositions,
    head_readout,
    pair_noise,
    pair_values,
    probe_signals,
)

__all__ = ["ProbeSet", "check_reference", "tier_layers"]

log = logging.getLogger("spinal_callback")


@dataclass
class ProbeSet:
    """The probe pairs of one run.

    Attributes:
        batch: ``input_ids``, ``attention_mask``, ``completion_mask``, each ``(2K, T)`` (chosen rows first).
        positions: the scored completion tokens and their predictor positions.
        num_pairs: K.
        reference_logprobs: ``(2K,)`` log-likelihoods under the frozen reference, or ``None`` until known
            (with no reference model they are the policy's at the first probe).
        reference_source: ``"reference model"``, ``"adapter-disabled policy"`` or ``"first probe"``.
    """

    batch: dict[str, torch.Tensor]
    positions: ScoredPositions
    num_pairs: int
    reference_logprobs: torch.Tensor | None = None
    reference_source: str = "first probe"
    _last_pairs: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls, config: SpinalConfig, records: Iterable[Mapping[str, Any]] | None, tokenizer: Any
    ) -> ProbeSet:
        """Tokenize ``config.probe_pairs``, or take the first ``num_probe_pairs`` of ``records``.

        Raises:
            ValueError: no probe data, or pairs that cannot be tokenized.
        """
        if config.probe_pairs is not None:
            pairs = tokenize_pairs(config.probe_pairs, tokenizer)
        elif records is not None:
            pairs = pairs_from_records(records, config.num_probe_pairs, tokenizer)
        else:
            raise ValueError(
                "No probe data: give SpinalConfig(probe_pairs=[...]) or train on a dataset of "
                "prompt/chosen/rejected records the callback can read"
            )
        batch = collate_pairs(pairs, pad_token_id=pad_token_id(tokenizer), max_length=config.max_length)
        return cls(batch, ScoredPositions.from_batch(batch), len(pairs))

    def measure_reference(self, policy: nn.Module, reference: nn.Module | None) -> None:
        """Score the probe targets once with the frozen reference (a separate model, or the PEFT policy with
        its adapter disabled). Without one, the first probe's policy scores stand in; a failure warns and
        does the same."""
        from spinal_callback.model.pairing import resolve_runs
        from spinal_callback.model.runner import forward_blocks, probe_mode
        from spinal_callback.model.sharding import gathered_head

        if reference is None and not callable(getattr(unwrap_parallel(policy), "disable_adapter", None)):
            return
        try:
            _, run = resolve_runs(policy, reference)
            with probe_mode(run), torch.no_grad():
                final = forward_blocks(run, self.batch["input_ids"], self.batch["attention_mask"])
            with gathered_head(reference if reference is not None else policy, run.layout):
                readout = head_readout(run.layout, self.positions.take(final), self.positions)
        except Exception as exc:
            message = (f"spinal: scoring the probe pairs with the reference failed ({type(exc).__name__}: {exc}); "
                       "pairs/logratio_* signals are measured against the policy at the first probe instead")
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            log.warning(message)
            return
        self.reference_logprobs = readout.logprobs
        self.reference_source = "reference model" if reference is not None else "adapter-disabled policy"

    def signals(self, readout: HeadReadout) -> tuple[dict[str, float], dict[str, float]]:
        """One probe's ``head/…`` and ``pairs/…`` signals (:func:`~spinal_callback.monitor.signals.probe_signals`)
        and the measured noise floors of the ``pairs/…`` ones, from the per-pair change since the previous probe
        (:func:`~spinal_callback.monitor.signals.pair_noise`; none at the first). Without a reference, the first
        probe's scores become the reference (once)."""
        if self.reference_logprobs is None:
            self.reference_logprobs = readout.logprobs.clone()
        per_pair = pair_values(readout, self.reference_logprobs)
        noise = pair_noise(per_pair, self._last_pairs)
        self._last_pairs = per_pair
        return probe_signals(readout, self.reference_logprobs), noise

    def state_dict(self) -> dict[str, Any]:
        """The reference scores when they came from the first probe (so a resumed run keeps them)."""
        if self.reference_source != "first probe" or self.reference_logprobs is None:
            return {}
        return {"first_probe_logprobs": [float(v) for v in self.reference_logprobs]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("first_probe_logprobs")
        if saved and self.reference_source == "first probe" and len(saved) == 2 * self.num_pairs:
            self.reference_logprobs = torch.tensor(saved, dtype=torch.float64)


def check_reference(
    config: SpinalConfig, layout: DecoderLayout, policy: nn.Module, reference: nn.Module | None
) -> None:
    """Refuse, before training, patching probes that cannot run: missing extras or no usable reference."""
    needs = [("sklearn", "patch_lasso")] if config.patch_lasso else []
    needs += [("scipy", "patch_attribution")] if config.patch_attribution else []
    for module, flag in needs:
        try:
            __import__(module)
        except ImportError:
            raise ImportError(
                f"{flag}=True needs {module}: pip install \"spinal-callback[probes]\" (or set {flag}=False)"
            ) from None
    if reference is None and not callable(getattr(unwrap_parallel(policy), "disable_adapter", None)):
        raise ValueError(
            f"patch_interval={config.patch_interval} needs a reference model: give the trainer a "
            "ref_model and the callback the trainer (SpinalTrainerCallback(..., trainer=trainer) or "
            ".set_trainer(trainer)), pass reference= to the callback, give the LightningModule a "
            "`reference` attribute, or train a PEFT policy (its adapter-disabled base is the reference)"
        )
    if reference is not None:
        ref_layout = resolve_layout(reference)
        if (ref_layout.num_layers, ref_layout.vocab_size) != (layout.num_layers, layout.vocab_size):
            raise ValueError(
                f"Policy and reference differ: {layout.num_layers} blocks / vocabulary {layout.vocab_size} vs "
                f"{ref_layout.num_layers} blocks / vocabulary {ref_layout.vocab_size}; patching needs the same "
                "architecture"
            )


def tier_layers(config: SpinalConfig, num_layers: int) -> list[int] | None:
    """The layers a probe between full traces measures: every layer of each band whose signals the detector
    watches (``band/<band>/<metric>`` and ``layers/<band>/<metric>``, exact names or patterns) and the last
    layer. The forward runs to the last block in any case (its output feeds the head readout and the probe
    pairs' signals) and one layer's metrics cost little, so the last layer is charted at every probe.
    ``None`` (every layer) when that is all of them anyway."""
    from spinal_callback.early_warning.names import NameResolver
    from spinal_callback.geometry import BAND_NAMES, LAYER_METRICS
    from spinal_callback.geometry.selection import band_layers

    watched = NameResolver([*config.detector.signals, *config.detector.vectors])
    bands = {
        band for band in BAND_NAMES
        if any(watched(f"{kind}/{band}/{metric}") for kind in ("band", "layers") for metric in LAYER_METRICS)
    }
    layers = sorted({num_layers, *(layer for band in bands for layer in band_layers(band, num_layers, config.bands))})
    return layers if len(layers) < num_layers else None
