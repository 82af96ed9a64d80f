"""Many scalars of one step as one event: TensorBoard reads back exactly what one add_scalar per tag writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from torch.utils.tensorboard import SummaryWriter

from spinal_callback.sinks.summary_events import add_image_at, add_scalars_at

VALUES = [{"spinal/a/L1": 0.25, "spinal/a/L2": -1.5e-7, "spinal/band/late/a": 3.0e5},
          {"spinal/a/L1": 0.125, "spinal/band/late/a": 2.0}]


def _read(path: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _summary_events(path: Path) -> list[tuple[int, int]]:
    """(step, values) of each event with a summary in the run's event file."""
    (file,) = path.glob("events.out.tfevents.*")
    return [(e.step, len(e.summary.value)) for e in EventFileLoader(str(file)).Load() if e.HasField("summary")]


def test_one_event_per_step_reads_back_as_add_scalar_per_tag(tmp_path: Path) -> None:
    one, many = SummaryWriter(str(tmp_path / "one")), SummaryWriter(str(tmp_path / "many"))
    for step, values in zip((0, 2), VALUES, strict=True):
        add_scalars_at(one, values, step)
        for tag, value in values.items():
            many.add_scalar(tag, value, step)
    one.close()
    many.close()
    batched = _read(tmp_path / "one")
    assert batched == _read(tmp_path / "many")
    assert batched["spinal/a/L1"] == [(0, 0.25), (2, 0.125)] and batched["spinal/a/L2"] == [(0, pytest.approx(-1.5e-7))]
    assert _summary_events(tmp_path / "one") == [(0, 3), (2, 2)]  # one event per step, a value per tag
    assert len(_summary_events(tmp_path / "many")) == 5


class _Recorder(SummaryWriter):
    """A SummaryWriter subclass with its own add_scalar: it must be called once per value."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self.calls: list[tuple[str, Any, int]] = []

    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None, *args: Any, **kwargs: Any) -> None:
        self.calls.append((tag, scalar_value, global_step))


class _StandIn:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, int]] = []

    def add_scalar(self, tag: str, scalar_value: Any, global_step: Any = None) -> None:
        self.calls.append((tag, scalar_value, global_step))


@pytest.mark.parametrize("kind", ["subclass", "stand-in"])
def test_other_writers_get_one_add_scalar_per_value(tmp_path: Path, kind: str) -> None:
    writer = _Recorder(str(tmp_path)) if kind == "subclass" else _StandIn()
    add_scalars_at(writer, VALUES[0], 4)
    add_scalars_at(writer, {}, 6)
    assert writer.calls == [(tag, value, 4) for tag, value in VALUES[0].items()]
    if isinstance(writer, SummaryWriter):
        writer.close()


def _images(path: Path, tag: str) -> list[tuple[int, Any]]:
    import io

    import numpy as np
    from PIL import Image

    acc = EventAccumulator(str(path), size_guidance={"images": 0})
    acc.Reload()
    return [(e.step, e.width, e.height, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")))
            for e in acc.Images(tag)]


def test_an_image_reads_back_as_add_image_writes_it(tmp_path: Path) -> None:
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, size=(40, 70, 3), dtype=np.uint8)
    own, torchs = SummaryWriter(str(tmp_path / "own")), SummaryWriter(str(tmp_path / "torch"))
    add_image_at(own, "spinal/heatmap/transport", image, 6)
    torchs.add_image("spinal/heatmap/transport", image, 6, dataformats="HWC")
    own.close()
    torchs.close()
    ((step, width, height, pixels),) = _images(tmp_path / "own", "spinal/heatmap/transport")
    ((step_t, width_t, height_t, pixels_t),) = _images(tmp_path / "torch", "spinal/heatmap/transport")
    assert (step, width, height) == (step_t, width_t, height_t) == (6, 70, 40)
    assert np.array_equal(pixels, image) and np.array_equal(pixels_t, image)
    with pytest.raises(ValueError, match="height x width x 3 uint8 array, got float64"):
        add_image_at(own, "x", image.astype(float), 0)


def test_other_writers_get_add_image() -> None:
    import numpy as np

    calls: list[tuple[Any, ...]] = []

    class StandIn:
        def add_image(self, *args: Any, **kwargs: Any) -> None:
            calls.append((*args, kwargs))

    image = np.zeros((4, 5, 3), dtype=np.uint8)
    add_image_at(StandIn(), "t", image, 3)
    assert calls == [("t", image, 3, {"dataformats": "HWC"})]
