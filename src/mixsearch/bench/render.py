"""Render a text document as a screenshot: a fixed-size white page of word-wrapped black text.

Setting 1 of the benchmark (``bench.py``) replaces text documents by pictures of their text. The
renderer is deliberately plain and fully specified, so runs are comparable across machines:

- page: ``PAGE_SIZE`` (448 x 448 pixels), greyscale, white background, ``MARGIN`` pixels each side;
- font: Pillow's bundled default TrueType font (Aileron Regular, ``ImageFont.load_default(size=...)``,
  Pillow >= 10.1 with FreeType) at ``FONT_SIZE`` pixels, unless a font file is given;
- layout: greedy word wrap on the measured advance width (a word longer than a line is split
  by characters); line height ``1.25 x`` the font size; text that does not fit on the page is cut
  at the last line that fits (no ellipsis), as a screenshot of the top of a page would be;
- output: PNG. The same text and settings give the same bytes, so the embedding cache (keyed by
  file content) recognises a screenshot rendered again.

``render_to_file`` writes into a content-addressed folder (the sha256 of the text and the settings),
so rendering is done once per text and machine.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

PAGE_SIZE = (448, 448)
MARGIN = 16
FONT_SIZE = 16
LINE_SPACING = 1.25


@dataclass(frozen=True)
class RenderSettings:
    """How a text document is drawn as a screenshot (page size, margin, font)."""

    width: int = PAGE_SIZE[0]
    height: int = PAGE_SIZE[1]
    margin: int = MARGIN
    font_size: int = FONT_SIZE
    font: str | None = None  # a .ttf path; None: Pillow's bundled default font
    line_spacing: float = LINE_SPACING

    def describe(self) -> dict:
        """The settings as recorded in reports (with the font and Pillow version)."""
        import PIL

        font = self.font or "Pillow bundled default font (Aileron Regular, ImageFont.load_default)"
        return {**asdict(self), "font": font, "pillow": PIL.__version__, "format": "PNG, greyscale"}

    def key(self) -> str:
        """A short hash of the settings and Pillow version: the screenshots' folder name."""
        import PIL

        return hashlib.sha256(
            json.dumps({**asdict(self), "pillow": PIL.__version__}, sort_keys=True).encode()
        ).hexdigest()[:12]


_FONTS: dict = {}


def _font(settings: RenderSettings):
    from PIL import ImageFont

    key = (settings.font, settings.font_size)
    if key not in _FONTS:
        if settings.font:
            _FONTS[key] = ImageFont.truetype(settings.font, settings.font_size)
        else:
            _FONTS[key] = ImageFont.load_default(size=settings.font_size)
    return _FONTS[key]


def wrap(text: str, font, width: float, max_lines: int | None = None) -> list[str]:
    """Greedy word wrap of ``text`` to lines no wider than ``width`` pixels (at most ``max_lines``).

    Each word is measured once and a line's width is the sum of its words and spaces; each
    finished line is then measured whole, and in the rare case kerning made it too wide its last
    word moves to a line of its own. A word wider than a line is split by characters.
    """
    space = font.getlength(" ")
    widths: dict[str, float] = {}

    def length(word: str) -> float:
        if word not in widths:
            widths[word] = font.getlength(word)
        return widths[word]

    def pieces(word: str):
        while length(word) > width and len(word) > 1:
            cut = next((n for n in range(len(word) - 1, 0, -1) if font.getlength(word[:n]) <= width), 1)
            yield word[:cut]
            word = word[cut:]
        yield word

    def finish(line: list[str]) -> list[str]:
        joined = " ".join(line)
        if len(line) > 1 and font.getlength(joined) > width:
            return [" ".join(line[:-1]), line[-1]]
        return [joined]

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line: list[str] = []
        used = 0.0
        for word in (p for w in paragraph.split() for p in pieces(w)):
            need = length(word) if not line else used + space + length(word)
            if need <= width or not line:
                line.append(word)
                used = need
                continue
            lines += finish(line)
            if max_lines is not None and len(lines) >= max_lines:
                return lines[:max_lines]
            line, used = [word], length(word)
        lines += finish(line) if line else [""]
        if max_lines is not None and len(lines) >= max_lines:
            return lines[:max_lines]
    return lines


def render(text: str, settings: RenderSettings = RenderSettings()):
    """The screenshot of ``text`` as a PIL image (mode ``L``)."""
    from PIL import Image, ImageDraw

    font = _font(settings)
    page = Image.new("L", (settings.width, settings.height), 255)
    draw = ImageDraw.Draw(page)
    step = settings.font_size * settings.line_spacing
    usable = settings.width - 2 * settings.margin
    capacity = int((settings.height - 2 * settings.margin) // step)
    y: float = settings.margin
    for line in wrap(text, font, usable, max_lines=capacity):
        draw.text((settings.margin, y), line, fill=0, font=font)
        y += step
    return page


def render_to_file(text: str, folder: str | Path, settings: RenderSettings = RenderSettings()) -> Path:
    """Render ``text`` once into ``folder/<settings key>/<sha256 of text>.png`` and return the path."""
    folder = Path(folder) / settings.key()
    path = folder / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.png"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.png")
        render(text, settings).save(tmp, format="PNG", optimize=False)
        tmp.replace(path)
    return path
