"""Output sinks: TensorBoard scalars / layout / heatmaps and the JSON-lines trace file.

Importing this package imports neither Lightning, transformers nor matplotlib.
"""

from spinal_callback.sinks.heatmap import HeatmapHistory, colorize, heatmap_image
from spinal_callback.sinks.jsonl import RECORD_TYPES, TraceWriter, load_traces, read_trace_file, trace_record
from spinal_callback.sinks.tensorboard import (
    SummaryWriterLike,
    TensorBoardSink,
    custom_scalar_layout,
    trace_scalars,
)

__all__ = [
    "RECORD_TYPES",
    "HeatmapHistory",
    "SummaryWriterLike",
    "TensorBoardSink",
    "TraceWriter",
    "colorize",
    "custom_scalar_layout",
    "heatmap_image",
    "load_traces",
    "read_trace_file",
    "trace_record",
    "trace_scalars",
]
