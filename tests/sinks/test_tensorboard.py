import math
import re

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from torch.utils.tensorboard import SummaryWriter

from spinal_callback.geometry.bands import band_statistics
from spinal_callback.geometry.trace import LAYER_METRICS, DepthTrace
from spinal_callback.sinks.heatmap_figure import FIGURE_HEIGHT, figure_boxes, figure_width
from spinal_callback.sinks.tensorboard import (
    MARKER_TAGS,
    TensorBoardSink,
    custom_scalar_layout,
    trace_scalars,
)

from ._traces import NAN, make_trace

# make_trace(): transport NaN at L6, transport curvature defined at L2-L4, hidden curvature at L2-L5.
PER_LAYER_TAGS = (
    {f"spinal/{m}/L{i}" for m in ("contraction", "entropy", "effective_rank") for i in range(1, 7)}
    | {f"spinal/transport/L{i}" for i in range(1, 6)}
    | {f"spinal/transport_curvature/L{i}" for i in range(2, 5)}
    | {f"spinal/hidden_curvature/L{i}" for i in range(2, 6)}
)
BAND_TAGS = {
    f"spinal/band/{band}/{m}{suffix}"
    for band in ("early", "mid", "late")
    for m in LAYER_METRICS
    for suffix in ("", "_min", "_max")
    if not (band == "late" and m == "transport_curvature")  # layers 5, 6: all NaN
}


