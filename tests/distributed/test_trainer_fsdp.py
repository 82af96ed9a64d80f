"""TRL's ``DPOTrainer`` under accelerate's FSDP (FSDP2, FSDP1 with and without ``use_orig_params``) on 2 gloo
CPU ranks with ``SpinalTrainerCallback`` attached: training runs on both ranks with no failed probe, the
callback is handed the FSDP-wrapped model, and the depth traces and probe-pair signals rank 0 writes equal
single-process probes of the same weights — the initial ones at step 0, the gathered full state dict at the
last step.

accelerate does not do FSDP on CPU: with ``use_cpu=True`` its ``AcceleratorState`` is ``MULTI_CPU`` and drops
the FSDP plugin without a word (the Trainer then trains with DDP). The script puts the plugin back right after
the Trainer builds its accelerator (``CpuFsdpDPOTrainer``); the Trainer's and TRL's FSDP preparation, the
training loop and the callback events are theirs, unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("trl")

from importlib.metadata import version

from packaging.version import Version

from .ranks import check_rank0_trace_file, run_two_ranks, without_update_size
from .ranks import close as _close

# The CPU shim re-installs accelerate's FSDP plugin through internals that exist from accelerate 1.15 and
# transformers 5 on (older versions also refuse FSDP on CPU earlier, in the plugin's device check, and lack
# ``TrainingArguments.fsdp_plugin_args``); the library path it exercises has no such floor. Under the oldest
# versions the declared ranges admit, the sharded probe itself is covered by test_sharding.py.
pytestmark = pytest.mark.skipif(
    Version(version("accelerate")) < Version("1.15") or Version(version("transformers")) < Version("5"),
    reason="the CPU FSDP shim of this test needs accelerate >= 1.15 and transformers >= 5 "
    f"(installed: accelerate {version('accelerate')}, transformers {version('transformers')})",
)

SCRIPT = Path(__file__).with_name("trainer_fsdp_script.py")
MAX_STEPS = 3


def _run(tmp_path: Path, kind: str) -> list[dict]:
    return run_two_ranks(SCRIPT, tmp_path, kind)


@pytest.mark.parametrize("kind", ["fsdp2", "fsdp1-orig", "fsdp1-flat"])
def test_dpo_trainer_under_accelerate_fsdp_probes_like_a_single_process(tmp_path: Path, kind: str) -> None:
    ranks = _run(tmp_path, kind)
    steps = list(range(MAX_STEPS + 1))
    for result in ranks:
        assert result["global_step"] == MAX_STEPS
        assert result["checkpointing"]  # TRL's default activation checkpointing, under FSDP
        assert result["warnings"] == [] and result["failures"] == 0
        assert [s["step"] for s in result["seen"]] == steps
        assert not any(s["failed"] for s in result["seen"])
        # the Trainer hands its callbacks the FSDP-wrapped model
        assert {s["sharding"] for s in result["seen"]} == {kind.split("-")[0]}
        assert all(math.isfinite(loss) for loss in result["losses"])
    # every rank's probe is the same (the gathers are collectives); only rank 0 writes the trace file
    assert _close(without_update_size(ranks[0]["seen"]), without_update_size(ranks[1]["seen"]))
    # step 0 (before any update) and the last step equal the single-process probes of the initial weights
    # and of the trained weights gathered from the shards
    check_rank0_trace_file(ranks, tmp_path, kind, steps)
