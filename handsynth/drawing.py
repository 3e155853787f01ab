"""``Drawing``: generated handwriting laid out on pages, and every way to save it.

Formats, by the output file's extension: ``.png``, ``.svg`` and ``.pdf`` (``render``), ``.svg``
with ``animate`` (``animate.animated_svg``) or ``plotter`` (``plotter.plotter_svg``: polylines in
layers for vpype and AxiDraw), ``.gcode`` (``plotter.gcode``), ``.inkml`` (``inkml``) and
``.gif``/``.webp`` animations (``animate.animation``). PNG, SVG, G-code, GIF and WebP write one
file per page (``out-1.png``, ``out-2.png``, ...); PDF and InkML hold every page in one file.
Several files are written all or none.

A drawing made by ``Handwriter.write`` knows its words (``Drawing.words``: each word's strokes,
from the sampler's alignment) and how it was written (``source``), so that
``Handwriter.redo_word`` can write one word again and keep the rest of the page.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import write_all_atomic
from .errors import HandsynthError
from .render import Ink, page_png, page_svg, pages_pdf
from .validate import flag, number, output_file, shown

FORMATS = ("png", "svg", "pdf", "gcode", "inkml", "gif", "webp")
ONE_FILE = ("pdf", "inkml")    # every page in one file


def format_of(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise HandsynthError(f"an output needs a file name such as out.png (got {shown(path)})")
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        known = ", ".join(f".{f}" for f in FORMATS)
        raise HandsynthError(f"{path}: unknown output format {ext or '(none)'!r}; use a file name ending in {known}")
    return ext


@dataclass(frozen=True)
class Output:
    """How to save beyond the format: ``animate`` an SVG (the pen drawing each stroke in
    turn); ``plotter``: SVG as polylines in Inkscape layers (G-code is always for plotters);
    ``simplify`` plotter strokes to this tolerance in mm; ``order`` them to cut pen-up travel;
    ``gcode``: a ``plotter.GcodeOptions``."""
    animate: bool = False
    plotter: bool = False
    simplify: float = 0.0
    order: bool = True
    gcode: object = None

    def check(self, fmt: str) -> None:
        from .plotter import MAX_TOLERANCE
        for name in ("animate", "plotter", "order"):
            flag(getattr(self, name), name)
        number(self.simplify, "the simplify tolerance (mm)", 0.0, MAX_TOLERANCE)
        if self.animate and fmt != "svg":
            raise HandsynthError("--animate is for .svg files (.gif and .webp are always animated)")
        if self.animate and self.plotter:
            raise HandsynthError("choose --animate or --plotter for an SVG, not both")
        if self.plotter and fmt not in ("svg", "gcode"):
            raise HandsynthError("--plotter is for .svg files (.gcode is always for plotters)")
        if (self.simplify or not self.order) and not (self.plotter or fmt == "gcode"):
            raise HandsynthError("--simplify and --no-order are for plotter output (.gcode, or .svg with --plotter)")
        if self.gcode is not None and fmt != "gcode":
            raise HandsynthError("G-code options are for .gcode files")


@dataclass(frozen=True)
class Word:
    """A word on the page: ``index`` counts the drawing's words in reading order from 0 (every
    page, every line; a word broken across two lines counts twice). Its strokes are
    ``drawing.pages[page].strokes[start:stop]``; ``box`` is their extent (x0, y0, x1, y1) in page
    pixels, None when no stroke writes the word."""
    index: int
    text: str
    page: int
    line: int        # its line's place in pages[page].lines
    start: int
    stop: int
    box: tuple | None


@dataclass
class Drawing:
    """Generated handwriting laid out on one or more pages, ready to render."""
    pages: list
    ink: Ink = field(default_factory=Ink)
    lines: list = field(default_factory=list)  # the sampled lines (sampling.Line) as first written, for analysis
    source: object = None   # how it was written (writer.Written), for Handwriter.redo_word

    @property
    def strokes(self) -> list:
        """Every stroke of every page as (n, 2) float32 arrays of page pixels (y down)."""
        return [s for p in self.pages for s in p.strokes]

    @property
    def words(self) -> list[Word]:
        """Every word with its strokes (empty for a drawing whose words are not known)."""
        out = []
        for p, page in enumerate(self.pages):
            first = 0
            for j, line in enumerate(page.lines):
                for span in line.words:
                    mine = line.strokes[span.start:span.stop]
                    box = None
                    if mine:
                        lo = min(float(s[:, 0].min()) for s in mine), min(float(s[:, 1].min()) for s in mine)
                        hi = max(float(s[:, 0].max()) for s in mine), max(float(s[:, 1].max()) for s in mine)
                        box = (*lo, *hi)
                    out.append(Word(len(out), span.text, p, j, first + span.start, first + span.stop, box))
                first += len(line.strokes)
        return out

    def word_strokes(self, index: int) -> list:
        """The strokes of word ``index`` (``words``), page pixels."""
        words = self.words
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(words):
            raise HandsynthError(f"word {index!r} does not exist: the drawing has {len(words)} word(s), numbered from 0")
        w = words[index]
        return self.pages[w.page].strokes[w.start:w.stop]

    def to_png(self, page: int = 0) -> bytes:
        return page_png(self.pages[self._page(page)], self.ink, self._page(page))

    def to_svg(self, page: int = 0) -> str:
        return page_svg(self.pages[self._page(page)], self.ink)

    def to_pdf(self) -> bytes:
        return pages_pdf(self.pages, self.ink)

    def _page(self, page) -> int:
        if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page < len(self.pages):
            raise HandsynthError(f"page {page!r} does not exist: the drawing has {len(self.pages)} page(s), "
                                 f"numbered from 0")
        return page

    def render(self, fmt: str, output: Output = Output(), page: int | None = None) -> list[bytes]:
        """The file(s) for a format: one per page, or one for PDF and InkML. ``page`` (from 0):
        only that page's file (PDF and InkML still hold every page)."""
        if not isinstance(fmt, str) or fmt not in FORMATS:
            raise HandsynthError(f"unknown format {shown(fmt)}: use one of {', '.join(FORMATS)}")
        if not isinstance(output, Output):
            raise HandsynthError(f"output must be a drawing.Output (got {type(output).__name__})")
        output.check(fmt)
        pages = range(len(self.pages)) if page is None else [self._page(page)]
        if fmt == "pdf":
            return [self.to_pdf()]
        if fmt == "png":
            return [self.to_png(i) for i in pages]
        if fmt == "inkml":
            from .inkml import drawing_inkml
            return [drawing_inkml(self).encode()]
        if fmt in ("gif", "webp"):
            from .animate import animation
            return [animation(self, fmt, i) for i in pages]
        if fmt == "svg" and output.animate:
            from .animate import animated_svg
            return [animated_svg(self, i).encode() for i in pages]
        if fmt == "svg" and not output.plotter:
            return [self.to_svg(i).encode() for i in pages]
        from .plotter import GcodeOptions, gcode, plot_pages, plotter_svg
        plotted = plot_pages(self, order=output.order, tolerance=output.simplify)
        plotted = [plotted[i] for i in pages]
        if fmt == "svg":
            return [plotter_svg(p).encode() for p in plotted]
        return [gcode(p, output.gcode or GcodeOptions()).encode() for p in plotted]

    def plot(self, output: Output = Output()) -> list:
        """The pages as the plotter sees them (``plotter.PlotPage``: mm, layers, pen-up travel)."""
        from .plotter import plot_pages
        return plot_pages(self, order=output.order, tolerance=output.simplify)

    def save(self, path, output: Output = Output()) -> list[Path]:
        """Write to ``path`` in the format its extension names (several pages of a per-page
        format to numbered files ``out-1.png``, ``out-2.png``, ...), all files or none. Returns
        the paths written."""
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise HandsynthError(f"save needs a file name such as out.png (got {shown(path)})")
        path = output_file(path)   # a folder that takes files, before rendering
        fmt = format_of(path)
        files = self.render(fmt, output)
        if len(files) == 1:
            targets = [path]
        else:
            targets = [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(len(files))]
        write_all_atomic(zip(targets, files))
        return targets
