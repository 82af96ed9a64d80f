"""Layer × step heatmap data in numpy only (no matplotlib): colormaps, the change view and the history.

The absolute colormap is viridis (perceptually uniform, readable in greyscale and by colour-blind
readers); the change colormap is the diverging RdBu_r (blue = fell, white = unchanged, red = rose).
Both are sampled at 17 anchors and linearly interpolated: they stay within 6 of 255 levels per
channel of matplotlib's 256-entry tables. The annotated figures are drawn by
:mod:`spinal_callback.sinks.heatmap_figure`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "DIVERGING_ANCHORS",
    "MISSING_COLOR",
    "VIRIDIS_ANCHORS",
    "HeatmapHistory",
    "change_since_baseline",
    "colorize",
    "colorize_diverging",
    "heatmap_image",
]

#: viridis at ``i / 16`` for ``i = 0 … 16`` (RGB in ``[0, 1]``).
VIRIDIS_ANCHORS = np.array(
    [
        (0.2670, 0.0049, 0.3294),
        (0.2823, 0.0950, 0.4173),
        (0.2788, 0.1755, 0.4834),
        (0.2590, 0.2515, 0.5247),
        (0.2297, 0.3224, 0.5457),
        (0.1994, 0.3876, 0.5546),
        (0.1727, 0.4488, 0.5579),
        (0.1490, 0.5081, 0.5573),
        (0.1276, 0.5669, 0.5506),
        (0.1206, 0.6258, 0.5335),
        (0.1579, 0.6838, 0.5017),
        (0.2461, 0.7389, 0.4520),
        (0.3692, 0.7889, 0.3829),
        (0.5160, 0.8312, 0.2943),
        (0.6785, 0.8637, 0.1895),
        (0.8456, 0.8873, 0.0997),
        (0.9932, 0.9062, 0.1439),
    ],
    dtype=np.float64,
)

#: matplotlib's RdBu_r at ``i / 16`` for ``i = 0 … 16`` (RGB in ``[0, 1]``); entry 8 is the centre.
DIVERGING_ANCHORS = np.array(
    [
        (0.0196, 0.1882, 0.3804),
        (0.0885, 0.3211, 0.5649),
        (0.1634, 0.4450, 0.6975),
        (0.2471, 0.5557, 0.7541),
        (0.4207, 0.6764, 0.8187),
        (0.6065, 0.7898, 0.8803),
        (0.7615, 0.8685, 0.9246),
        (0.8780, 0.9257, 0.9519),
        (0.9691, 0.9665, 0.9649),
        (0.9839, 0.8976, 0.8468),
        (0.9825, 0.8007, 0.7061),
        (0.9603, 0.6678, 0.5363),
        (0.8946, 0.5038, 0.3998),
        (0.8171, 0.3322, 0.2810),
        (0.7285, 0.1550, 0.1974),
        (0.5769, 0.0554, 0.1493),
        (0.4039, 0.0000, 0.1216),
    ],
    dtype=np.float64,
)

#: Colour of cells that are NaN or ±inf (a neutral grey, outside viridis).
MISSING_COLOR = (128, 128, 128)


def _interpolate(anchors: np.ndarray, values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    pos = np.clip(np.where(finite, v, 0.0), 0.0, 1.0) * (len(anchors) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(anchors) - 2)
    frac = (pos - lo)[..., None]
    rgb = anchors[lo] * (1.0 - frac) + anchors[lo + 1] * frac
    out = np.rint(rgb * 255.0).astype(np.uint8)
    out[~finite] = MISSING_COLOR
    return out


def colorize(values: np.ndarray) -> np.ndarray:
    """Map values in ``[0, 1]`` to viridis RGB (uint8); NaN maps to :data:`MISSING_COLOR`.

    Args:
        values: any-shape float array; finite entries are clipped to ``[0, 1]``.

    Returns:
        ``values.shape + (3,)`` uint8 array.
    """
    return _interpolate(VIRIDIS_ANCHORS, values)


def colorize_diverging(values: np.ndarray) -> np.ndarray:
    """Map values in ``[-1, 1]`` to RdBu_r RGB (uint8), 0 to the white-ish centre; NaN to :data:`MISSING_COLOR`.

    Args:
        values: any-shape float array; finite entries are clipped to ``[-1, 1]``.

    Returns:
        ``values.shape + (3,)`` uint8 array.
    """
    return _interpolate(DIVERGING_ANCHORS, (np.asarray(values, dtype=np.float64) + 1.0) / 2.0)


def change_since_baseline(values: np.ndarray) -> np.ndarray:
    """Per layer (row), each value minus that layer's value at the first probe (column 0).

    ``Δ[ℓ, j] = values[ℓ, j] − values[ℓ, 0]``: training-time change with the differences *between*
    layers removed. A layer whose first value is not finite has no baseline: its row is NaN.

    Args:
        values: ``layers × steps`` array (NaN allowed).

    Returns:
        An array of the same shape; column 0 is 0 wherever the layer has a baseline.

    Raises:
        ValueError: ``values`` is not a non-empty 2-D array.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"`values` must be a non-empty 2-D (layers × steps) array, got shape {matrix.shape}")
    baseline = matrix[:, :1]
    with np.errstate(invalid="ignore"):
        change = matrix - baseline
    return np.where(np.isfinite(baseline) & np.isfinite(matrix), change, np.nan)


