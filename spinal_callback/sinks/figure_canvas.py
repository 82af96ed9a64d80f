"""A small Pillow canvas for the TensorBoard figures: fonts, ASCII text (also vertical), lines, round ticks.

Pillow comes with TensorBoard and is what ``SummaryWriter.add_image`` encodes with; it is imported when the
first figure is drawn. The built-in font has no Greek letters, so figure text is ASCII.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["FIGURE_HEIGHT", "TEXT_COLOR", "Canvas", "nice_ticks", "tick_labels"]

#: Height in pixels of every figure.
FIGURE_HEIGHT = 440
#: Colour of text, axes and frames.
TEXT_COLOR = (30, 30, 30)
_NORMAL, _SMALL = 14, 12  # font sizes


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=2048)
def _stamp(text: str, size: int, anchor: str) -> tuple[Any, int, int] | None:
    """``text`` rendered once as an antialiased mask, with its offset from the anchor point; ``None`` for Pillow's
    bitmap font (no anchors, drawn directly). Figures repeat most of their text (axis labels, layer and step ticks),
    and rendering glyphs was about a third of a figure's drawing time."""
    from PIL import Image, ImageDraw, ImageFont

    font = _font(size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        return None
    left, top, right, bottom = (int(v) for v in font.getbbox(text, anchor=anchor))
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
    return mask, left, top


@functools.lru_cache(maxsize=2048)
def _width(text: str, size: int) -> int:
    from PIL import Image, ImageDraw

    return int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(text, font=_font(size)))


@functools.lru_cache(maxsize=256)
def _vertical_strip(text: str) -> Any:
    """``text`` in the small font, turned to read upwards, as a mask."""
    from PIL import Image, ImageDraw

    strip = Image.new("L", (_width(text, _SMALL) + 4, 16), 0)
    ImageDraw.Draw(strip).text((2, 1), text, fill=255, font=_font(_SMALL))
    return strip.rotate(90, expand=True)


def nice_ticks(lo: float, hi: float, max_ticks: int = 6, integer: bool = False) -> list[float]:
    """Round tick values (1, 2 or 5 × 10^k apart) inside ``[lo, hi]``; ``[lo]`` when ``lo == hi``."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / max(1, max_ticks - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [first + k * step for k in range(max(count, 0))]


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels that tell neighbouring ticks apart (enough decimals for their spacing, never 3.05, 3.05)."""
    if len(ticks) < 2:
        return [f"{t:.4g}" for t in ticks]
    spacing = min(abs(b - a) for a, b in itertools.pairwise(ticks))
    largest = max(abs(t) for t in ticks)
    if largest >= 1e5 or spacing < 1e-5:
        return [f"{t:.2e}" for t in ticks]
    decimals = max(0, -math.floor(math.log10(spacing) + 1e-9))
    return [f"{0.0 if abs(t) < spacing / 1e6 else t:.{decimals}f}" for t in ticks]


class Canvas:
    """A white RGB image with the few drawing helpers the figure needs."""

    def __init__(self, width: int) -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("RGB", (width, FIGURE_HEIGHT), (255, 255, 255))
        self.draw = ImageDraw.Draw(self.image)
        self.font, self.small = _font(_NORMAL), _font(_SMALL)

    def text(self, xy: tuple[float, float], text: str, small: bool = False, anchor: str = "la") -> None:
        stamp = _stamp(text, _SMALL if small else _NORMAL, anchor)
        if stamp is None:
            self.draw.text(xy, text, fill=TEXT_COLOR, font=self.small if small else self.font, anchor=anchor)
            return
        mask, left, top = stamp
        self.image.paste(TEXT_COLOR, (round(xy[0]) + left, round(xy[1]) + top), mask)

    def text_width(self, text: str, small: bool = False) -> int:
        """Width in pixels of ``text`` (remembered per text and size)."""
        return _width(text, _SMALL if small else _NORMAL)

    def vertical_text(self, x: float, y_centre: float, text: str) -> None:
        strip = _vertical_strip(text)
        self.image.paste(TEXT_COLOR, (int(x), int(y_centre - strip.height / 2)), strip)

    def vline(self, x: float, top: int, bottom: int, color: tuple[int, int, int], dashed: bool) -> None:
        if not dashed:
            self.draw.line([(x, top), (x, bottom - 1)], fill=color, width=2)
            return
        for y in range(top, bottom, 8):
            self.draw.line([(x, y), (x, min(y + 4, bottom - 1))], fill=color, width=2)
