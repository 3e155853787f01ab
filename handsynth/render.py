"""Writers: PNG (anti-aliased, via matplotlib's Agg rasteriser), SVG (one smooth path per stroke,
viewBox in millimetres) and PDF (vector pages). Strokes are drawn as smooth curves: Catmull-Rom
splines through the pen points, written as cubic Bezier segments, with round caps and joins.

PNG and PDF can draw with a pen model (``Pen``, ``PENS``): the width follows the pen's speed and,
for a broad nib, the stroke's direction, and the ink's shade may vary per stroke. SVG keeps one
uniform pen. Ruled, squared or dotted paper (``layout.Ruling``) is drawn beneath the ink in a
light colour; in SVG it is a layer of its own."""
from __future__ import annotations

import io
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

import numpy as np

from .errors import HandsynthError
from .layout import Page

RULING_COLOR = "#a9bfdf"   # light blue, as printed on ruled paper
RULING_WIDTH_MM = 0.15     # ruled and squared lines
RULING_DOT_MM = 0.5        # dotted paper: the dots' diameter


@dataclass(frozen=True)
class Pen:
    """A pen model for PNG and PDF: the line's width is ``width`` x ``Ink.stroke_width`` at the
    page's typical speed, times (speed / typical speed) ** -``speed`` (faster is thinner; kept to
    ``SPEED_RANGE``); a broad nib (``nib`` > 0) draws ``1 - nib`` of that width moving along its
    edge, held ``nib_angle`` degrees above the horizontal, and all of it moving across. ``shade``:
    how much lighter fast lines are; ``variation``: the default per-stroke ink variation."""
    width: float = 1.0
    speed: float = 0.0
    nib: float = 0.0
    nib_angle: float = 40.0
    shade: float = 0.0
    variation: float = 0.0


PENS = {
    "uniform": Pen(),                                     # one width everywhere (the default)
    "ballpoint": Pen(width=0.85, speed=0.3, shade=0.2, variation=0.3),
    "fineliner": Pen(width=1.0, speed=0.06, variation=0.1),
    "fountain": Pen(width=1.4, speed=0.3, nib=0.8, nib_angle=40.0, shade=0.3, variation=0.5),
}
SPEED_RANGE = (0.6, 1.25)  # the speed factor's bounds (a pause does not make a blot)
SUBSTEPS = 4               # points of the smoothed curve per pen step, drawn by a pen model


@dataclass(frozen=True)
class Ink:
    stroke_width: float = 2.2        # pixels
    color: str = "#1b1f3b"           # any CSS/matplotlib colour: name, #rgb, #rrggbb
    background: str | None = "white"  # None: transparent
    dpi: int = 150                   # pixels per inch (physical size of PNG/SVG/PDF)
    pen: str = "uniform"             # a pen model (PENS), PNG and PDF
    ink_variation: float | None = None  # 0 (none) to 1: per-stroke shade; None: the pen's own
    seed: int = 0                    # of the ink variation

    def __post_init__(self):
        if self.pen not in PENS:
            raise HandsynthError(f"unknown pen {self.pen!r}: use {', '.join(PENS)}")
        if self.ink_variation is not None and not 0.0 <= self.ink_variation <= 1.0:
            raise HandsynthError(f"ink variation {self.ink_variation} is out of range (0 to 1)")
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


INKSCAPE = "http://www.inkscape.org/namespaces/inkscape"


def _svg_layer(name: str) -> str:
    return f' inkscape:groupmode="layer" id="{name}" inkscape:label="{name}"'


def _svg_ruling(page: Page, mm: float) -> str:
    segments, dots = page.ruling.geometry(page.width, page.height)
    items = [f'    <line x1="{a[0] * mm:.2f}" y1="{a[1] * mm:.2f}" x2="{b[0] * mm:.2f}" y2="{b[1] * mm:.2f}"/>'
             for a, b in segments]
    items += [f'    <circle cx="{x * mm:.2f}" cy="{y * mm:.2f}" r="{RULING_DOT_MM / 2:.2f}"/>' for x, y in dots]
    body = "\n".join(items)
    return (f'  <g{_svg_layer("ruling")} fill="{RULING_COLOR if len(dots) else "none"}" '
            f'stroke="{"none" if len(dots) else RULING_COLOR}" stroke-width="{RULING_WIDTH_MM}">\n{body}\n  </g>\n')


