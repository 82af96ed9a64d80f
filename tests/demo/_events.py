"""Reading what a recipe run left behind: TensorBoard scalars, the trace file, run_summary.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def scalars(log_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of every event file under ``log_dir``: tag -> [(step, value), ...]."""
    out: dict[str, list[tuple[int, float]]] = {}
    for run_dir in sorted({events.parent for events in Path(log_dir).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def summary(output_dir: str | Path) -> dict[str, Any]:
    """The ``run_summary.json`` a recipe writes at the end."""
    return json.loads((Path(output_dir) / "run_summary.json").read_text())


def trace_records(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a trace file, one per line."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
