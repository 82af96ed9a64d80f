"""Output sinks: TensorBoard scalars / layout / heatmaps and the JSON-lines trace file.

Importing this package imports neither Lightning, transformers nor matplotlib.
"""

from .heatmap import HeatmapHistory, colorize, heatmap_image
from .jsonl import RECORD_TYPES, TraceWriter, load_traces, read_trace_file, trace_record
from .tensorboard import (
    SummaryWriterLike,
    TensorBoardSink,
    band_statistics,
    custom_scalar_layout,
    trace_scalars,
)

__all__ = [
    "RECORD_TYPES",
    "HeatmapHistory",
    "SummaryWriterLike",
    "TensorBoardSink",
    "TraceWriter",
    "band_statistics",
    "colorize",
    "custom_scalar_layout",
    "heatmap_image",
    "load_traces",
    "read_trace_file",
    "trace_record",
    "trace_scalars",
]
