"""The annotated TensorBoard heatmaps: size, per-layer content, the change view, hatching, event lines, ticks."""

import numpy as np
import pytest

from spinal_callback.sinks.figure_canvas import tick_labels
from spinal_callback.sinks.heatmap import DIVERGING_ANCHORS, change_since_baseline, colorize_diverging
from spinal_callback.sinks.heatmap_figure import (
    ALERT_COLOR,
    FIGURE_HEIGHT,
    figure_boxes,
    figure_width,
    heatmap_figure,
    nice_ticks,
)
from spinal_callback.sinks.metric_labels import METRIC_LABELS

CENTRE = tuple(int(c) for c in colorize_diverging(np.array(0.0)))


def _colours(image: np.ndarray, box, row: int, rows: int) -> set[tuple[int, ...]]:
    """The distinct colours inside one layer's band of a panel (a pixel away from the row's edges)."""
    y0, y1 = box.row_span(row, rows)
    band = image[y0 + 1 : y1 - 1, box.left + 1 : box.right - 1].reshape(-1, 3)
    return {tuple(int(c) for c in px) for px in band}


@pytest.mark.parametrize(("layers", "probes"), [(1, 1), (6, 3), (32, 257)])
def test_size_is_fixed_whatever_the_matrix(layers, probes):
    values = np.random.default_rng(0).normal(size=(layers, probes))
    image = heatmap_figure(values, list(range(0, 2 * probes, 2)), list(range(1, layers + 1)), METRIC_LABELS["entropy"])
    assert image.dtype == np.uint8 and image.shape == (FIGURE_HEIGHT, figure_width(2), 3)
    single = heatmap_figure(
        values, list(range(probes)), list(range(1, layers + 1)), METRIC_LABELS["entropy"], change=False
    )
    assert single.shape == (FIGURE_HEIGHT, figure_width(1), 3)


def test_every_layer_shows_its_change_over_training():
    steps = [0, 10, 20, 30, 40]
    # rows far apart in level (10 per layer) but each moving a little (0.01 per step) over training
    values = np.array([[10.0 * layer + 0.01 * s * layer for s in steps] for layer in range(1, 7)])
    image = heatmap_figure(values, steps, list(range(1, 7)), METRIC_LABELS["effective_rank"])
    value_box, change_box = figure_boxes(2)
    for row in range(6):
        assert len(_colours(image, value_box, row, 6)) > 1, row  # not constant along the step axis
        change = _colours(image, change_box, row, 6)
        assert len(change) == len(steps), row  # one colour per probe: the change is visible per layer
        assert CENTRE in change  # the first probe is the baseline: no change there


def test_change_view_of_an_unchanged_run_is_all_zero_and_white():
    values = np.tile(np.array([[1.0], [2.5], [np.nan], [7.0]]), (1, 5))
    change = change_since_baseline(values)
    assert np.array_equal(change[[0, 1, 3]], np.zeros((3, 5)))
    assert np.isnan(change[2]).all()
    image = heatmap_figure(values, [0, 2, 4, 6, 8], [1, 2, 3, 4], METRIC_LABELS["contraction"])
    change_box = figure_boxes(2)[1]
    for row in (0, 1, 3):
        assert _colours(image, change_box, row, 4) == {CENTRE}
    assert CENTRE == tuple(round(255 * c) for c in DIVERGING_ANCHORS[8])


def test_change_since_baseline_rows_without_a_first_value_are_undefined():
    values = np.array([[np.nan, 1.0, 2.0], [1.0, 3.0, 0.0]])
    change = change_since_baseline(values)
    assert np.isnan(change[0]).all()
    assert change[1].tolist() == [0.0, 2.0, -1.0]
    with pytest.raises(ValueError, match="2-D"):
        change_since_baseline(np.zeros(3))