def _scale(values: np.ndarray) -> np.ndarray:
    """Min–max normalise over the finite entries; a constant matrix maps to 0.5 (mid colour)."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(values.shape, np.nan)
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if hi - lo <= 0.0 or not math.isfinite(hi - lo):
        return np.where(finite, 0.5, np.nan)
    return np.where(finite, (values - lo) / (hi - lo), np.nan)


def heatmap_image(values: np.ndarray, *, cell: int | None = None, min_size: int = 128) -> np.ndarray:
    """Render a ``layers × steps`` matrix as an HWC uint8 RGB image, layer 1 at the bottom.

    Colours are normalised per image (min → darkest viridis purple, max → viridis yellow) over the
    finite entries; a constant matrix is drawn in the middle colour; NaN / ±inf cells are grey.
    Cells are upscaled by nearest neighbour so that small matrices stay visible.

    Args:
        values: 2-D array, row ``i`` = the ``i``-th monitored layer (bottom row of the image),
            column ``j`` = the ``j``-th probe step (left to right). NaN allowed.
        cell: pixels per cell on both axes; ``None`` picks, per axis, the smallest integer factor
            that makes that side at least ``min_size`` pixels (so cells may be non-square).
        min_size: target minimum side in pixels when ``cell`` is ``None``.

    Returns:
        ``(H, W, 3)`` uint8 array, ``H = layers · cell_h``, ``W = steps · cell_w``.

    Raises:
        ValueError: ``values`` is not a non-empty 2-D array, or ``cell`` / ``min_size`` < 1.
    """
    matrix = np.asarray(values, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"`values` must be a non-empty 2-D (layers × steps) array, got shape {matrix.shape}")
    if cell is not None and cell < 1:
        raise ValueError(f"`cell` must be a positive integer or None, got {cell!r}")
    if min_size < 1:
        raise ValueError(f"`min_size` must be a positive integer, got {min_size!r}")
    rows, cols = matrix.shape
    cell_h = cell if cell is not None else max(1, math.ceil(min_size / rows))
    cell_w = cell if cell is not None else max(1, math.ceil(min_size / cols))
    rgb = colorize(_scale(matrix))[::-1]  # row 0 (layer 1) goes to the bottom of the image
    return np.repeat(np.repeat(rgb, cell_h, axis=0), cell_w, axis=1)


class HeatmapHistory:
    """A bounded history of ``(…, layers)`` columns, at most ``max_steps`` wide, covering the whole run.

    Downsampling, not a sliding window: when the stored columns reach ``max_steps``, every other
    one is dropped and from then on only every second new column is stored (the stride doubles).
    The newest column is always the last one of :meth:`matrix`, so a heatmap shows the whole run
    at even spacing plus the present, in between ``max_steps / 2`` and ``max_steps`` columns once
    the run is long. Memory: at most ``max_steps`` columns.

    Args:
        max_steps: maximum number of columns of :meth:`matrix` (≥ 2).
    """

    def __init__(self, max_steps: int) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 2:
            raise ValueError(f"`max_steps` must be an integer >= 2, got {max_steps!r}")
        self.max_steps = max_steps
        self.reset()

    def reset(self) -> None:
        """Forget every column."""
        self.stride = 1
        self.seen = 0
        self.kept: list[np.ndarray] = []
        self.latest: np.ndarray | None = None
        self.latest_kept = False

    def add(self, column: np.ndarray) -> None:
        """Add the newest column; a column of another shape (layer count changed) starts over."""
        if self.kept and self.kept[0].shape != column.shape:
            self.reset()
        self.latest_kept = self.seen % self.stride == 0
        if self.latest_kept:
            self.kept.append(column)
            if len(self.kept) >= self.max_steps:
                self.kept = self.kept[::2]
                self.stride *= 2
                self.latest_kept = self.seen == (len(self.kept) - 1) * self.stride
        self.latest = column
        self.seen += 1

    def matrix(self) -> np.ndarray:
        """The columns stacked on a new last axis: ``column.shape + (steps,)``.

        Raises:
            ValueError: no column was added yet.
        """
        if self.latest is None:
            raise ValueError("The heatmap history is empty: add() a column first")
        columns = list(self.kept)
        if not self.latest_kept:
            columns.append(self.latest)
        return np.stack(columns, axis=-1)
