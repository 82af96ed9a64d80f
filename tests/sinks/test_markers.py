"""Alert and rollback markers: scalar series that line up with the metrics, and lines on the heatmaps, at
exactly the steps of the trace file's alert and rollback records (written through ``MonitorOutputs``)."""

from types import SimpleNamespace

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from spinal_callback.early_warning.alerts import Alert, AlertReason
from spinal_callback.monitor.outputs import MonitorOutputs, config_markdown
from spinal_callback.monitor.probing import GeometryResult
from spinal_callback.recovery.guard import GuardOutcome
from spinal_callback.recovery.records import RollbackRecord
from spinal_callback.sinks.heatmap_figure import ALERT_COLOR, figure_boxes
from spinal_callback.sinks.jsonl import TraceWriter, read_trace_file
from spinal_callback.sinks.tensorboard import MARKER_TAGS, TensorBoardSink

from ._traces import make_trace

ALERTS = {6: 2, 14: 1}  # step → alerts raised there
ROLLBACKS = {16}


def _alert(step: int, signal: str) -> Alert:
    return Alert(step, AlertReason.TREND_BREAK, signal, 1.0, 0.5, 7.0, 5.0, (5, 6), step - 2, step - 4, "moved")


def _rollback(step: int) -> RollbackRecord:
    return RollbackRecord(step, 10, 12, 0.5, 0.5, 1, 3, (), f"rolled back from {step} to 10")


def _run(tmp_path) -> tuple:
    sink = TensorBoardSink(SummaryWriter(str(tmp_path / "tb")), owns_writer=True)
    outputs = MonitorOutputs(sink, TraceWriter(tmp_path / "trace.jsonl"), strict=True)
    guard = SimpleNamespace(alerts_total=0, rollback=None, failures=0, scores=dict)
    for step in range(0, 22, 2):
        trace = make_trace(0.1 * step)
        if step % 4:  # between full traces: the late band only
            trace.computed = [5, 6]
        outputs.geometry(GeometryResult(step, trace, None, 0.01), failures=0)
        alerts = [_alert(step, f"band/late/s{i}") for i in range(ALERTS.get(step, 0))]
        guard.alerts_total += len(alerts)
        outcome = GuardOutcome(alerts=alerts, rollback=_rollback(step) if step in ROLLBACKS else None)
        outputs.guard_outcome(step, outcome, guard, log_alerts=False)  # type: ignore[arg-type]
    outputs.close()
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return read_trace_file(tmp_path / "trace.jsonl"), acc


def test_marker_series_hold_exactly_the_trace_files_alert_and_rollback_steps(tmp_path):
    records, acc = _run(tmp_path)
    alert_steps = {r["step"] for r in records if r["type"] == "alert"}
    rollback_steps = {r["step"] for r in records if r["type"] == "rollback"}
    assert alert_steps == set(ALERTS) and rollback_steps == ROLLBACKS
    alerts = [(e.step, e.value) for e in acc.Scalars(MARKER_TAGS[0])]
    rollbacks = [(e.step, e.value) for e in acc.Scalars(MARKER_TAGS[1])]
    probe_steps = [r["step"] for r in records if r["type"] == "trace"]
    assert [s for s, _ in alerts] == probe_steps == [s for s, _ in rollbacks]  # lined up with the metrics
    assert {s for s, v in alerts if v > 0} == alert_steps
    assert {s for s, v in rollbacks if v > 0} == rollback_steps
    counts = {s: sum(r["type"] == "alert" and r["step"] == s for r in records) for s in alert_steps}
    assert {s: v for s, v in alerts if v > 0} == counts  # the value is the number of alerts at that step
    assert all(v in (0.0, 1.0) for _, v in rollbacks)


def test_heatmaps_are_drawn_once_per_step_with_the_events_of_that_step(tmp_path):
    _, acc = _run(tmp_path)
    images = acc.Images("spinal/heatmap/entropy")
    steps = [im.step for im in images]
    # full traces at 0, 4, …, 20, plus the event steps that were between them (6, 14) — each step once
    assert steps == sorted(set(steps)) == [0, 4, 6, 8, 12, 14, 16, 20]
    from io import BytesIO

    from PIL import Image

    def red_columns(image) -> int:
        pixels = np.asarray(Image.open(BytesIO(image.encoded_image_string)).convert("RGB"))
        box = figure_boxes(2)[0]
        area = pixels[box.top : box.bottom, box.left : box.right]
        return int((area == np.array(ALERT_COLOR, dtype=np.uint8)).all(axis=-1).all(axis=0).sum())

    by_step = {im.step: im for im in images}
    assert red_columns(by_step[4]) == 0  # before the first alert
    assert red_columns(by_step[6]) > 0  # the alert raised after step 6's probe is on step 6's image
    assert red_columns(by_step[20]) >= red_columns(by_step[6])


def test_config_text_is_a_code_block_that_cannot_wrap_mid_word():
    from spinal_callback.config import SpinalConfig

    layout = SimpleNamespace(model=object(), architecture="llama", num_layers=9, vocab_size=99)
    text = config_markdown(SpinalConfig(), layout, 16)  # type: ignore[arg-type]
    head, _, block = text.partition("```\n")
    assert "9 blocks" in head and block.endswith("```")
    rows = block.removesuffix("```").splitlines()
    assert any(row.split()[0] == "interval" for row in rows)
    assert any(row.startswith("detector.") for row in rows)  # nested settings flattened
    assert "|" not in block
