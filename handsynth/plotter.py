"""Pen-plotter output: a ``drawing.Drawing`` -> pages of pen strokes in millimetres, ordered to cut
pen-up travel and optionally simplified, written as plotter-ready SVG or as GRBL G-code.

``plot_pages`` does the work once per drawing; ``plotter_svg`` and ``gcode`` write one page each:

    pages = plot_pages(drawing, tolerance=0.05)
    svg = plotter_svg(pages[0])
    text = gcode(pages[0], GcodeOptions(pen="z", z_up=3))
    print(travel_summary(pages))      # pen-up travel 812.3 mm -> 301.2 mm (63% less)

Coordinates here are page millimetres, y down (``mm = px * 25.4 / dpi``), as in SVG.

**Ordering** (``order_strokes``): greedy nearest neighbour from the page's top-left corner, where
a stroke may be drawn in either direction, then 2-opt passes (reversing a run of strokes, which
also reverses each stroke in it) until no reversal shortens the travel. Strokes are kept whole:
a plotter draws each one in a single pen-down, as it was written.

**Pen-up travel** (``pen_up_travel``) is the distance from each stroke's end to the next one's
start, as ``vpype stat`` reports it ("Pen-up length"): travel from and back to the machine's
home is not counted.

**Simplification** (``simplify``): Ramer-Douglas-Peucker, distance to the chord segment, a point
kept when it lies more than the tolerance away (as GEOS/shapely's ``simplify`` with
``preserve_topology=False``; the tests compare the two). A short numpy version here rather than
shapely, because shapely comes only with the optional ``plotter`` extra and the core must not
need it.

**Dots**: a stroke that is a single point (the dot of an i) becomes a segment ``DOT_MM`` long,
because SVG readers (vpype among them) drop zero-length paths and the pen must still touch down.

**G-code: our own writer, not vpype-gcode's profiles.** vpype-gcode (``gwrite``) would need
vpype and its dependencies (scipy, shapely, ...) for every ``-o note.gcode``; its profiles are
format templates the user writes in a TOML file (its bundled millimetre profile, ``gcodemm``,
has no pen-up or pen-down command at all), and its last release is from 2022. What GRBL pen plotters need is small: millimetres,
absolute moves, a pen-down and a pen-up command, a drawing and a travel feed, an offset and a
y flip, which ``GcodeOptions`` covers and validates (a bad option is a one-line
``HandsynthError`` before anything is written). Anyone who wants vpype-gcode's profiles (or
HPGL, or vpype's ``linemerge``/``linesort``) goes through the vpype plugin instead:
``vpype handsynth "text" linesort gwrite -p PROFILE out.gcode`` (``vpype_plugin.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from .errors import HandsynthError
from .render import Ink

DOT_MM = 0.1           # a one-point stroke becomes a segment this long (mm)
MAX_TOLERANCE = 5.0    # mm: more would change the letters' shapes beyond recognition
TWO_OPT_PASSES = 20    # 2-opt passes at most (it usually settles in 3 to 6)
PENS = ("servo", "z", "custom")
ORIGINS = ("page", "writing")


@dataclass
class Layer:
    color: str
    strokes: list          # (n, 2) float64 arrays, mm, y down, in plotting order


@dataclass
class PlotPage:
    """One page ready to plot: size and pen width in mm, a layer per ink colour."""
    width: float
    height: float
    pen_width: float
    layers: list
    travel_before: float   # pen-up travel (mm) in the written order
    travel_after: float    # ... and in the plotting order

    @property
    def strokes(self) -> list:
        return [s for layer in self.layers for s in layer.strokes]


# ---- geometry ----------------------------------------------------------------------------------

def pen_up_travel(strokes) -> float:
    """The pen-up distance when ``strokes`` are drawn in this order: the sum over consecutive
    strokes of the distance from one's end to the next one's start (in the strokes' units)."""
    if len(strokes) < 2:
        return 0.0
    ends = np.array([s[-1] for s in strokes[:-1]], np.float64)
    starts = np.array([s[0] for s in strokes[1:]], np.float64)
    return float(np.hypot(*(starts - ends).T).sum())


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from points ``p`` (k, 2) to the segment ``a``-``b``."""
    ab = b - a
    den = float(ab @ ab)
    t = np.zeros(len(p)) if den == 0.0 else np.clip((p - a) @ ab / den, 0.0, 1.0)
    return np.hypot(*(p - a - t[:, None] * ab).T)


def simplify(points, tolerance: float) -> np.ndarray:
    """Ramer-Douglas-Peucker: the points of ``points`` (n, 2) needed to stay within
    ``tolerance`` of it (same units). The ends are always kept."""
    p = np.asarray(points, np.float64)
    if tolerance <= 0 or len(p) < 3:
        return p.copy()
    keep = np.zeros(len(p), bool)
    keep[[0, -1]] = True
    stack = [(0, len(p) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        d = _segment_distance(p[a + 1:b], p[a], p[b])
        k = int(np.argmax(d))
        if d[k] > tolerance:
            m = a + 1 + k
            keep[m] = True
            stack += [(m, b), (a, m)]
    return p[keep]


def _greedy(starts: np.ndarray, ends: np.ndarray, here) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbour from ``here``: each next stroke is the one whose start or end is
    nearest (ties keep the written order and direction). Returns (order, reversed)."""
    n = len(starts)
    order, rev = np.empty(n, np.int64), np.zeros(n, bool)
    free = np.ones(n, bool)
    here = np.asarray(here, np.float64)
    for k in range(n):
        ds = np.where(free, ((starts - here) ** 2).sum(1), np.inf)
        de = np.where(free, ((ends - here) ** 2).sum(1), np.inf)
        i, j = int(np.argmin(ds)), int(np.argmin(de))
        if de[j] < ds[i]:
            order[k], rev[k], here = j, True, starts[j]
        else:
            order[k], here = i, ends[i]
        free[order[k]] = False
    return order, rev


def _two_opt(starts: np.ndarray, ends: np.ndarray, order: np.ndarray, rev: np.ndarray):
    """2-opt on an open path of strokes: reversing the run i..j (order and directions) changes
    only the two moves at its edges. For each i the best j is taken while that shortens the
    travel, for at most ``TWO_OPT_PASSES`` passes. ``starts``/``ends`` are those of the strokes
    as placed (after ``order``/``rev``) and are updated in place with them."""
    n = len(starts)
    for _ in range(TWO_OPT_PASSES):
        better = False
        for i in range(n):
            into = ends[i - 1] if i else None
            # moves after the run (none when the run reaches the end of the path)
            old_out = np.append(np.hypot(*(starts[i + 1:] - ends[i:-1]).T), 0.0)
            new_out = np.append(np.hypot(*(starts[i + 1:] - starts[i]).T), 0.0)
            if into is None:
                old_in, new_in = 0.0, 0.0
            else:
                old_in = math.hypot(*(starts[i] - into))
                new_in = np.hypot(*(ends[i:] - into).T)
            gain = new_in + new_out - old_in - old_out
            k = int(np.argmin(gain))
            if gain[k] < -1e-9:
                j = i + k + 1
                starts[i:j], ends[i:j] = ends[i:j][::-1].copy(), starts[i:j][::-1].copy()
                order[i:j] = order[i:j][::-1].copy()
                rev[i:j] = ~rev[i:j][::-1]
                better = True
        if not better:
            break
    return order, rev


def order_strokes(strokes, start=(0.0, 0.0), two_opt: bool = True) -> list:
    """``strokes`` in an order (and directions) with less pen-up travel: greedy nearest
    neighbour from ``start``, then 2-opt. Every stroke is kept whole; a reversed one is
    returned as a reversed copy."""
    if len(strokes) < 2:
        return list(strokes)
    starts = np.array([s[0] for s in strokes], np.float64)
    ends = np.array([s[-1] for s in strokes], np.float64)
    order, rev = _greedy(starts, ends, start)
    if two_opt:
        s, e = np.where(rev[:, None], ends[order], starts[order]), np.where(rev[:, None], starts[order], ends[order])
        order, rev = _two_opt(s, e, order, rev)
    out = [strokes[i][::-1].copy() if r else strokes[i] for i, r in zip(order, rev)]
    if pen_up_travel(out) > pen_up_travel(strokes):   # never worse than the written order
        return list(strokes)
    return out


def _prepare(points_px: np.ndarray, mm: float, tolerance: float) -> np.ndarray:
    s = simplify(np.asarray(points_px, np.float64) * mm, tolerance)
    if np.ptp(s, axis=0).max() == 0.0:
        s = np.vstack([s[:1], s[:1] + [DOT_MM, 0.0]])
    return s


def _number(name: str, value, lo: float, hi: float, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise HandsynthError(f"{name} must be a number (got {value!r})") from None
    if not (math.isfinite(v) and lo <= v <= hi):
        raise HandsynthError(f"{name} {value} is out of range ({lo:g} to {hi:g}{unit})")
    return v


def plot_pages(drawing, *, order: bool = True, tolerance: float = 0.0,
               colors=None) -> list[PlotPage]:
    """The drawing's pages as plotter pages: strokes in mm, simplified to ``tolerance`` mm (0:
    off), grouped into a layer per colour (``colors``: one colour per stroke of
    ``drawing.strokes``; default the ink's), and ordered within each layer (``order``)."""
    tolerance = _number("simplify tolerance", tolerance, 0.0, MAX_TOLERANCE, " mm")
    total = len(drawing.strokes)
    if colors is None:
        colors = [drawing.ink.color] * total
    colors = list(colors)
    if len(colors) != total:
        raise HandsynthError(f"{len(colors)} colours for {total} strokes: give one colour per stroke")
    for c in set(colors):
        Ink(color=c)   # the same colour check as every other output
    mm = 25.4 / drawing.ink.dpi
    pages, at = [], 0
    for page in drawing.pages:
        groups: dict[str, list] = {}
        for s in page.strokes:
            groups.setdefault(colors[at], []).append(_prepare(s, mm, tolerance))
            at += 1
        before = sum(pen_up_travel(g) for g in groups.values())
        layers = [Layer(c, order_strokes(g) if order else g) for c, g in groups.items()]
        pages.append(PlotPage(page.width * mm, page.height * mm, drawing.ink.stroke_width * mm, layers,
                              before, sum(pen_up_travel(layer.strokes) for layer in layers)))
    return pages


def travel_summary(pages: list[PlotPage]) -> str:
    """One line for the user: the pen-up travel before and after ordering, over all pages."""
    before = sum(p.travel_before for p in pages)
    after = sum(p.travel_after for p in pages)
    less = f" ({(1 - after / before) * 100:.0f}% less)" if before > 0 else ""
    return f"pen-up travel {before:.1f} mm -> {after:.1f} mm{less}"


# ---- SVG ---------------------------------------------------------------------------------------

def _polyline(s: np.ndarray) -> str:
    xy = [f"{x:.3f} {y:.3f}" for x, y in s]
    return f"M{xy[0]}L" + " ".join(xy[1:])


def plotter_svg(page: PlotPage) -> str:
    """Plotter-ready SVG in true millimetres: one open polyline path per pen stroke (no fill, no
    background), an Inkscape layer per ink colour (``1 ink``, ``2 ink #c00``, ...), which vpype
    and Inkscape's AxiDraw tools read as layers."""
    w, h = page.width, page.height
    groups = []
    for k, layer in enumerate(page.layers, 1):
        label = "ink" if len(page.layers) == 1 else f"ink {layer.color}"
        paths = "\n".join(f'    <path d="{_polyline(s)}"/>' for s in layer.strokes)
        groups.append(f'  <g inkscape:groupmode="layer" inkscape:label={quoteattr(f"{k} {label}")} id="layer{k}" '
                      f'fill="none" stroke={quoteattr(layer.color)} stroke-width="{page.pen_width:.3f}" '
                      f'stroke-linecap="round" stroke-linejoin="round">\n{paths}\n  </g>\n')
    note = escape(f"handsynth plotter SVG: {len(page.strokes)} strokes, pen-up travel "
                  f"{page.travel_after:.1f} mm (written order: {page.travel_before:.1f} mm)").replace("--", "-")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- {note} -->\n'
            f'<svg xmlns="http://www.w3.org/2000/svg" '
            f'xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape" '
            f'width="{w:.3f}mm" height="{h:.3f}mm" viewBox="0 0 {w:.3f} {h:.3f}">\n'
            + "".join(groups) + "</svg>\n")


# ---- G-code ------------------------------------------------------------------------------------

def _command(name: str, value) -> str:
    if not isinstance(value, str) or not value.strip() or not value.isprintable() or not value.isascii():
        raise HandsynthError(f"{name} must be one line of G-code, such as M3 S90 (got {value!r})")
    return value.strip()


@dataclass(frozen=True)
class GcodeOptions:
    """GRBL-style G-code: millimetres (G21), absolute moves (G90).

    The pen: ``pen="servo"`` lowers with ``M3 S<servo_down>`` and lifts with ``M5`` (or
    ``M3 S<servo_up>`` when ``servo_up`` is set); ``pen="z"`` moves a Z axis (``G1 Z<z_down>
    F<z_feed>`` down, ``G0 Z<z_up>`` up); ``pen="custom"`` sends ``pen_down``/``pen_up`` as
    given. ``dwell`` seconds (G4) after each pen move give a servo time to settle.

    Moves: drawing at ``feed`` mm/min; travel at ``travel_feed`` mm/min (G1), or rapid (G0)
    when it is None. Placement: ``origin`` "page" puts the paper's corner, "writing" the
    writing's corner, at machine position ``offset`` (mm). ``flip_y`` (the default) is for
    machines whose y grows away from the user: the corner is then the bottom-left one and y
    is mirrored; without it, the top-left corner and page y as it is. Several ink colours
    pause for a pen change (M0) between layers."""
    pen: str = "servo"
    servo_down: int = 1000
    servo_up: int | None = None
    z_down: float = 0.0
    z_up: float = 5.0
    z_feed: float = 1000.0
    pen_down: str | None = None
    pen_up: str | None = None
    dwell: float = 0.0
    feed: float = 3000.0
    travel_feed: float | None = None
    offset: tuple = (0.0, 0.0)
    origin: str = "page"
    flip_y: bool = True
    home: bool = True           # lift the pen and go back to the origin at the end
    decimals: int = 3

    def __post_init__(self):
        if self.pen not in PENS:
            raise HandsynthError(f"unknown pen {self.pen!r}: use servo, z or custom")
        if self.origin not in ORIGINS:
            raise HandsynthError(f"unknown origin {self.origin!r}: use page or writing")
        for name in ("servo_down", "servo_up"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 100000):
                raise HandsynthError(f"{name.replace('_', ' ')} must be a whole number from 0 to 100000 "
                                     f"(the S value of M3; got {v!r})")
        z_down = _number("z down", self.z_down, -1000, 1000, " mm")
        z_up = _number("z up", self.z_up, -1000, 1000, " mm")
        if self.pen == "z" and z_up <= z_down:
            raise HandsynthError(f"z up ({z_up:g} mm) must be above z down ({z_down:g} mm)")
        numbers = {"z_down": z_down, "z_up": z_up,
                   "z_feed": _number("z feed", self.z_feed, 1, 100000, " mm/min"),
                   "feed": _number("feed", self.feed, 1, 100000, " mm/min"),
                   "dwell": _number("dwell", self.dwell, 0, 10, " s")}
        if self.travel_feed is not None:
            numbers["travel_feed"] = _number("travel feed", self.travel_feed, 1, 100000, " mm/min")
        if self.pen == "custom":
            _command("pen down command", self.pen_down)
            _command("pen up command", self.pen_up)
        elif self.pen_down is not None or self.pen_up is not None:
            raise HandsynthError("pen down/up commands are for pen=custom; "
                                 f"pen={self.pen} makes its own")
        try:
            ox, oy = self.offset
        except (TypeError, ValueError):
            raise HandsynthError(f"offset must be two numbers, x and y in mm (got {self.offset!r})") from None
        numbers["offset"] = (_number("offset x", ox, -10000, 10000, " mm"), _number("offset y", oy, -10000, 10000, " mm"))
        for name, value in numbers.items():   # numbers given as text (from a command line) become floats
            object.__setattr__(self, name, value)
        if isinstance(self.decimals, bool) or not isinstance(self.decimals, int) or not 0 <= self.decimals <= 6:
            raise HandsynthError(f"decimals must be a whole number from 0 to 6 (got {self.decimals!r})")

    def _f(self, v: float) -> str:
        s = f"{v:.{self.decimals}f}"
        return "0" if s.lstrip("-").strip("0.") == "" else s

    @property
    def pen_down_command(self) -> str:
        if self.pen == "servo":
            return f"M3 S{self.servo_down}"
        if self.pen == "z":
            return f"G1 Z{self._f(self.z_down)} F{self._f(self.z_feed)}"
        return _command("pen down command", self.pen_down)

    @property
    def pen_up_command(self) -> str:
        if self.pen == "servo":
            return "M5" if self.servo_up is None else f"M3 S{self.servo_up}"
        if self.pen == "z":
            return f"G0 Z{self._f(self.z_up)}"
        return _command("pen up command", self.pen_up)

    def transform(self, page: PlotPage):
        """The map from page mm (y down) to machine mm: a function of (n, 2) arrays."""
        ox, oy = self.offset
        x0, y_top, y_bottom = 0.0, 0.0, page.height
        if self.origin == "writing" and page.strokes:
            pts = np.concatenate(page.strokes)
            x0, y_top, y_bottom = float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 1].max())
        if self.flip_y:
            return lambda p: np.stack([p[:, 0] - x0 + ox, y_bottom - p[:, 1] + oy], 1)
        return lambda p: np.stack([p[:, 0] - x0 + ox, p[:, 1] - y_top + oy], 1)