def test_alert_and_rollback_steps_are_vertical_lines():
    steps = [0, 10, 20, 30]
    values = np.arange(12.0).reshape(3, 4)
    plain = heatmap_figure(values, steps, [1, 2, 3], METRIC_LABELS["entropy"])
    marked = heatmap_figure(values, steps, [1, 2, 3], METRIC_LABELS["entropy"], alerts=[20], rollbacks=[35])
    for box in figure_boxes(2):
        area = marked[box.top : box.bottom, box.left : box.right]
        red_columns = np.where((area == np.array(ALERT_COLOR, dtype=np.uint8)).all(axis=-1).all(axis=0))[0]
        assert red_columns.size > 0  # a full-height red line
        x = box.left + red_columns.mean()
        width = box.right - box.left - 1
        assert abs((x - box.left) / width * 40.0 - 20.0) < 1.0  # axis 0 … 40 (last cell ends at 40)
        assert not (plain[box.top : box.bottom, box.left : box.right] == np.array(ALERT_COLOR)).all(axis=-1).any()
    black = (marked[figure_boxes(2)[0].top : figure_boxes(2)[0].bottom] == 0).all(axis=-1)
    assert black.any()  # the dashed rollback line


def test_undefined_rows_are_hatched_and_other_gaps_grey():
    values = np.array([[1.0, 2.0, np.nan], [np.nan, np.nan, np.nan], [3.0, 1.0, 2.0]])
    image = heatmap_figure(values, [0, 5, 10], [1, 2, 3], METRIC_LABELS["hidden_curvature"])
    value_box = figure_boxes(2)[0]
    assert _colours(image, value_box, 1, 3) == {(225, 225, 225), (150, 150, 150)}
    assert (128, 128, 128) in _colours(image, value_box, 0, 3)  # one probe without a value


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="layers=2"):
        heatmap_figure(np.zeros((3, 2)), [0, 1], [1, 2], METRIC_LABELS["entropy"])


@pytest.mark.parametrize(
    ("lo", "hi"), [(3.041, 3.052), (0.0, 1.0), (-0.02, 0.02), (1e-7, 3e-7), (120.0, 50000.0), (3.0, 3.0)]
)
def test_tick_labels_are_distinct_and_inside_the_range(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert ticks and all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    labels = tick_labels(ticks)
    assert len(set(labels)) == len(labels), labels  # never "3.05, 3.05, 3.04"


def test_integer_ticks_for_steps():
    assert nice_ticks(0, 3, integer=True) == [0, 1, 2, 3]
    assert all(float(t).is_integer() for t in nice_ticks(0, 997, integer=True))


class _ImageRecorder:
    """A writer that records ``(tag, step)`` of every image."""

    def __init__(self) -> None:
        self.images: list[tuple[str, int]] = []

    def add_image(self, tag: str, image: object, step: int, dataformats: str = "HWC") -> None:
        self.images.append((tag, step))


def test_heatmap_interval_holds_columns_back_but_alerts_and_the_end_draw() -> None:
    from spinal_callback.sinks.heatmap_images import TRACE_HEATMAP_TAGS, HeatmapImages

    from ._traces import make_trace

    writer = _ImageRecorder()
    images = HeatmapImages(writer, max_steps=64, min_gap=50)
    for step in range(0, 130, 10):  # full traces at 0, 10, ..., 120
        images.add_trace(step, make_trace(offset=step / 100), defer=True)
        if step == 70:
            images.add_events(step, alerts=1, rollbacks=0)
        images.write_pending()
    drawn = sorted({step for _, step in writer.images})
    assert drawn == [0, 50, 70, 120]  # 0; 50 (>= 50 after 0); the alert at 70; 120 (>= 50 after 70)
    images.write_stale()
    assert sorted({step for _, step in writer.images}) == [0, 50, 70, 120]  # nothing was held back at the end
    images.add_trace(130, make_trace(offset=1.3))
    assert max(step for _, step in writer.images) == 120  # held back: 10 steps after the last image
    images.write_stale()
    assert {tag for tag, step in writer.images if step == 130} == set(TRACE_HEATMAP_TAGS)  # drawn at the end
