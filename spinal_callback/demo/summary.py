"""The end-of-run summary both recipes print and save as ``run_summary.json``."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from spinal_callback.demo.inputs import RunInputs, accuracy_line

__all__ = ["start_end", "write_summary"]


def start_end(history: Sequence[Mapping[str, Any]], key: str) -> tuple[float, float] | None:
    """``key`` at its first log and averaged over the last quarter of its logs (at least one).

    Per-log DPO metrics are noisy (a few batches each), so the end value is smoothed; the start
    value is the first log, where policy and reference still agree. ``None`` if never logged.
    """
    values = [float(h[key]) for h in history if key in h and math.isfinite(float(h[key]))]
    if not values:
        return None
    tail = values[-max(1, len(values) // 4) :]
    return values[0], sum(tail) / len(tail)


def write_summary(
    title: str,
    inputs: RunInputs,
    accuracy_before: float | None,
    accuracy_after: float | None,
    dpo: Mapping[str, tuple[float, float] | None],
    log_dir: str | None,
    trace_path: str | None,
    output_dir: str,
    seconds: float,
) -> dict[str, Any]:
    """Print the human summary and write ``<output_dir>/run_summary.json``.

    Args:
        title: first line, e.g. ``"spinal demo: DPO with TRL"``.
        inputs: the run's inputs (for the pre-training result).
        accuracy_before: greedy accuracy at the start of DPO (``None``: not measurable).
        accuracy_after: greedy accuracy at the end of DPO.
        dpo: DPO metric name → (first logged value, mean of the last quarter of logs).
        log_dir: TensorBoard run directory (printed and saved as an absolute path).
        trace_path: the spinal JSON-lines trace (``None`` with ``--no-spinal``; absolute like ``log_dir``).
        output_dir: where ``run_summary.json`` goes.
        seconds: wall time of the whole run.

    Returns:
        The summary as written to JSON.
    """
    log_dir = os.path.abspath(log_dir) if log_dir else None
    trace_path = os.path.abspath(trace_path) if trace_path else None
    lines = [f"== {title} =="]
    sft = inputs.sft
    if sft is not None:
        how = "loaded from cache" if sft.cached else f"{sft.steps} steps, {sft.seconds:.0f}s"
        lines.append(accuracy_line("greedy accuracy before pre-training", sft.accuracy_before))
        lines.append(accuracy_line(f"greedy accuracy after pre-training ({how})", sft.accuracy_after))
    lines.append(accuracy_line("greedy accuracy before DPO", accuracy_before))
    lines.append(accuracy_line("greedy accuracy after DPO", accuracy_after))
    for name, pair in dpo.items():
        if pair is not None:
            lines.append(f"DPO {name}: {pair[0]:.3f} at the first log -> {pair[1]:.3f} (mean of the last quarter)")
    if log_dir:
        lines.append(f"TensorBoard logs: {log_dir}")
    lines.append(f"spinal trace: {trace_path}" if trace_path else "spinal trace: none (--no-spinal)")
    if log_dir:
        lines.append(f"view them with:  tensorboard --logdir {log_dir}")
    if trace_path:
        lines.append(f"report:          spinal report {trace_path}")
    lines.append(f"wall time: {seconds:.1f}s")
    print("\n".join(lines), flush=True)

    summary = {
        "sft": None if sft is None else {
            "accuracy_before": sft.accuracy_before, "accuracy_after": sft.accuracy_after,
            "steps": sft.steps, "seconds": sft.seconds, "cached": sft.cached, "path": sft.path,
        },
        "accuracy_before_dpo": accuracy_before,
        "accuracy_after_dpo": accuracy_after,
        "dpo": {name: None if pair is None else {"start": pair[0], "end": pair[1]} for name, pair in dpo.items()},
        "log_dir": log_dir,
        "trace_path": trace_path,
        "seconds": seconds,
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "run_summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary
