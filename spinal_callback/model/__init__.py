"""The monitored model: where its blocks and logit lens live, how to run it for a probe, the probe batch.

- :mod:`~spinal_callback.model.architectures` — registry of decoder layouts, one unwrap of wrappers.
- :mod:`~spinal_callback.model.runner` — the one block runner: a forward that reads or replaces block
  outputs and stops after the deepest block needed (geometry capture, reference scoring, patching).
- :mod:`~spinal_callback.model.discovery` — the layout of an unregistered causal LM (with
  :mod:`~spinal_callback.model.candidates` and :mod:`~spinal_callback.model.check_forward`).
- :mod:`~spinal_callback.model.sharding` — probing FSDP1, FSDP2 and ZeRO-3 models;
  :mod:`~spinal_callback.model.sharding_rules` — what is refused under which sharding, at setup.
- :mod:`~spinal_callback.model.pairing` — a policy paired with its reference for patching.
- :mod:`~spinal_callback.model.probe_batch` — the fixed probe set, tokenized and collated; token positions.
"""

from spinal_callback.model.architectures import (
    ArchitectureSpec,
    DecoderLayout,
    UnsupportedArchitectureError,
    register_architecture,
    registered_architectures,
    resolve_layout,
    unwrap_model,
    unwrap_parallel,
)

__all__ = [
    "ArchitectureSpec",
    "DecoderLayout",
    "UnsupportedArchitectureError",
    "register_architecture",
    "registered_architectures",
    "resolve_layout",
    "unwrap_model",
    "unwrap_parallel",
]
