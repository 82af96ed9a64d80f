"""``spinal calibrate``: detector thresholds from a user's own healthy runs.

Each trace file of a run the user trusts is replayed exactly as the monitor fed its detector — the band
summaries, the per-layer vectors, the probe-forward ``"signals"`` and the trainer ``"metrics"`` of every
``"trace"`` record, and the forward-free signals and metrics of every ``"signals"`` record (the readings
between probes) — and :func:`spinal_callback.early_warning.calibrate` sets every threshold to the target
false-alarm rate. The result is a JSON file that ``SpinalConfig(detector="detector.json")`` loads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from spinal_callback.config.detector import DetectorConfig
from spinal_callback.early_warning import calibrate, false_alarm_rate, signals_from_bands, vectors_from_trace
from spinal_callback.early_warning.calibrate import THRESHOLD_FIELDS
from spinal_callback.sinks.jsonl import read_trace_file

__all__ = ["CalibrationInputError", "observations_from_records", "run_calibrate"]


class CalibrationInputError(ValueError):
    """The trace files cannot be calibrated on (none given, unreadable, or without trace records)."""


def observations_from_records(
    records: Sequence[Mapping[str, Any]],
) -> list[tuple[int, dict[str, float], dict, dict[str, float]]]:
    """``(step, signals, vectors, noise)`` per ``"trace"`` or ``"signals"`` record: what the monitor fed its detector
    at that probe or reading."""
    out = []
    for record in records:
        if record.get("type") not in ("trace", "signals"):
            continue
        signals, _ = signals_from_bands(record.get("bands", {}))
        for key in ("signals", "metrics"):
            for name, value in (record.get(key) or {}).items():
                signals[name] = math.nan if value is None else float(value)
        vectors, _ = vectors_from_trace(record)
        noise = {k: float(v) for k, v in (record.get("noise") or {}).items() if v is not None}
        out.append((int(record["step"]), signals, vectors, noise))
    return out


def run_calibrate(paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *,
                  base: DetectorConfig | None = None, target_rate: float = 0.5) -> dict[str, Any]:
    """Calibrate ``base`` (default: the shipped :class:`DetectorConfig`) on the trace files ``paths``.

    Returns:
        A summary: the thresholds, the runs and probe steps used, and the false-alarm rate the new settings
        give on those same runs (in-sample: check it on runs you kept apart).

    Raises:
        CalibrationInputError: no file, a file that cannot be read, or no trace record in any of them.
    """
    if not paths:
        raise CalibrationInputError("give at least one trace file (spinal_trace.jsonl) of a healthy run")
    streams = []
    for path in paths:
        try:
            records = read_trace_file(path)
        except (OSError, ValueError) as exc:
            raise CalibrationInputError(f"cannot read trace file {os.fspath(path)!r}: {exc}") from None
        stream = observations_from_records(records)
        if stream:
            streams.append(stream)
    if not streams:
        raise CalibrationInputError("none of the files holds a 'trace' or 'signals' record; pass spinal_trace.jsonl "
                                    "files")
    try:
        config = calibrate(streams, base or DetectorConfig(), target_rate=target_rate)
    except ValueError as exc:
        raise CalibrationInputError(str(exc)) from None
    config.to_json(output)
    return {
        "output": os.fspath(output),
        "runs": len(streams),
        "probe_steps": sum(len(s) for s in streams),
        "thresholds": {name: getattr(config, name) for name in THRESHOLD_FIELDS.values()},
        "false_alarms_per_1000_in_sample": false_alarm_rate(streams, config),
    }