def page_svg(page: Page, ink: Ink) -> str:
    """One page as SVG in millimetres. With a ruling, the ruling and the ink are two Inkscape
    layers (``ruling`` beneath ``ink``)."""
    mm = 25.4 / ink.dpi
    w, h = page.width * mm, page.height * mm
    paths = "\n".join(f'  <path d="{svg_path(s, mm)}"/>' for s in page.strokes)
    bg = "" if ink.background is None else \
        f'  <rect width="100%" height="100%" fill={quoteattr(ink.background)}/>\n'
    ns, ruling, layer = "", "", ""
    if page.ruling is not None:
        ns, ruling, layer = f' xmlns:inkscape="{INKSCAPE}"', _svg_ruling(page, mm), _svg_layer("ink")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<svg xmlns="http://www.w3.org/2000/svg"{ns} width="{w:.2f}mm" height="{h:.2f}mm" '
            f'viewBox="0 0 {w:.2f} {h:.2f}">\n{bg}{ruling}'
            f'  <g{layer} fill="none" stroke={quoteattr(ink.color)} stroke-width="{ink.stroke_width * mm:.3f}" '
            f'stroke-linecap="round" stroke-linejoin="round">\n{paths}\n  </g>\n</svg>\n')


def _paper_rgb(ink: Ink) -> np.ndarray:
    from matplotlib.colors import to_rgb
    return np.array(to_rgb(ink.background or "white"))


def stroke_colors(n: int, ink: Ink, number: int = 0) -> np.ndarray:
    """(n, 4) RGBA: the ink colour, or with ink variation each stroke a little lighter or darker
    (seeded by ``ink.seed`` and the page ``number``)."""
    from matplotlib.colors import to_rgba
    rgba = np.tile(np.array(to_rgba(ink.color)), (n, 1))
    amount = PENS[ink.pen].variation if ink.ink_variation is None else ink.ink_variation
    if amount > 0 and n:
        shift = np.clip(np.random.default_rng([ink.seed, number]).normal(0.0, 0.12 * amount, n), -0.3, 0.3)
        light = np.maximum(shift, 0)[:, None]
        rgba[:, :3] = rgba[:, :3] * (1 - light) + _paper_rgb(ink) * light          # lighter: towards the paper
        rgba[:, :3] *= 1 - np.maximum(-shift, 0)[:, None]                # darker: towards black
    return rgba