def gcode(page: PlotPage, options: GcodeOptions = GcodeOptions()) -> str:
    """The page as G-code (see ``GcodeOptions``): for each stroke, a travel move to its start,
    pen down, G1 moves through its points, pen up."""
    o = options
    to_machine = o.transform(page)
    down, up = o.pen_down_command, o.pen_up_command
    wait = [f"G4 P{o.dwell:g}"] if o.dwell > 0 else []
    travel = "G0" if o.travel_feed is None else "G1"
    travel_f = "" if o.travel_feed is None else f" F{o._f(o.travel_feed)}"
    strokes = page.strokes
    head = (f"(handsynth: {len(strokes)} strokes, page {page.width:.1f} x {page.height:.1f} mm, "
            f"pen-up travel {page.travel_after:.1f} mm)")
    out = [head, "G21 (millimetres)", "G90 (absolute positions)", up, *wait]
    for k, layer in enumerate(page.layers):
        if k:
            out += [f"M0 (change the pen: layer {k + 1}, {layer.color})"]
        for s in layer.strokes:
            m = to_machine(s)
            xy = [f"X{o._f(x)} Y{o._f(y)}" for x, y in m]
            out += [f"{travel} {xy[0]}{travel_f}", down, *wait, f"G1 {xy[1]} F{o._f(o.feed)}"]
            out += [f"G1 {p}" for p in xy[2:]]
            out += [up, *wait]
    if o.home:
        out.append(f"{travel} X{o._f(o.offset[0])} Y{o._f(o.offset[1])}{travel_f}")
    out.append("M2")
    return "\n".join(out) + "\n"
