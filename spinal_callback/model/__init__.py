"""The monitored model: where its blocks and logit lens live, how to run it for a probe, the probe batch.

- :mod:`~spinal_callback.model.architectures` — registry of decoder layouts, one unwrap of wrappers.
- :mod:`~spinal_callback.model.capture` — read-only capture of block outputs (hook lifecycle).
- :mod:`~spinal_callback.model.runner` — one forward up to the last block with block edits (patching).
- :mod:`~spinal_callback.model.probe_batch` — the fixed probe set, tokenized and collated.
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
