"""The end-of-run summary both recipes print and save as ``run_summary.json``: accuracies, DPO metrics, the
alerts and rollbacks of the spinal trace, where the logs and the saved models are, and the commands to look
at them (``tensorboard``, ``spinal report``, ``spinal audit SFT DPO``)."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from spinal_callback.demo.inputs import RunInputs, accuracy_line

__all__ = ["audit_command", "events_of_trace", "save_policy", "sft_model_of", "start_end", "write_summary"]

#: Longest message shown per alert / rollback line (the trace file and ``spinal report`` have the full text).
_MESSAGE_CHARS = 140


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


def save_policy(model: Any, tokenizer: Any, output_dir: str) -> str:
    """Save the trained policy (``save_pretrained``: the full model, or a PEFT model's adapter) and its
    tokenizer to ``<output_dir>/dpo_policy``; returns that directory as an absolute path."""
    path = os.path.abspath(os.path.join(output_dir, "dpo_policy"))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def sft_model_of(args: argparse.Namespace, inputs: RunInputs) -> str:
    """What DPO started from: the built-in model's cache directory, or ``--model`` (absolute if a directory)."""
    if inputs.sft is not None:
        return os.path.abspath(inputs.sft.path)
    return os.path.abspath(args.model) if os.path.isdir(args.model) else str(args.model)


def events_of_trace(trace_path: str | None) -> list[dict[str, Any]]:
    """The ``"alert"`` and ``"rollback"`` records of a spinal trace file, in file order (``[]`` without one)."""
    if not trace_path or not os.path.isfile(trace_path):
        return []
    from spinal_callback.sinks.jsonl import read_trace_file

    return [r for r in read_trace_file(trace_path) if r.get("type") in ("alert", "rollback")]


def audit_command(sft_model: str, policy: str, output_dir: str) -> str:
    """``spinal audit SFT DPO --labels SFT,DPO --out <output_dir>/audit`` for these two models."""
    out = os.path.join(os.path.abspath(output_dir), "audit")
    return f"spinal audit {sft_model} {policy} --labels SFT,DPO --out {out}"


def _event_line(record: Mapping[str, Any]) -> str:
    kind = record.get("type")
    if kind == "alert":
        what = f"alert ({record.get('reason', '?')} on {record.get('signal', '?')})"
    else:
        what = f"rollback to step {record.get('to_step', '?')}"
    message = " ".join(str(record.get("message") or "").split())
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return f"  step {record.get('step')}: {what}" + (f" — {message}" if message else "")


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
    *,
    sft_model: str | None = None,
    policy_path: str | None = None,
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
        sft_model: the model DPO started from (the built-in model's cache directory, or ``--model``).
        policy_path: where the trained policy was saved (``None``: not saved).

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
    events = events_of_trace(trace_path)
    alerts = [e for e in events if e.get("type") == "alert"]
    rollbacks = [e for e in events if e.get("type") == "rollback"]
    if trace_path:
        lines.append(f"spinal alerts: {len(alerts)}, rollbacks: {len(rollbacks)}" + (":" if events else ""))
        lines += [_event_line(e) for e in events]
    if sft_model:
        lines.append(f"SFT model (start of DPO): {sft_model}")
    if policy_path:
        lines.append(f"DPO policy (end of DPO):  {policy_path}")
    if log_dir:
        lines.append(f"TensorBoard logs: {log_dir}")
    lines.append(f"spinal trace: {trace_path}" if trace_path else "spinal trace: none (--no-spinal)")
    if log_dir:
        lines.append(f"view them with:  tensorboard --logdir {log_dir}")
    if trace_path:
        lines.append(f"report:          spinal report {trace_path}")
    audit = audit_command(sft_model, policy_path, output_dir) if sft_model and policy_path else None
    if audit:
        lines.append(f"before vs after: {audit}")
    lines.append(f"wall time: {seconds:.1f}s")
    print("\n".join(lines), flush=True)

    summary = {
        "sft": None
        if sft is None
        else {
            "accuracy_before": sft.accuracy_before,
            "accuracy_after": sft.accuracy_after,
            "steps": sft.steps,
            "seconds": sft.seconds,
            "cached": sft.cached,
            "path": sft.path,
        },
        "accuracy_before_dpo": accuracy_before,
        "accuracy_after_dpo": accuracy_after,
        "dpo": {name: None if pair is None else {"start": pair[0], "end": pair[1]} for name, pair in dpo.items()},
        "log_dir": log_dir,
        "trace_path": trace_path,
        "alerts": alerts,
        "rollbacks": rollbacks,
        "sft_model": sft_model,
        "dpo_policy": policy_path,
        "audit_command": audit,
        "seconds": seconds,
    }
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "run_summary.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary
