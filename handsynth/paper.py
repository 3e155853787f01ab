"""Real paper: sizes, margins, line spacing and writing size in millimetres, and the one
conversion of a sheet to a pixel page (``Paper.page``: ``layout.PageOptions`` at the output's dpi).

Named sizes are portrait (the short side across); ``landscape`` turns any sheet long side across.
A custom size ``WxHmm`` is taken as written: W across, H down.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from .errors import HandsynthError
from .layout import PageOptions
from .render import Ink

MM_PER_INCH = 25.4
PAPERS = {                       # width x height in mm, portrait
    "a4": (210.0, 297.0),
    "a5": (148.0, 210.0),
    "a6": (105.0, 148.0),
    "letter": (215.9, 279.4),
    "postcard": (105.0, 148.0),  # the ISO / UPU postcard (A6)
    "envelope-dl": (110.0, 220.0),
}
MARGIN_MM = 15.0                 # every side
LINE_SPACING_MM = 8.0            # between baselines: common ruled paper
SIZE_MM = (20.0, 2000.0)         # the smallest and largest sheet side
X_HEIGHT_MM = (0.5, 50.0)
_CUSTOM = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*[x×]\s*(\d+(?:\.\d*)?)\s*mm\s*$", re.IGNORECASE)
_CHOICES = ", ".join(PAPERS) + " or WIDTHxHEIGHTmm (e.g. 148x105mm)"


def _mm(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise HandsynthError(f"{what} must be a number of millimetres (got {value!r})") from None
    if not math.isfinite(value):
        raise HandsynthError(f"{what} must be a finite number of millimetres (got {value})")
    return value


@dataclass(frozen=True)
class Paper:
    """A sheet: its size across and down, margins on every side, the spacing between baselines
    and the writing's x-height (body height), all in millimetres. By default the x-height is the
    line spacing over ``PageOptions.line_pitch``, and the line spacing that pitch times the x-height
    (8 mm when neither is given), so the writing keeps the proportions of a pixel page."""
    width: float
    height: float
    margin: float = MARGIN_MM
    line_spacing: float | None = None
    x_height: float | None = None
    name: str = ""

    def __post_init__(self):
        w, h = _mm(self.width, "the paper width"), _mm(self.height, "the paper height")
        margin = _mm(self.margin, "the margin")
        line = None if self.line_spacing is None else _mm(self.line_spacing, "the line spacing")
        xh = None if self.x_height is None else _mm(self.x_height, "the x-height")
        if line is None:
            line = LINE_SPACING_MM if xh is None else xh * PageOptions.line_pitch
        if xh is None:
            xh = line / PageOptions.line_pitch
        label = self._label(w, h)
        if not (SIZE_MM[0] <= w <= SIZE_MM[1] and SIZE_MM[0] <= h <= SIZE_MM[1]):
            raise HandsynthError(f"paper {label} is out of range: each side {SIZE_MM[0]:g} to {SIZE_MM[1]:g} mm")
        if not X_HEIGHT_MM[0] <= xh <= X_HEIGHT_MM[1]:
            raise HandsynthError(f"x-height {xh:g} mm is out of range ({X_HEIGHT_MM[0]:g} to {X_HEIGHT_MM[1]:g} mm)")
        if line < 1.5 * xh:
            raise HandsynthError(f"line spacing {line:g} mm is less than 1.5 x-heights ({1.5 * xh:g} mm): "
                                 f"the lines would overlap")
        if margin < 0:
            raise HandsynthError(f"margin {margin:g} mm is negative")
        if w - 2 * margin < 4 * xh or h - 2 * margin < 2.4 * xh:
            raise HandsynthError(f"margins of {margin:g} mm leave no room to write on {label} paper")
        for name, value in (("width", w), ("height", h), ("margin", margin), ("line_spacing", line), ("x_height", xh)):
            object.__setattr__(self, name, value)

    def _label(self, w: float, h: float) -> str:
        return f"{self.name} ({w:g} x {h:g} mm)" if self.name else f"{w:g} x {h:g} mm"

    @classmethod
    def of(cls, spec: str | Paper, landscape: bool = False, margin: float | None = None,
           line_spacing: float | None = None, x_height: float | None = None) -> Paper:
        """A named size (``PAPERS``) or ``WxHmm``, portrait unless ``landscape``; None for an
        option keeps its default (a Paper given as ``spec``: its own value)."""
        if isinstance(spec, Paper):
            w, h, name = spec.width, spec.height, spec.name
            margin = spec.margin if margin is None else margin
            line_spacing = spec.line_spacing if line_spacing is None else line_spacing
            x_height = spec.x_height if x_height is None else x_height
        elif not isinstance(spec, str):
            raise HandsynthError(f"paper must be a name or WIDTHxHEIGHTmm (got {spec!r}): use {_CHOICES}")
        elif spec.strip().lower() in PAPERS:
            name = spec.strip().lower()
            w, h = PAPERS[name]
        elif m := _CUSTOM.match(spec):
            w, h, name = float(m[1]), float(m[2]), ""
        else:
            raise HandsynthError(f"unknown paper {spec!r}: use {_CHOICES}")
        if landscape:
            w, h = max(w, h), min(w, h)
        return cls(w, h, MARGIN_MM if margin is None else margin, line_spacing, x_height, name)

    def page(self, dpi: int, align: str = PageOptions.align, ruling: str | None = None) -> PageOptions:
        """The sheet as a pixel page at ``dpi``: the one place millimetres become pixels."""
        px = dpi / MM_PER_INCH
        lo, hi = 200, 10000
        if not lo <= self.width * px <= hi or not lo <= self.height * px <= hi:
            size = f"{self.width * px:.0f} x {self.height * px:.0f} px"
            raise HandsynthError(f"{self._label(self.width, self.height)} paper at {dpi} dpi is {size}; a page "
                                 f"must be {lo} to {hi} px each way: choose another dpi")
        return PageOptions(width=self.width * px, page_height=self.height * px, margin=self.margin * px,
                           x_height=self.x_height * px, line_pitch=self.line_spacing / self.x_height,
                           align=align, ruling=ruling, sheet=True)


def sheet_ink(ink: Ink) -> Ink:
    """The ink for a sheet: a sheet looks the same at any dpi, so its pen is as wide in mm as
    ``ink.stroke_width`` pixels at the default dpi (``Ink.dpi``; 2.2 px = 0.37 mm)."""
    return replace(ink, stroke_width=ink.stroke_width * ink.dpi / Ink.dpi)


def page_options(width: int | None = None, align: str = PageOptions.align, dpi: int = 150,
                 paper: str | Paper | None = None, landscape: bool = False, margin_mm: float | None = None,
                 line_spacing_mm: float | None = None, x_height_mm: float | None = None,
                 ruling: str | None = None) -> PageOptions:
    """The page ``Handwriter.write`` lays out on: a pixel page ``width`` wide (default
    ``PageOptions.width``), or a sheet of ``paper``; the sizes in mm need a paper."""
    if paper is None or paper == "":
        given = [f for f, v in (("landscape", landscape), ("a margin in mm", margin_mm),
                                ("a line spacing in mm", line_spacing_mm), ("an x-height in mm", x_height_mm))
                 if v not in (None, False)]
        if given:
            raise HandsynthError(f"{given[0]} needs a paper size (--paper a4, a5, ...)")
        return PageOptions(width=PageOptions.width if width is None else int(width), align=align, ruling=ruling)
    if width is not None:
        raise HandsynthError("give either a page width in pixels (--width) or a paper size (--paper), not both")
    sheet = Paper.of(paper, landscape, margin_mm, line_spacing_mm, x_height_mm)
    return sheet.page(int(dpi), align, ruling)
