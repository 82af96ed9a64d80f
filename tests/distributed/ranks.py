"""Two gloo CPU ranks for the sharding tests: launch a script as ranks 0 and 1 (torchrun's environment
variables) and read what each wrote; a log handler the scripts use to collect spinal's warnings."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import NoReturn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_two_ranks(script: Path, tmp_path: Path, kind: str, **extra_env: str) -> list[dict]:
    """Run ``script OUT_DIR KIND`` as 2 ranks; return each rank's ``OUT_DIR/<kind>-rank<r>.json``.

    Fails with both ranks' stderr tails when either exits non-zero; kills a rank still running after 300 s.
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), **extra_env}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path), kind],
            env={**env, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    try:
        errors = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-3000:] for e in errors)
    return [json.loads((tmp_path / f"{kind}-rank{rank}.json").read_text()) for rank in (0, 1)]


def close(a: object, b: object, tol: float = 1e-4) -> bool:
    """Equal structures; numbers within ``tol`` relative (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def shared(signals: dict) -> dict:
    """The probe signals every rank measures alike: all but ``update/size``, which each rank reads on its own
    shards of the weights."""
    return {k: v for k, v in signals.items() if k != "update/size"}


def without_update_size(seen: list[dict]) -> list[dict]:
    """Per-probe records with their ``signals`` reduced to :func:`shared`."""
    return [{**s, "signals": shared(s["signals"] or {})} for s in seen]


def _trace(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("type", "step", "signals", "noise", "metrics")}


def check_rank0_trace_file(ranks: list[dict], tmp_path: Path, kind: str, steps: list[int]) -> list[dict]:
    """Only rank 0 wrote ``<tmp>/<kind>-out/spinal/spinal_trace.jsonl``; its depth traces (4 layers) are at
    ``steps``; the first equals the single-process probe of the initial weights (``ranks[0]["before"]``), the
    last the one of the gathered trained weights (``ranks[0]["after"]``), and training moved them.
    Returns every record of the file."""
    assert ranks[1]["trace_path"] is None
    trace_path = Path(ranks[0]["trace_path"])
    assert trace_path == tmp_path / f"{kind}-out" / "spinal" / "spinal_trace.jsonl"
    records = [json.loads(line) for line in trace_path.read_text().splitlines()]
    traces = [r for r in records if r["type"] == "trace"]
    assert [r["step"] for r in traces] == steps
    assert len(traces[0]["layers"]) == 4
    before, after = ranks[0]["before"], ranks[0]["after"]
    assert close(_trace(traces[0]), before["trace"])
    assert close(shared(traces[0]["signals"]), before["signals"])
    assert close(_trace(traces[-1]), after["trace"])
    assert close(shared(traces[-1]["signals"]), after["signals"])
    # the update size, read on rank 0's shards: none at step 0 (no earlier reading), then the weights moved
    assert "update/size" not in traces[0]["signals"]
    assert all(0.0 < r["signals"]["update/size"] < 1.0 for r in traces[1:]), [r["signals"] for r in traces]
    assert not close(_trace(traces[-1]), before["trace"])  # training moved the weights
    return records


class Recorder(logging.Handler):
    """Keeps every log record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def finish_rank(out_dir: str | Path) -> NoReturn:
    """End a rank of a two-rank script once its results are written: tear the process group down on every rank,
    wait until every rank has, then exit this process at once (``os._exit(0)``).

    A rank that exits while the other still holds its gloo process group closes the sockets under that rank's
    gloo threads, and the other process can abort ("terminate called without an active exception"; seen in CI
    under torch 2.13, on ranks that had written their results). So: a barrier, ``destroy_process_group`` on each
    rank, then a handshake through files in ``out_dir`` (no sockets left to close). Even then one rank aborted the
    same way at interpreter exit, after both had torn the group down and written their results (a torch C++
    thread destroyed while joinable during static teardown, on a loaded 2-core machine), so the process ends
    without the interpreter's teardown: its results are already on disk and its streams are flushed first.
    """
    import time

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        dist.barrier()
        dist.destroy_process_group()
        Path(out_dir, f".left-rank{rank}").touch()
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not all(Path(out_dir, f".left-rank{r}").exists()
                                                      for r in range(world)):
            time.sleep(0.05)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