def pen_lines(strokes: list, ink: Ink, colors: np.ndarray):
    """A pen model's strokes as line segments over the smoothed curve (the Bezier curve the uniform
    pen draws, ``SUBSTEPS`` points per pen step): ``(segments (n, 2, 2), widths in pixels (n,),
    colours (n, 4))``. The pen's speed is its step length over the page's median step."""
    pen = PENS[ink.pen]
    steps = [np.linalg.norm(np.diff(s, axis=0), axis=1) for s in strokes if len(s) > 1]
    typical = float(np.median(np.concatenate(steps))) if steps else 1.0
    typical = max(typical, 1e-6)
    t = np.linspace(0.0, 1.0, SUBSTEPS + 1)
    basis = np.stack([(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3])   # (4, k + 1)
    paper = _paper_rgb(ink)
    segs, widths, cols = [], [], []
    for s, color in zip(strokes, colors):
        p = np.asarray(s, np.float64)
        ctrl = bezier(p)                                                   # (m, 3, 2)
        start = np.vstack([p[:1], ctrl[:-1, 2]])
        curve = np.einsum("jk,mjx->mkx", basis, np.concatenate([start[:, None], ctrl], 1))   # (m, k + 1, 2)
        pts = np.vstack([curve[:, :-1].reshape(-1, 2), curve[-1:, -1]])   # (m * SUBSTEPS + 1, 2)
        d = np.diff(pts, axis=0)
        # speed: each pen step's length, smoothed, read along the curve between step midpoints
        step = np.linalg.norm(np.diff(p, axis=0), axis=1) if len(p) > 1 else np.zeros(1)
        if len(step) > 2:
            step = np.convolve(np.r_[step[0], step, step[-1]], [0.25, 0.5, 0.25], "valid")
        u = (np.arange(len(d)) + 0.5) / SUBSTEPS
        speed = np.interp(u, np.arange(len(step)) + 0.5, step) / typical
        factor = np.clip(np.maximum(speed, 1e-3) ** -pen.speed, *SPEED_RANGE)
        if pen.nib > 0:
            theta = np.arctan2(-d[:, 1], d[:, 0])                          # y grows downwards
            factor = factor * (1 - pen.nib + pen.nib * np.abs(np.sin(theta - np.radians(pen.nib_angle))))
        light = pen.shade * np.clip((speed - 0.8) / 1.2, 0.0, 1.0)[:, None]
        rgba = np.tile(color, (len(d), 1))
        rgba[:, :3] = rgba[:, :3] * (1 - light) + paper * light
        segs.append(np.stack([pts[:-1], pts[1:]], 1))
        widths.append(ink.stroke_width * pen.width * factor)
        cols.append(rgba)
    if not segs:
        return np.zeros((0, 2, 2)), np.zeros(0), np.zeros((0, 4))
    return np.concatenate(segs), np.concatenate(widths), np.concatenate(cols)


def page_transform(fig, page: Page):
    """Page pixels (x right, y down) -> the figure's display pixels, following the figure's size."""
    from matplotlib.transforms import Affine2D
    return Affine2D().scale(1 / page.width, -1 / page.height).translate(0, 1) + fig.transFigure


def _figure(page: Page, ink: Ink, number: int = 0):
    """A matplotlib figure of the page, its artists placed in page pixels (``page_transform``)
    with no Axes: building one costs more than drawing a short page."""
    from matplotlib.collections import CircleCollection, LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    fig = Figure(figsize=(page.width / ink.dpi, page.height / ink.dpi), dpi=ink.dpi)
    at = page_transform(fig, page)
    if ink.background is None:
        fig.patch.set_alpha(0)
    else:
        fig.patch.set_facecolor(ink.background)
    pt = 72.0 / ink.dpi  # points per pixel
    if page.ruling is not None:
        segments, dots = page.ruling.geometry(page.width, page.height)
        mm = 72.0 / 25.4   # points per mm
        if len(segments):
            fig.add_artist(LineCollection(segments, colors=RULING_COLOR, linewidths=RULING_WIDTH_MM * mm,
                                          zorder=0, transform=at))
        if len(dots):   # sizes: the dot's area in points squared
            fig.add_artist(CircleCollection([np.pi / 4 * (RULING_DOT_MM * mm) ** 2], offsets=dots, offset_transform=at,
                                            facecolors=RULING_COLOR, linewidths=0, zorder=0))
    strokes = page.strokes
    varied = ink.pen != "uniform" or ink.ink_variation
    colors = stroke_colors(len(strokes), ink, number) if varied else [ink.color] * len(strokes)
    if ink.pen != "uniform":
        segments, widths, cols = pen_lines(strokes, ink, colors)
        fig.add_artist(LineCollection(segments, linewidths=widths * pt, colors=cols, capstyle="round",
                                      joinstyle="round", zorder=2, transform=at))
        return fig
    lw = ink.stroke_width * pt
    for s, color in zip(strokes, colors):
        seg = bezier(s)
        verts = np.vstack([s[:1], seg.reshape(-1, 2)])
        codes = [MPath.MOVETO] + [MPath.CURVE4] * (len(verts) - 1)
        fig.add_artist(PathPatch(MPath(verts, codes), fill=False, edgecolor=color, linewidth=lw,
                                 capstyle="round", joinstyle="round", transform=at))
    return fig


def page_png(page: Page, ink: Ink, number: int = 0) -> bytes:
    """One page as PNG, ``round(width) x round(height)`` pixels (``number``: the page's place in
    the drawing, for the ink variation)."""
    fig = _figure(page, ink, number)
    if page.width != round(page.width) or page.height != round(page.height):   # a sheet of paper
        fig.set_size_inches(round(page.width) / ink.dpi, round(page.height) / ink.dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ink.dpi, transparent=ink.background is None)
    return buf.getvalue()


def pages_pdf(pages: list[Page], ink: Ink) -> bytes:
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        for number, page in enumerate(pages):
            pdf.savefig(_figure(page, ink, number))
    return buf.getvalue()
