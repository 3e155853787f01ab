"""Writers: PNG (anti-aliased, via matplotlib's Agg rasteriser), SVG (one smooth path per stroke,
viewBox in millimetres) and PDF (vector pages). Strokes are drawn as smooth curves: Catmull-Rom
splines through the pen points, written as cubic Bezier segments, with round caps and joins."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from .checkpoint import write_atomic
from .errors import HandsynthError
from .layout import Page

FORMATS = ("png", "svg", "pdf")


@dataclass(frozen=True)
class Ink:
    stroke_width: float = 2.2        # pixels
    color: str = "#1b1f3b"           # any CSS/matplotlib colour: name, #rgb, #rrggbb
    background: str | None = "white"  # None: transparent
    dpi: int = 150                   # pixels per inch (physical size of PNG/SVG/PDF)

    def __post_init__(self):
        from matplotlib.colors import to_rgba
        for name, value in (("colour", self.color), ("background", self.background)):
            if value is None:
                continue
            try:
                to_rgba(value)
            except (ValueError, TypeError):
                raise HandsynthError(f"{value!r} is not a colour: use a name (navy) or #rrggbb "
                                     f"({name})") from None
        if not 0.1 <= self.stroke_width <= 50:
            raise HandsynthError(f"stroke width {self.stroke_width} is out of range (0.1 to 50 px)")
        if not 10 <= self.dpi <= 1200:
            raise HandsynthError(f"dpi {self.dpi} is out of range (10 to 1200)")


def bezier(points: np.ndarray, smooth: float = 1.0) -> np.ndarray:
    """Points (n, 2) -> cubic Bezier control points (n - 1, 3, 2): for each segment the two
    control points and the end point (Catmull-Rom tangents scaled by ``smooth``)."""
    p = np.asarray(points, np.float64)
    if len(p) == 1:
        p = np.vstack([p, p + [0.01, 0.0]])  # a dot: a tiny segment that round caps make round
    ext = np.vstack([p[:1], p, p[-1:]])
    tangent = (ext[2:] - ext[:-2]) / 6.0 * smooth
    c1 = p[:-1] + tangent[:-1]
    c2 = p[1:] - tangent[1:]
    return np.stack([c1, c2, p[1:]], 1)


def svg_path(points: np.ndarray, scale: float = 1.0) -> str:
    seg = bezier(points) * scale
    start = np.asarray(points[0], np.float64) * scale
    return f"M{start[0]:.2f} {start[1]:.2f}" + "".join(
        f"C{a[0]:.2f} {a[1]:.2f} {b[0]:.2f} {b[1]:.2f} {c[0]:.2f} {c[1]:.2f}" for a, b, c in seg)


def page_svg(page: Page, ink: Ink) -> str:
    mm = 25.4 / ink.dpi
    w, h = page.width * mm, page.height * mm
    paths = "\n".join(f'  <path d="{svg_path(s, mm)}"/>' for s in page.strokes)
    bg = "" if ink.background is None else \
        f'  <rect width="100%" height="100%" fill={quoteattr(ink.background)}/>\n'
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.2f}mm" height="{h:.2f}mm" '
            f'viewBox="0 0 {w:.2f} {h:.2f}">\n{bg}'
            f'  <g fill="none" stroke={quoteattr(ink.color)} stroke-width="{ink.stroke_width * mm:.3f}" '
            f'stroke-linecap="round" stroke-linejoin="round">\n{paths}\n  </g>\n</svg>\n')


def _figure(page: Page, ink: Ink):
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    fig = Figure(figsize=(page.width / ink.dpi, page.height / ink.dpi), dpi=ink.dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, page.width)
    ax.set_ylim(page.height, 0)
    ax.axis("off")
    if ink.background is None:
        fig.patch.set_alpha(0)
    else:
        fig.patch.set_facecolor(ink.background)
    lw = ink.stroke_width * 72.0 / ink.dpi  # points
    for s in page.strokes:
        seg = bezier(s)
        verts = np.vstack([s[:1], seg.reshape(-1, 2)])
        codes = [MPath.MOVETO] + [MPath.CURVE4] * (len(verts) - 1)
        ax.add_patch(PathPatch(MPath(verts, codes), fill=False, edgecolor=ink.color, linewidth=lw,
                               capstyle="round", joinstyle="round"))
    return fig


def page_png(page: Page, ink: Ink) -> bytes:
    fig = _figure(page, ink)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ink.dpi, transparent=ink.background is None)
    return buf.getvalue()


def pages_pdf(pages: list[Page], ink: Ink) -> bytes:
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for page in pages:
            pdf.savefig(_figure(page, ink))
    return buf.getvalue()


def format_of(path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise HandsynthError(f"{path}: unknown output format {ext or '(none)'!r}; use a .png, .svg or .pdf file name")
    return ext


@dataclass
class Drawing:
    """Generated handwriting laid out on one or more pages, ready to render."""
    pages: list
    ink: Ink = field(default_factory=Ink)
    lines: list = field(default_factory=list)  # the sampled lines (sampling.Line), for analysis

    @property
    def strokes(self) -> list:
        """Every stroke of every page as (n, 2) float32 arrays of page pixels (y down)."""
        return [s for p in self.pages for s in p.strokes]

    def to_png(self, page: int = 0) -> bytes:
        return page_png(self.pages[page], self.ink)

    def to_svg(self, page: int = 0) -> str:
        return page_svg(self.pages[page], self.ink)

    def to_pdf(self) -> bytes:
        return pages_pdf(self.pages, self.ink)

    def render(self, fmt: str) -> list[bytes]:
        """The file(s) for a format: one per page for PNG and SVG, one for PDF."""
        if fmt == "pdf":
            return [self.to_pdf()]
        if fmt == "svg":
            return [self.to_svg(i).encode() for i in range(len(self.pages))]
        if fmt == "png":
            return [self.to_png(i) for i in range(len(self.pages))]
        raise HandsynthError(f"unknown format {fmt!r}: use png, svg or pdf")

    def save(self, path) -> list[Path]:
        """Write to ``path`` in the format its extension names. Several pages as PNG or SVG go to
        numbered files (``out-1.png``, ``out-2.png``, ...). Returns the paths written."""
        path = Path(path)
        files = self.render(format_of(path))
        if len(files) == 1:
            targets = [path]
        else:
            targets = [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(len(files))]
        for t, data in zip(targets, files):
            write_atomic(t, data)
        return targets
