"""Output sinks: TensorBoard scalars / per-layer runs / markers / layout / heatmaps and the JSON-lines trace file.

Importing this package imports neither Lightning, transformers nor matplotlib (the heatmap figures are drawn
with Pillow, imported when the first one is drawn).
"""

from spinal_callback.sinks.heatmap import HeatmapHistory, change_since_baseline, colorize, heatmap_image
from spinal_callback.sinks.heatmap_figure import heatmap_figure
from spinal_callback.sinks.jsonl import RECORD_TYPES, TraceWriter, load_traces, read_trace_file, trace_record
from spinal_callback.sinks.tensorboard import (
    MARKER_TAGS,
    SummaryWriterLike,
    TensorBoardSink,
    custom_scalar_layout,
    trace_scalars,
)

__all__ = [
    "MARKER_TAGS",
    "RECORD_TYPES",
    "HeatmapHistory",
    "SummaryWriterLike",
    "TensorBoardSink",
    "TraceWriter",
    "change_since_baseline",
    "colorize",
    "custom_scalar_layout",
    "heatmap_figure",
    "heatmap_image",
    "load_traces",
    "read_trace_file",
    "trace_record",
    "trace_scalars",
]
