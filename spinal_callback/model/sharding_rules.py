"""What works under which sharding, decided at setup: the refusals and how messages name each sharding.

Geometry probes, probe-pair signals, the detector, alerts and ``"stop"`` work under every sharding
(:mod:`spinal_callback.model.sharding`); the patching probes under FSDP1 and FSDP2. Rollback snapshots
would hold one rank's view of the model and restore it as if it were the model, so they are refused under
every sharding; patching probes are refused under ZeRO-3, where they have never run (DeepSpeed does not run
on the CPU test machines).
"""

from __future__ import annotations

from torch import nn

from spinal_callback.model.sharding import Sharding, sharding_of

__all__ = ["PATCHING_SHARDINGS", "SHARDING_NAMES", "check_patching_sharding", "check_sharded_config"]

#: How messages name each sharding.
SHARDING_NAMES = {
    "fsdp1": "FSDP (FullyShardedDataParallel)",
    "fsdp2": "FSDP2 (fully_shard)",
    "zero3": "DeepSpeed ZeRO-3",
}


#: Shardings the patching probes run under (2 gloo CPU ranks in ``tests/distributed/test_sharding.py``).
PATCHING_SHARDINGS: tuple[Sharding, ...] = ("fsdp1", "fsdp2")


def check_patching_sharding(kind: Sharding | None) -> None:
    """Refuse the patching probes for a sharding they do not run under (ZeRO-3); ``None`` is fine.

    Raises:
        ValueError: ``kind`` is not ``None`` and not in :data:`PATCHING_SHARDINGS`.
    """
    if kind is None or kind in PATCHING_SHARDINGS:
        return
    raise ValueError(
        f"patching probes (patch_interval > 0) are not supported for a model sharded with {SHARDING_NAMES[kind]}: "
        "they run under FSDP (FullyShardedDataParallel, use_orig_params True or False) and FSDP2 (fully_shard), "
        "and have never been run under ZeRO-3. Set patch_interval=0 (geometry probes and the detector work "
        "under ZeRO-3), shard with FSDP or FSDP2, or run `spinal audit` on saved checkpoints for the patching view."
    )


def check_sharded_config(model: nn.Module, *, rollback: bool, patching: bool) -> Sharding | None:
    """Refuse, at setup, what does not work on a sharded model; return the sharding.

    Geometry probes, probe-pair signals, the detector, alerts and ``"stop"`` work under every sharding;
    the patching probes (exact in both directions, low-rank, LASSO and attribution patching) under FSDP1
    and FSDP2 (:data:`PATCHING_SHARDINGS`). Rollback snapshots would copy one rank's shard (or an empty
    placeholder) and restore it as if it were the model: refused under every sharding. Patching probes
    are refused under ZeRO-3, where they have never run. The messages name what works instead.

    Raises:
        ValueError: ``rollback`` asked for on a sharded model, or ``patching`` on a ZeRO-3 model.
    """
    kind = sharding_of(model)
    if kind is None:
        return None
    name = SHARDING_NAMES[kind]
    if rollback:
        raise ValueError(
            f"on_alert='rollback' is not supported for a model sharded with {name}: snapshots would hold one "
            "rank's shard, not the model. Use on_alert=('log', 'stop') and resume from the trainer's own "
            "checkpoint, or train with DDP (unsharded) to use rollback."
        )
    if patching:
        check_patching_sharding(kind)
    return kind
