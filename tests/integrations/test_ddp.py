"""Distributed: two CPU (gloo) DDP ranks take the same decision and restore identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

SCRIPT = Path(__file__).with_name("ddp_rollback_script.py")


def test_two_ranks_roll_back_in_lockstep_and_only_rank_zero_writes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rollbacks"] == ranks[1]["rollbacks"] == 1
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["alerts_total"] == ranks[1]["alerts_total"] >= 1
    assert ranks[0]["digest"] == ranks[1]["digest"]  # identical weights after restore and more training
    assert ranks[0]["global_step"] == ranks[1]["global_step"]
    # files: one trace file (rank 0), and rank 1 never opened a writer
    assert ranks[0]["trace_path"] and ranks[1]["trace_path"] is None and ranks[1]["log_dir"] is None
    lines = (tmp_path / "trace.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sum(r["type"] == "rollback" for r in records) == 1
    steps = [r["step"] for r in records if r["type"] == "trace"]
    assert steps == sorted(set(steps)) and steps[0] == 0  # one writer: each step once, in order
    event_files = [p for p in (tmp_path / "tb").rglob("events.out.tfevents.*") if "spinal_layers" not in p.parts]
    assert len(event_files) == 1, event_files  # the main run's (the per-layer runs are rank 0's too)


FAILURE_SCRIPT = Path(__file__).with_name("ddp_failure_script.py")


def test_a_snapshot_write_failing_on_rank_zero_only_is_dropped_everywhere_and_nobody_hangs(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(  # a rank stuck in a collective another rank skipped would hit the timeout
        [sys.executable, str(FAILURE_SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"failure_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["storage"] for r in ranks] == ["disk", "memory"]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 11  # both finished
    assert ranks[0]["failures"] == ranks[1]["failures"] == 1  # both report the failure
    assert len(ranks[0]["warnings"]) == len(ranks[1]["warnings"]) == 1
    assert "snapshot at step 8 failed (SnapshotWriteError" in ranks[0]["warnings"][0]
    assert "snapshot at step 8 failed (it failed on another rank)" in ranks[1]["warnings"][0]
    assert ranks[0]["steps_after_failure"] == ranks[1]["steps_after_failure"] == [0, 2, 4, 6]  # keep=4
    # the fault rolled both back to the same snapshot (step 8 was dropped everywhere) with identical weights
    assert ranks[0]["rollbacks"] == ranks[1]["rollbacks"] == 1
    assert ranks[0]["history"] == ranks[1]["history"] and ranks[0]["history"][0]["to_step"] == 6
    assert ranks[0]["steps"] == ranks[1]["steps"]
    assert ranks[0]["digest"] == ranks[1]["digest"]
    assert not (tmp_path / "snaps" / "spinal-snapshot-step000000000008.pt").exists()
