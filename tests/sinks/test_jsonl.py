import json
import math

import numpy as np
import pytest
import torch

from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.jsonl import TraceWriter, load_traces, read_trace_file, trace_record

from ._traces import make_trace


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_round_trip_with_nan_as_null(tmp_path):
    path = tmp_path / "deep" / "run" / "trace.jsonl"  # parents are created
    trace = make_trace(0.5)
    with TraceWriter(path) as writer:
        writer.write(trace_record(10, trace))
        writer.write({"type": "alert", "step": np.int64(12), "score": np.float32(3.5), "z": torch.tensor(2.0)})
        writer.write({"type": "patch", "step": 13, "effect": torch.tensor([0.5, float("nan")]), "v": float("-inf")})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    lines = text.splitlines()
    assert len(lines) == 3
    raw = json.loads(lines[0])
    assert raw["type"] == "trace" and raw["step"] == 10
    assert raw["layers"][-1]["transport"] is None  # 𝓛 of the last layer is NaN → null
    assert raw["bands"]["late"]["transport_curvature"] is None

    records = read_trace_file(path)
    assert records[1] == {"type": "alert", "step": 12, "score": 3.5, "z": 2.0}
    assert records[2] == {"type": "patch", "step": 13, "effect": [0.5, None], "v": None}
    [(step, back)] = load_traces(records)
    assert step == 10
    assert back.layers == trace.layers and back.num_tokens == trace.num_tokens
    for metric in LAYER_METRICS:
        assert all(_same(a, b) for a, b in zip(back.metric(metric), trace.metric(metric)))
    assert back.bands["mid"]["contraction"] == pytest.approx(trace.bands["mid"]["contraction"])


def test_trace_record_shape():
    record = trace_record(3, make_trace())
    assert record["type"] == "trace" and record["step"] == 3
    assert set(record) == {"type", "step", "layers", "bands", "num_tokens"}
    assert record["layers"][0]["layer"] == 1


def test_each_record_is_flushed_before_close(tmp_path):
    path = tmp_path / "trace.jsonl"
    writer = TraceWriter(path)
    writer.write({"type": "rollback", "step": 4, "to_step": 2})
    assert json.loads(path.read_text()) == {"type": "rollback", "step": 4, "to_step": 2}
    writer.close()
    writer.close()  # idempotent
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write({"type": "rollback", "step": 5})


def test_unwritable_path_fails_at_construction_naming_it(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file")
    path = blocker / "trace.jsonl"  # parent is a file: fails even as root
    with pytest.raises(OSError, match="not_a_dir"):
        TraceWriter(path)


@pytest.mark.parametrize(
    "record, error",
    [
        ({"type": "metrics", "step": 1}, ValueError),
        ({"step": 1}, ValueError),
        ({"type": "trace"}, ValueError),
        ({"type": "trace", "step": -1}, ValueError),
        ({"type": "trace", "step": 1.5}, ValueError),
        ({"type": "trace", "step": True}, ValueError),
        ({"type": "alert", "step": 1, "payload": object()}, TypeError),
        (["type", "trace"], TypeError),
    ],
)
def test_invalid_records_are_refused(tmp_path, record, error):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as writer, pytest.raises(error):
        writer.write(record)
    assert path.read_text() == ""  # nothing half-written


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "trace.jsonl"
    with TraceWriter(path) as writer:
        writer.write(trace_record(1, make_trace()))
        writer.write(trace_record(2, make_trace(1.0)))
    full = json.dumps({"type": "alert", "step": 3, "message": "x"})
    with open(path, "a") as handle:
        handle.write(full[: len(full) // 2])  # a crash mid-write
    with pytest.warns(RuntimeWarning, match="line 3"):
        records = read_trace_file(path)
    assert [r["step"] for r in records] == [1, 2]


def test_appending_after_a_crash_keeps_the_fragment_on_its_own_line(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text('{"type": "trace", "step": 1, "layers": []}\n{"type": "al')
    with TraceWriter(path) as writer:  # resumed run, append mode
        writer.write({"type": "alert", "step": 5})
    with pytest.warns(RuntimeWarning, match="line 2"):
        records = read_trace_file(path)
    assert [(r["type"], r["step"]) for r in records] == [("trace", 1), ("alert", 5)]


def test_write_mode_starts_a_new_file(tmp_path):
    path = tmp_path / "trace.jsonl"
    path.write_text('{"type": "alert", "step": 1}\n')
    with TraceWriter(path, mode="w") as writer:
        writer.write({"type": "alert", "step": 2})
    assert [r["step"] for r in read_trace_file(path)] == [2]
    with pytest.raises(ValueError, match="mode"):
        TraceWriter(path, mode="x")  # type: ignore[arg-type]


def test_missing_file_and_non_object_lines(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl"):
        read_trace_file(tmp_path / "nope.jsonl")
    path = tmp_path / "list.jsonl"
    path.write_text('{"type": "alert", "step": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 3"):
        read_trace_file(path)


def test_load_traces_sorts_by_step_and_the_last_record_of_a_step_wins():
    records = [
        trace_record(20, make_trace(2.0)),
        trace_record(10, make_trace(1.0)),
        {"type": "rollback", "step": 20},
        trace_record(20, make_trace(5.0)),  # step re-run after the rollback
    ]
    traces = load_traces(records)
    assert [step for step, _ in traces] == [10, 20]
    assert isinstance(traces[1][1], DepthTrace)
    assert traces[1][1].contraction[0] == 6.0