def _accumulator(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


class RecordingWriter:
    """SummaryWriter stand-in that records every call."""

    def __init__(self):
        self.calls = []
        self.closed = False

    def add_scalar(self, tag, value, step=None):
        self.calls.append(("scalar", tag, value, step))

    def add_text(self, tag, text, step=None):
        self.calls.append(("text", tag, text, step))

    def add_image(self, tag, image, step=None, dataformats="CHW"):
        self.calls.append(("image", tag, image, step, dataformats))

    def add_custom_scalars(self, layout):
        self.calls.append(("layout", layout))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.closed = True

    def kinds(self, kind):
        return [c for c in self.calls if c[0] == kind]


def test_trace_scalars_tags_and_values():
    scalars = trace_scalars(make_trace(1.0))
    assert set(scalars) == PER_LAYER_TAGS | BAND_TAGS
    assert all(math.isfinite(v) for v in scalars.values())
    assert scalars["spinal/contraction/L3"] == 4.0
    assert scalars["spinal/transport/L5"] == pytest.approx(1.5)
    assert scalars["spinal/band/early/contraction"] == pytest.approx(2.5)
    assert scalars["spinal/band/early/contraction_min"] == 2.0
    assert scalars["spinal/band/early/contraction_max"] == 3.0
    assert scalars["spinal/band/late/entropy_min"] == pytest.approx(2.0)  # 5 - 0.5·6
    assert scalars["spinal/band/late/entropy_max"] == pytest.approx(2.5)
    # a band with a single finite value: mean = min = max
    for suffix in ("", "_min", "_max"):
        assert scalars[f"spinal/band/late/transport{suffix}"] == pytest.approx(1.5)
        assert scalars[f"spinal/band/early/hidden_curvature{suffix}"] == pytest.approx(0.4)


def test_band_ranges_come_from_the_trace_bands():
    trace = make_trace()
    trace.bands = {"early": {"layers": [1, 1]}, "mid": {"layers": [2, 5]}, "late": {"layers": [6, 6]}}
    stats = band_statistics(trace)
    assert stats["mid"]["contraction"] == (pytest.approx(3.5), 2.0, 5.0)
    assert stats["early"]["contraction"] == (1.0, 1.0, 1.0)
    assert math.isnan(stats["late"]["transport"][0])  # only layer 6, whose 𝓛 is NaN
    scalars = trace_scalars(trace)
    assert "spinal/band/late/transport" not in scalars
    assert scalars["spinal/band/mid/effective_rank_max"] == 50.0


def test_band_ranges_are_layer_indices_not_positions():
    trace = DepthTrace(
        layers=[2, 4, 6],
        contraction=[1.0, 2.0, 3.0],
        transport=[0.1, 0.2, NAN],
        entropy=[1.0, 1.0, 1.0],
        effective_rank=[1.0, 2.0, 3.0],
        transport_curvature=[NAN, NAN, NAN],
        hidden_curvature=[NAN, 0.5, NAN],
        bands={"late": {"layers": [4, 6], "contraction": 2.5}, "empty": {"layers": []}},
    )
    stats = band_statistics(trace)
    assert set(stats) == {"late"}
    assert stats["late"]["contraction"] == (2.5, 2.0, 3.0)


def test_traces_without_bands_use_thirds_of_depth():
    trace = make_trace()
    trace.bands = {}
    assert trace_scalars(trace) == trace_scalars(make_trace())


def test_custom_scalar_layout():
    layout = custom_scalar_layout(6)
    assert set(layout) == {"spinal: per-layer", "spinal: bands", "spinal: alerts and rollbacks"}
    per_layer = layout["spinal: per-layer"]
    assert len(per_layer) == len(LAYER_METRICS)
    tags = sorted(PER_LAYER_TAGS | BAND_TAGS | {"spinal/contraction/L12"})
    for metric in LAYER_METRICS:
        [(kind, patterns)] = [v for k, v in per_layer.items() if k.startswith(metric + " ")]
        assert kind == "Multiline"
        matched = {t for t in tags if any(re.match(p, t) for p in patterns)}  # TensorBoard uses re.match
        assert matched == {t for t in tags if t.startswith(f"spinal/{metric}/L")}
    bands = layout["spinal: bands"]
    assert len(bands) == 3 * len(LAYER_METRICS)
    assert [
        "Margin",
        ["spinal/band/late/transport", "spinal/band/late/transport_min", "spinal/band/late/transport_max"],
    ] in bands.values()
    [(kind, patterns)] = layout["spinal: alerts and rollbacks"].values()
    assert kind == "Multiline" and {t for t in MARKER_TAGS if any(re.match(p, t) for p in patterns)} == set(MARKER_TAGS)
    assert len(custom_scalar_layout(6, band_names=("late",))["spinal: bands"]) == len(LAYER_METRICS)
    with pytest.raises(ValueError, match="num_layers"):
        custom_scalar_layout(0)


def test_custom_scalar_layout_with_layer_runs_charts_their_tags():
    layout = custom_scalar_layout(6, layer_runs=True)
    assert set(layout) >= {"spinal: per-layer", "spinal: change since the first probe"}
    run_tags = [f"spinal_by_layer/{m}{suffix}" for m in LAYER_METRICS for suffix in ("", "_change")]
    for category, suffix in (("spinal: per-layer", ""), ("spinal: change since the first probe", "_change")):
        charts = layout[category]
        assert len(charts) == len(LAYER_METRICS)
        for metric in LAYER_METRICS:
            [(kind, patterns)] = [v for k, v in charts.items() if k.startswith(metric + " ")]
            assert kind == "Multiline"
            assert [t for t in run_tags if any(re.match(p, t) for p in patterns)] == [
                f"spinal_by_layer/{metric}{suffix}"
            ]


def test_summary_writer_round_trip(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer, owns_writer=True)
    returned = [sink.write_trace(step, make_trace(offset)) for step, offset in ((0, 0.0), (10, 1.0), (20, 2.0))]
    sink.write_scalars(20, {"spinal/patch/effect/L3": 0.25, "spinal/patch/nan": NAN})
    sink.write_text("spinal/alerts", "late transport curvature spiked", 20)
    sink.close()

    assert returned[1] == trace_scalars(make_trace(1.0))
    acc = _accumulator(tmp_path)
    tags = acc.Tags()
    assert set(tags["scalars"]) == PER_LAYER_TAGS | BAND_TAGS | {"spinal/patch/effect/L3"}
    assert [(e.step, e.value) for e in acc.Scalars("spinal/contraction/L3")] == [
        (0, 3.0),
        (10, 4.0),
        (20, 5.0),
    ]
    late_max = acc.Scalars("spinal/band/late/contraction_max")
    assert [(e.step, e.value) for e in late_max] == [(0, 6.0), (10, 7.0), (20, 8.0)]
    assert [e.value for e in acc.Scalars("spinal/band/mid/entropy")] == pytest.approx([3.25] * 3)
    assert "spinal/transport/L6" not in tags["scalars"]

    assert set(tags["images"]) == {f"spinal/heatmap/{m}" for m in LAYER_METRICS}
    for metric in LAYER_METRICS:
        images = acc.Images(f"spinal/heatmap/{metric}")
        assert [im.step for im in images] == [0, 10, 20]
        assert (images[-1].height, images[-1].width) == (FIGURE_HEIGHT, figure_width(2))  # value | change

    assert "custom_scalars__config__" in tags["tensors"]
    [event] = acc.Tensors("custom_scalars__config__")  # written once
    layout = layout_pb2.Layout.FromString(event.tensor_proto.string_val[0])
    categories = {c.title: c for c in layout.category}
    assert set(categories) == {
        "spinal: per-layer",
        "spinal: change since the first probe",
        "spinal: bands",
        "spinal: alerts and rollbacks",
    }  # the writer's directory is known: one run per layer
    multiline = [ch.multiline.tag for ch in categories["spinal: per-layer"].chart]
    assert len(multiline) == len(LAYER_METRICS) and all(len(t) == 1 for t in multiline)
    assert sorted(p.name for p in (tmp_path / "spinal_layers").iterdir()) == [f"L0{i}" for i in range(1, 7)]
    margins = [ch.margin.series[0] for ch in categories["spinal: bands"].chart]
    assert len(margins) == 3 * len(LAYER_METRICS)
    assert {(s.value, s.lower, s.upper) for s in margins} >= {
        (
            "spinal/band/early/contraction",
            "spinal/band/early/contraction_min",
            "spinal/band/early/contraction_max",
        )
    }

    [text] = acc.Tensors("spinal/alerts/text_summary")
    assert text.step == 20 and text.tensor_proto.string_val[0] == b"late transport curvature spiked"


def test_log_scalars_callable_takes_the_scalars():
    writer = RecordingWriter()
    logged = []
    sink = TensorBoardSink(writer, log_scalars=lambda values, step: logged.append((dict(values), step)))
    scalars = sink.write_trace(7, make_trace())
    assert logged == [(scalars, 7)]
    assert writer.kinds("scalar") == []
    assert len(writer.kinds("layout")) == 1 and len(writer.kinds("image")) == len(LAYER_METRICS)
    sink.write_trace(8, make_trace())
    assert len(writer.kinds("layout")) == 1  # only once


def test_scalars_only_without_writer_and_validation():
    logged = []
    sink = TensorBoardSink(None, log_scalars=lambda values, step: logged.append(step))
    sink.write_trace(1, make_trace())
    sink.write_text("spinal/alerts", "dropped", 1)
    sink.close()
    assert logged == [1]
    with pytest.raises(ValueError, match="writer"):
        TensorBoardSink(None)
    with pytest.raises(ValueError, match="heatmap_max_steps"):
        TensorBoardSink(RecordingWriter(), heatmap_max_steps=1)


def test_heatmaps_can_be_turned_off():
    writer = RecordingWriter()
    TensorBoardSink(writer, heatmaps=False).write_trace(0, make_trace())
    assert writer.kinds("image") == [] and len(writer.kinds("layout")) == 1


def test_heatmap_history_is_downsampled_not_cut():
    writer = RecordingWriter()
    sink = TensorBoardSink(writer, heatmap_max_steps=4)
    for step in range(50):
        trace = make_trace()
        trace.entropy = [float(step)] + [0.0] * 4 + [49.0]  # layer 1 encodes the step
        sink.write_trace(step, trace)
        [image] = [c[2] for c in writer.kinds("image") if c[1] == "spinal/heatmap/entropy"]
        assert image.dtype == np.uint8 and image.shape == (FIGURE_HEIGHT, figure_width(2), 3)
        series = sink.images.trace
        steps = series.step_list()
        assert len(steps) <= min(step + 1, 4)
        assert steps[0] == 0 and steps[-1] == step  # the whole run: the first probe and the newest
        entropy = series.values.matrix()[LAYER_METRICS.index("entropy")]
        assert entropy[0].tolist() == [float(s) for s in steps]  # columns stay with their steps
        writer.calls.clear()


def test_partial_traces_add_no_heatmap_column():
    writer = RecordingWriter()
    sink = TensorBoardSink(writer)
    sink.write_trace(0, make_trace())
    partial = make_trace(1.0)
    partial.computed = [5, 6]
    sink.write_trace(2, partial)
    assert sink.images.trace.step_list() == [0]
    assert [c[3] for c in writer.kinds("image")] == [0] * len(LAYER_METRICS)  # nothing drawn at step 2


def test_heatmap_image_hatches_undefined_layers():
    writer = RecordingWriter()
    TensorBoardSink(writer).write_trace(0, make_trace())
    [transport] = [c[2] for c in writer.kinds("image") if c[1] == "spinal/heatmap/transport"]
    value_box = figure_boxes(2)[0]
    y0, y1 = value_box.row_span(5, 6)  # layer 6: 𝓛_6 is undefined (the step to a next layer)
    hatched = transport[y0 + 1 : y1 - 1, value_box.left + 1 : value_box.right - 1].reshape(-1, 3)
    assert {tuple(int(c) for c in px) for px in hatched} == {(225, 225, 225), (150, 150, 150)}
    y0, y1 = value_box.row_span(0, 6)
    defined = transport[y0 + 1 : y1 - 1, value_box.left + 1 : value_box.right - 1].reshape(-1, 3)
    assert (225, 225, 225) not in {tuple(int(c) for c in px) for px in defined}


def test_close_only_closes_an_owned_writer():
    writer = RecordingWriter()
    TensorBoardSink(writer).close()
    assert not writer.closed and writer.kinds("flush")
    owned = RecordingWriter()
    TensorBoardSink(owned, owns_writer=True).close()
    assert owned.closed


def test_real_depth_trace_from_a_tiny_llama(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from spinal_callback.geometry import compute_depth_trace

    config = transformers.AutoConfig.for_model(
        "llama",
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    input_ids = torch.randint(0, 128, (2, 12))
    trace = compute_depth_trace(model, input_ids, torch.ones_like(input_ids))

    writer = SummaryWriter(str(tmp_path))
    sink = TensorBoardSink(writer, owns_writer=True)
    scalars = sink.write_trace(5, trace)
    sink.close()
    assert {f"spinal/contraction/L{i}" for i in range(1, 7)} <= set(scalars)
    assert {f"spinal/band/{b}/transport_max" for b in ("early", "mid", "late")} <= set(scalars)
    assert "spinal/transport/L6" not in scalars
    acc = _accumulator(tmp_path)
    assert set(acc.Tags()["scalars"]) == set(scalars)
    assert acc.Scalars("spinal/entropy/L2")[0].value == pytest.approx(trace.entropy[1], rel=1e-6)
    assert len(acc.Tags()["images"]) == len(LAYER_METRICS)
