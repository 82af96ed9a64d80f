import itertools

import numpy as np
import pytest

from spinal_callback.sinks.heatmap import MISSING_COLOR, HeatmapHistory, colorize, heatmap_image

VIRIDIS_MIN = (68, 1, 84)
VIRIDIS_MAX = (253, 231, 37)


def test_small_matrix_is_upscaled_to_a_visible_image():
    image = heatmap_image(np.arange(18.0).reshape(6, 3))
    assert image.dtype == np.uint8
    assert image.shape == (6 * 22, 3 * 43, 3)  # smallest integer factors reaching 128 px
    assert min(image.shape[:2]) >= 128


def test_explicit_cell_size_and_nearest_neighbour_blocks():
    values = np.arange(6.0).reshape(2, 3)
    image = heatmap_image(values, cell=4)
    assert image.shape == (8, 12, 3)
    for r in range(2):
        for c in range(3):
            block = image[4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
            assert (block == block[0, 0]).all()


def test_layer_one_is_at_the_bottom_and_steps_go_left_to_right():
    layers = np.arange(1.0, 7.0)[:, None] * np.ones((1, 3))  # value grows with the layer
    image = heatmap_image(layers, cell=1)
    assert tuple(image[-1, 0]) == VIRIDIS_MIN  # bottom row = layer 1 = minimum
    assert tuple(image[0, 0]) == VIRIDIS_MAX  # top row = last layer = maximum

    steps = np.ones((4, 1)) * np.arange(5.0)[None, :]  # value grows with the step
    image = heatmap_image(steps, cell=1)
    assert tuple(image[0, 0]) == VIRIDIS_MIN
    assert tuple(image[0, -1]) == VIRIDIS_MAX


def test_min_max_and_nan_colours():
    values = np.array([[2.0, np.nan], [-1.0, np.inf]])
    image = heatmap_image(values, cell=1)
    # image row 0 is matrix row 1 (the top layer)
    assert tuple(image[1, 0]) == VIRIDIS_MAX  # 2.0 is the finite maximum
    assert tuple(image[0, 0]) == VIRIDIS_MIN  # -1.0 is the finite minimum
    assert tuple(image[1, 1]) == MISSING_COLOR
    assert tuple(image[0, 1]) == MISSING_COLOR  # inf is drawn as missing, not as the maximum


def test_constant_and_all_nan_matrices():
    constant = heatmap_image(np.full((3, 4), 7.0), cell=1)
    assert (constant == colorize(np.array(0.5))).all()
    assert tuple(constant[0, 0]) not in (VIRIDIS_MIN, VIRIDIS_MAX)
    missing = heatmap_image(np.full((3, 4), np.nan), cell=1)
    assert (missing == np.array(MISSING_COLOR, dtype=np.uint8)).all()


def test_colorize_follows_matplotlib_viridis():
    matplotlib = pytest.importorskip("matplotlib")
    x = np.linspace(0.0, 1.0, 256)
    reference = matplotlib.colormaps["viridis"](x)[:, :3] * 255.0
    assert np.abs(colorize(x).astype(float) - reference).max() <= 6.0


@pytest.mark.parametrize(
    "values, kwargs",
    [
        (np.arange(3.0), {}),
        (np.zeros((0, 3)), {}),
        (np.zeros((2, 2)), {"cell": 0}),
        (np.zeros((2, 2)), {"min_size": 0}),
    ],
)
def test_bad_inputs_are_refused(values, kwargs):
    with pytest.raises(ValueError):
        heatmap_image(values, **kwargs)


def test_history_downsamples_evenly_and_keeps_the_newest():
    history = HeatmapHistory(4)
    with pytest.raises(ValueError, match="empty"):
        history.matrix()
    for step in range(50):
        history.add(np.array([float(step)]))
        steps = history.matrix()[0].tolist()
        assert len(steps) <= 4
        assert steps[0] == 0.0 and steps[-1] == float(step)
        kept = steps[:-1] if len(steps) > 2 else steps
        assert len({b - a for a, b in itertools.pairwise(kept)}) <= 1  # stored columns evenly spaced
    assert steps == [0.0, 32.0, 49.0]  # stored: 0, 16, 32, 48 → halved at 48; 49 is the newest
    history.add(np.zeros(3))  # another layer count: starts over
    assert history.matrix().shape == (3, 1)
    with pytest.raises(ValueError, match="max_steps"):
        HeatmapHistory(1)
