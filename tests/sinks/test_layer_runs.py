"""One TensorBoard run per layer (distinct colours), and the change views of a run whose weights never move."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from spinal_callback.geometry.trace import LAYER_METRICS
from spinal_callback.sinks.heatmap import change_since_baseline, colorize_diverging
from spinal_callback.sinks.heatmap_figure import figure_boxes
from spinal_callback.sinks.layer_runs import LayerRuns, layer_run_name, log_dir_of
from spinal_callback.sinks.tensorboard import TensorBoardSink

from ._traces import make_trace


def _run_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_each_layer_is_its_own_run_with_value_and_change(tmp_path):
    sink = TensorBoardSink(SummaryWriter(str(tmp_path)), owns_writer=True)
    for step, offset in ((0, 0.0), (4, 0.5), (8, 2.0)):
        sink.write_trace(step, make_trace(offset))
    sink.close()
    runs = sorted((tmp_path / "spinal_layers").iterdir())
    assert [r.name for r in runs] == ["L01", "L02", "L03", "L04", "L05", "L06"]
    layer3 = _run_scalars(runs[2])
    assert layer3["spinal_by_layer/contraction"] == [(0, 3.0), (4, 3.5), (8, 5.0)]  # make_trace: offset + ℓ
    assert layer3["spinal_by_layer/contraction_change"] == [(0, 0.0), (4, 0.5), (8, 2.0)]
    layer6 = _run_scalars(runs[5])
    assert "spinal_by_layer/transport" not in layer6  # 𝓛_6 is undefined: nothing written
    assert "spinal_by_layer/entropy" in layer6
    main = _run_scalars(tmp_path)
    assert not any(tag.startswith("spinal_by_layer/") for tag in main)  # only in the layer runs
    assert main["spinal/contraction/L3"] == layer3["spinal_by_layer/contraction"]


def test_no_layer_runs_without_a_known_directory_or_when_turned_off(tmp_path):
    opened = []
    writer = SimpleNamespace(
        log_dir=str(tmp_path),
        add_scalar=lambda *a, **k: None,
        add_custom_scalars=lambda *a: None,
        add_image=lambda *a, **k: None,
        flush=lambda: None,
    )
    sink = TensorBoardSink(writer, layer_runs=False, heatmaps=False)
    sink.write_trace(0, make_trace())
    assert sink.layer_runs is None
    sink = TensorBoardSink(writer, heatmaps=False, open_layer_writer=lambda path: opened.append(path) or writer)
    sink.write_trace(0, make_trace())
    assert opened == [str(tmp_path / "spinal_layers" / f"L0{i}") for i in range(1, 7)]
    assert log_dir_of(SimpleNamespace()) is None
    assert log_dir_of(SimpleNamespace(logdir="/x")) == "/x"  # tensorboardX's attribute
    assert log_dir_of(SummaryWriter(str(tmp_path / "w"))) == str(tmp_path / "w")


def test_layer_run_names_sort_by_depth():
    assert [layer_run_name(i, 9) for i in (1, 9)] == ["L01", "L09"]
    assert [layer_run_name(i, 120) for i in (7, 120)] == ["L007", "L120"]


def test_close_is_idempotent(tmp_path):
    runs = LayerRuns(str(tmp_path))
    runs.write_trace(0, make_trace())
    runs.close()
    runs.close()
    assert runs.writers == {}


def test_a_run_whose_weights_do_not_change_shows_zero_change(tmp_path):
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
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    input_ids = torch.randint(0, 128, (2, 12))
    sink = TensorBoardSink(SummaryWriter(str(tmp_path)), owns_writer=True)
    for step in (0, 5, 10, 15):  # "training" that never updates the weights
        sink.write_trace(step, compute_depth_trace(model, input_ids, torch.ones_like(input_ids)))
    for metric in LAYER_METRICS:
        image = sink.images.figure(f"spinal/heatmap/{metric}")
        matrix = sink.images.trace.values.matrix()[LAYER_METRICS.index(metric)]
        change = change_since_baseline(matrix)
        defined = np.isfinite(matrix).all(axis=1)
        assert defined.any(), metric
        assert np.array_equal(change[defined], np.zeros_like(change[defined])), metric
        box = figure_boxes(2)[1]
        centre = tuple(int(c) for c in colorize_diverging(np.array(0.0)))
        for row in np.flatnonzero(defined):
            y0, y1 = box.row_span(int(row), 6)
            band = image[y0 + 1 : y1 - 1, box.left + 1 : box.right - 1].reshape(-1, 3)
            assert {tuple(int(c) for c in px) for px in band} == {centre}, (metric, row)
    sink.close()
    for run in sorted((tmp_path / "spinal_layers").iterdir()):
        for tag, points in _run_scalars(run).items():
            if tag.endswith("_change"):
                assert [v for _, v in points] == [0.0] * 4, (run.name, tag)
            else:
                assert len({v for _, v in points}) == 1 and all(math.isfinite(v) for _, v in points)
