"""Cross-rank agreement for alert handling: every rank takes the same decision in the same step.

Rank 0 decides (it alone sees the probe's scalars and writes files); :meth:`RankSync.broadcast` hands
its decision to every rank. Whether an action *succeeded* can differ by rank (rank 0 writes a disk
snapshot the others keep in memory; a restore may fail on one rank only), so every rank reports its
outcome through :meth:`RankSync.all_ok`, and all of them keep or drop the result together — no rank dies
alone, no rank waits for a collective another rank skipped.

The adapters give the monitor a :class:`RankSync`: Lightning through its strategy's collectives,
the Hugging Face callback through :class:`TorchDistributedSync`. On one process both are identities.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["LocalSync", "RankSync", "TorchDistributedSync"]


@runtime_checkable
class RankSync(Protocol):
    """The two collectives alert handling needs. Every rank must call them in the same order."""

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a picklable, plain-typed value)."""
        ...

    def all_ok(self, ok: bool) -> bool:
        """True on every rank iff ``ok`` is True on every rank."""
        ...


class LocalSync:
    """One process: both collectives are identities."""

    def broadcast(self, obj: Any) -> Any:
        return obj

    def all_ok(self, ok: bool) -> bool:
        return bool(ok)


class TorchDistributedSync:
    """Collectives over the default ``torch.distributed`` process group (identities when there is none).

    Object collectives (``broadcast_object_list``, ``all_gather_object``) work on every backend,
    NCCL included (they stage through the current CUDA device there).
    """

    @staticmethod
    def _initialized() -> bool:
        import torch.distributed as dist

        return bool(dist.is_available() and dist.is_initialized())

    def broadcast(self, obj: Any) -> Any:
        if not self._initialized():
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_ok(self, ok: bool) -> bool:
        if not self._initialized():
            return bool(ok)
        import torch.distributed as dist

        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, bool(ok))
        return all(bool(flag) for flag in gathered)
