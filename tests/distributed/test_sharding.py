"""Sharded models (FSDP1 with and without ``use_orig_params``, FSDP2 ``fully_shard``) on 2 gloo CPU ranks:
the probe's depth trace, head readout and probe-pair signals, and the patching probe between a sharded policy
and a sharded reference (exact both ways, low-rank, LASSO, attribution), equal the single-process ones of the
same weights; a second probe and a training step (its loss and gradient norm) are the same after them;
rollback is refused at setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from .ranks import close as _close
from .ranks import run_two_ranks

SCRIPT = Path(__file__).with_name("sharded_probe_script.py")



@pytest.mark.parametrize("kind", ["fsdp1-orig", "fsdp1-flat", "fsdp2"])
def test_sharded_probe_equals_the_single_process_probe(tmp_path: Path, kind: str) -> None:
    ranks = run_two_ranks(SCRIPT, tmp_path, kind)
    for rank in (0, 1):
        result = ranks[rank]
        assert result["sharded"]["sharding"] == kind.split("-")[0]
        assert result["sharded"]["vocab"] == result["reference"]["vocab"] > 0
        for key in ("trace", "logprobs", "log_z", "max_logit"):
            assert _close(result["sharded"][key], result["reference"][key]), (rank, key)
            assert _close(result["again"][key], result["reference"][key]), (rank, key)
        assert _close(result["monitor"]["sharded"], result["monitor"]["single"])  # trace and pairs/… signals
        assert _close(result["step"]["sharded"], result["step"]["single"]), result["step"]
        assert len(result["refusals"]) == 1
        assert "on_alert='rollback' is not supported" in result["refusals"][0]
        single, sharded = result["patch"]["single"], result["patch"]["sharded"]
        exact = single["first"]["record"]["exact"]
        assert set(exact) == {"policy_to_reference", "reference_to_policy"}
        assert {"low_rank", "lasso", "attribution"} <= set(single["first"]["record"]), single["first"]["record"]
        assert abs(exact["policy_to_reference"]["total_effect"]) > 1e-3  # the policy and the reference differ
        assert max(abs(v) for v in exact["policy_to_reference"]["effect"]) > 1e-3
        for run in ("first", "again"):
            for key in ("record", "scalars"):
                assert _close(sharded[run][key], single["first"][key]), (rank, run, key)
