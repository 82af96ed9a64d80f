"""The figure canvas renders each text once and stamps it: the pixels must be Pillow's own."""

from __future__ import annotations

import numpy as np
import pytest

from spinal_callback.sinks.figure_canvas import TEXT_COLOR, Canvas, _font


@pytest.mark.parametrize("anchor", ["la", "lm", "rm", "ma", "mm"])
@pytest.mark.parametrize("small", [False, True])
def test_a_remembered_text_stamps_the_pixels_pillow_draws(anchor: str, small: bool) -> None:
    text = "optimizer step 120, change -0.5"
    for _ in range(2):  # the second call comes from the cache
        stamped = Canvas(320)
        stamped.text((150, 40), text, small=small, anchor=anchor)
        direct = Canvas(320)
        direct.draw.text((150, 40), text, fill=TEXT_COLOR, font=_font(12 if small else 14), anchor=anchor)
        assert np.array_equal(np.asarray(stamped.image), np.asarray(direct.image))
        assert (np.asarray(stamped.image) != 255).any()  # something was drawn


def test_text_width_is_pillows_and_vertical_text_reads_upwards() -> None:
    canvas = Canvas(200)
    assert canvas.text_width("layer", small=True) == int(canvas.draw.textlength("layer", font=canvas.small))
    canvas.vertical_text(100, 200, "layer")
    ink = np.argwhere((np.asarray(canvas.image) != 255).any(axis=2))
    height, width = np.ptp(ink[:, 0]) + 1, np.ptp(ink[:, 1]) + 1
    assert height > 2 * width  # tall and narrow: turned by 90 degrees
