"""Heatmaps drawn on a worker thread: the same images at the same steps as drawn inline, the writer called only from
the training thread, a bounded queue, and a failed drawing that costs no other data."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("PIL")

from spinal_callback.sinks import heatmap_images
from spinal_callback.sinks.heatmap_images import TRACE_HEATMAP_TAGS, HeatmapImages

from ._traces import make_trace


class _Recorder:
    """A writer that is not torch's: it gets the image arrays, and notes the thread of every call."""

    def __init__(self) -> None:
        self.images: list[tuple[str, int, np.ndarray]] = []
        self.threads: set[int] = set()

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str = "HWC") -> None:
        assert dataformats == "HWC"
        self.threads.add(threading.get_ident())
        self.images.append((tag, step, image))


def _run(images: HeatmapImages) -> None:
    """Full traces every 10 steps, an alert at 30 and a rollback at 50, patching columns; drawn as the monitor does
    (deferred to the end of each step), then the end of training."""
    for step in range(0, 70, 10):
        images.add_trace(step, make_trace(offset=step / 100), defer=True)
        if step % 20 == 0:
            images.add_column("spinal/heatmap/patch_normalized_effect", step, [0.1 * step, -0.2, 0.3], defer=True)
        images.add_events(step, alerts=int(step == 30), rollbacks=int(step == 50))
        images.write_pending()
        images.add_events(step, alerts=0, rollbacks=0)  # an event after the draw was started changes nothing drawn
    images.write_stale()
    images.close()


def test_background_drawing_writes_the_inline_images_from_the_calling_thread() -> None:
    inline, background = _Recorder(), _Recorder()
    _run(HeatmapImages(inline, max_steps=64, min_gap=20))
    drawer = HeatmapImages(background, max_steps=64, min_gap=20, background=True)
    _run(drawer)
    assert len(inline.images) > len(TRACE_HEATMAP_TAGS) * 3  # several redraws, the alert and the rollback among them
    assert [(tag, step) for tag, step, _ in background.images] == [(tag, step) for tag, step, _ in inline.images]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(inline.images, background.images, strict=True))
    assert background.threads == {threading.get_ident()}
    assert drawer._worker is None  # closed: the worker thread is gone


def test_the_images_in_flight_are_bounded_and_flush_waits_for_all(monkeypatch: pytest.MonkeyPatch) -> None:
    real = heatmap_images.heatmap_figure

    def slow(*args: Any, **kwargs: Any) -> np.ndarray:
        time.sleep(0.01)
        return real(*args, **kwargs)

    monkeypatch.setattr(heatmap_images, "heatmap_figure", slow)
    writer = _Recorder()
    images = HeatmapImages(writer, max_steps=64, min_gap=0, background=True)
    most = 0
    for step in range(0, 8):
        images.add_trace(step, make_trace(offset=step / 10))  # every column redraws every trace heatmap
        most = max(most, len(images._drawing))
    assert most <= heatmap_images._MAX_IN_FLIGHT
    images.flush()
    assert len(writer.images) == 8 * len(TRACE_HEATMAP_TAGS) and not images._drawing
    images.close()


def test_a_failed_drawing_is_raised_once_after_the_others_are_written(monkeypatch: pytest.MonkeyPatch) -> None:
    original = HeatmapImages._drawing_of

    def broken_for_transport(self: HeatmapImages, tag: str) -> Any:
        if tag != "spinal/heatmap/transport":
            return original(self, tag)

        def fail() -> np.ndarray:
            raise FloatingPointError("boom")

        return fail

    monkeypatch.setattr(HeatmapImages, "_drawing_of", broken_for_transport)
    writer = _Recorder()
    images = HeatmapImages(writer, max_steps=64, background=True)
    images.add_trace(0, make_trace(), defer=True)
    with pytest.raises(RuntimeError, match=r"'spinal/heatmap/transport' at step 0 failed: FloatingPointError"):
        images.flush()
    assert {tag for tag, _, _ in writer.images} == set(TRACE_HEATMAP_TAGS) - {"spinal/heatmap/transport"}
    images.flush()  # raised once: nothing is left
    images.close()


def test_the_sink_draws_in_the_background_and_closing_loses_nothing(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from spinal_callback.sinks.tensorboard import TensorBoardSink

    writer, threads = SummaryWriter(str(tmp_path)), set()
    file_writer = writer._get_file_writer

    def get_file_writer() -> Any:  # every use of the event file goes through here
        threads.add(threading.get_ident())
        return file_writer()

    writer._get_file_writer = get_file_writer
    sink = TensorBoardSink(writer, owns_writer=True, layer_runs=False, draw_in_background=True)
    for step in (0, 10):
        sink.write_trace(step, make_trace(offset=step / 10))
    sink.flush()  # drawn with the real figure
    real = heatmap_images.heatmap_figure
    monkeypatch.setattr(heatmap_images, "heatmap_figure", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    sink.write_trace(20, make_trace(offset=2.0))
    sink.write_scalars(20, {"spinal/extra": 1.5})
    with pytest.raises(RuntimeError, match="MemoryError"):
        sink.close()  # the step-20 images failed, yet the writer was flushed and closed
    monkeypatch.setattr(heatmap_images, "heatmap_figure", real)
    assert threads == {threading.get_ident()}  # the worker thread never touched the writer
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Images("spinal/heatmap/contraction")] == [0, 10]
    assert [e.value for e in acc.Scalars("spinal/extra")] == [1.5]
    assert acc.Images("spinal/heatmap/contraction")[0].width == 1120
