"""Two gloo CPU ranks for the sharding tests: launch a script as ranks 0 and 1 (torchrun's environment
variables) and read what each wrote; a log handler the scripts use to collect spinal's warnings."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path


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


class Recorder(logging.Handler):
    """Keeps every log record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
