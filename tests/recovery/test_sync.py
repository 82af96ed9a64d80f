"""``RankSync`` implementations on one process: both collectives are identities."""

from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from spinal_callback.recovery.sync import LocalSync, RankSync, TorchDistributedSync

VALUES = [None, 0, 7, "step", {"to_step": 4, "unreadable": [[6, "EOFError: "]]}, [1, 2.5]]


@pytest.mark.parametrize("sync", [LocalSync(), TorchDistributedSync()], ids=["local", "torch-uninitialised"])
def test_one_process_collectives_are_identities(sync: RankSync) -> None:
    assert isinstance(sync, RankSync)
    for value in VALUES:
        assert sync.broadcast(value) == value
    assert sync.all_ok(True) is True and sync.all_ok(False) is False
    assert sync.all_ok(1) is True and sync.all_ok(0) is False  # type: ignore[arg-type]  # plain bools out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_torch_distributed_sync_over_a_one_process_gloo_group() -> None:
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        sync = TorchDistributedSync()  # the real object collectives, over a group of one
        for value in VALUES:
            assert sync.broadcast(value) == value
        assert sync.all_ok(True) is True and sync.all_ok(False) is False
    finally:
        dist.destroy_process_group()
