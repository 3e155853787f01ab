"""Animations of the writing, each stroke drawn in order at the pen's pace (``inkml.pen_times``).

- ``animated_svg``: the page's SVG as ``render`` writes it, with one SMIL ``<animate>`` per ink
  path: the path's dash (``pathLength="1"``) grows from its start when the pen sets down
  (``begin``), following the pen point by point (``values``), and stays (``fill="freeze"``).
  Plays in a browser without script; a viewer without SMIL shows the page without its ink.
- ``animation``: a GIF or WebP through Pillow. The page is drawn once, as ``render`` draws the PNG,
  and uncovered along the strokes as the pen reaches them, ``DEFAULT_FPS`` frames a second. A
  writing longer than ``MAX_FRAMES`` frames plays faster (a time-lapse), frames larger than
  ``MAX_PIXELS`` in all are scaled down, and the finished page is held ``HOLD_MS`` before the loop.
"""
from __future__ import annotations

import dataclasses
import io
import xml.etree.ElementTree as ET

import numpy as np

from .errors import HandsynthError
from .inkml import SAMPLE_MS, pen_times, short_number
from .render import bezier

SVG_NS = "http://www.w3.org/2000/svg"
NAMESPACES = {"": SVG_NS, "inkscape": "http://www.inkscape.org/namespaces/inkscape",
              "sodipodi": "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
              "xlink": "http://www.w3.org/1999/xlink"}
HIDDEN = 1.01            # a dash offset that puts the path's one dash just before its start

ANIMATION_FORMATS = ("gif", "webp")
DEFAULT_FPS = 20         # frames a second (GIF delays are whole hundredths: 20 fps = 5/100 s)
MAX_FRAMES = 150         # the frame budget: a longer writing plays faster
MAX_PIXELS = 60_000_000  # pixels in all frames together; larger frames are scaled down
HOLD_MS = 2000           # the finished page stays this long
SUBSTEPS = 4             # points per pen step on the curve that uncovers the page


def _check(drawing, page: int, speed: float):
    if not 0 <= page < len(drawing.pages):
        raise HandsynthError(f"page {page + 1} does not exist (the drawing has {len(drawing.pages)})")
    if not 0.1 <= speed <= 100:
        raise HandsynthError(f"speed {speed} is out of range (0.1 to 100 times the pen's pace)")


def page_times(drawing, page: int = 0) -> list[np.ndarray]:
    """Milliseconds at which the pen reaches each point of the page's strokes, from 0 at the
    page's first point: the drawing's one clock (``pen_times``, as written to InkML)."""
    times = pen_times(drawing.strokes)
    first = sum(len(p.strokes) for p in drawing.pages[:page])
    mine = times[first:first + len(drawing.pages[page].strokes)]
    t0 = float(mine[0][0]) if mine else 0.0
    return [t - t0 for t in mine]


def animated_svg(drawing, page: int = 0, speed: float = 1.0) -> str:
    """The page as SVG with each stroke drawn in turn at the pen's pace (``speed`` times faster)."""
    _check(drawing, page, speed)
    strokes = drawing.pages[page].strokes
    root = ET.fromstring(drawing.to_svg(page))    # our own output
    paths = list(root.iter(f"{{{SVG_NS}}}path"))
    if len(paths) < len(strokes):
        raise RuntimeError(f"the SVG has {len(paths)} paths for {len(strokes)} strokes")
    ink = paths[len(paths) - len(strokes):]       # the ink is the last layer (a ruling lies beneath)
    for el, s, t in zip(ink, strokes, page_times(drawing, page)):
        s = np.asarray(s, np.float64)
        seg = np.linalg.norm(np.diff(s, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(seg)])
        done = along / along[-1] if len(s) > 1 and along[-1] > 0 else np.linspace(0.0, 1.0, max(len(s), 2))
        dur = max(float(t[-1] - t[0]), SAMPLE_MS)
        el.set("pathLength", "1")
        el.set("stroke-dasharray", "1 2")
        el.set("stroke-dashoffset", short_number(HIDDEN))
        anim = ET.SubElement(el, f"{{{SVG_NS}}}animate", {
            "attributeName": "stroke-dashoffset", "begin": f"{short_number(t[0] / 1000 / speed)}s",
            "dur": f"{short_number(dur / 1000 / speed)}s", "values": ";".join(short_number(1 - d) for d in done),
            "fill": "freeze"})
        if len(t) > 2 and not np.allclose(np.diff(t), t[1] - t[0]):
            anim.set("keyTimes", ";".join(short_number((x - t[0]) / (t[-1] - t[0])) for x in t))
    for prefix, uri in NAMESPACES.items():
        ET.register_namespace(prefix, uri)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _png(drawing, page: int, blank: bool = False):
    from PIL import Image
    d = drawing
    if blank:   # the same page without its ink: paper, background and ruling
        d = dataclasses.replace(drawing, pages=[dataclasses.replace(drawing.pages[page], lines=[])])
        page = 0
    return Image.open(io.BytesIO(d.to_png(page))).convert("RGBA")


def _plan(drawing, page: int, fps: int, speed: float, max_frames: int, max_pixels: int):
    """``(finished page, empty page, masks, durations)``: the two pages as RGBA images, and for
    each frame between them a '1' mask of where the pen has been (made as they are taken)."""
    from PIL import Image, ImageDraw

    _check(drawing, page, speed)
    if not 1 <= fps <= 50:
        raise HandsynthError(f"{fps} frames a second is out of range (1 to 50)")
    final, empty = _png(drawing, page), _png(drawing, page, blank=True)
    pg = drawing.pages[page]
    strokes, times = pg.strokes, page_times(drawing, page)
    frame_ms = 1000.0 / fps
    total = max((float(t[-1]) for t in times), default=0.0)
    n = int(np.clip(np.ceil(total / speed / frame_ms), 1, max(max_frames - 1, 1)))
    step = max(total / n, 1e-9)                    # pen time per frame
    shrink = min(1.0, float(np.sqrt(max_pixels / ((n + 1) * final.width * final.height))))
    if shrink < 1.0:
        size = (max(1, round(final.width * shrink)), max(1, round(final.height * shrink)))
        final, empty = final.resize(size, Image.LANCZOS), empty.resize(size, Image.LANCZOS)
    scale = final.width / pg.width
    width = max(3 * drawing.ink.stroke_width, drawing.ink.stroke_width + 4) * scale   # wider than any pen's line
    r = width / 2

    # each stroke as a dense curve (the Bezier curve the renderer draws) with the time of each point
    curves = []
    u = np.linspace(0.0, 1.0, SUBSTEPS + 1)[1:]
    basis = np.stack([(1 - u) ** 3, 3 * (1 - u) ** 2 * u, 3 * (1 - u) * u ** 2, u ** 3])   # (4, k)
    for s, t in zip(strokes, times):
        s = np.asarray(s, np.float64)
        if len(s) > 1:
            ctrl = np.concatenate([s[:-1, None], bezier(s)], axis=1)          # (n - 1, 4, 2)
            pts = np.vstack([s[:1], np.einsum("sjd,jk->skd", ctrl, basis).reshape(-1, 2)])
            ts = np.concatenate([t[:1], (t[:-1, None] + np.diff(t)[:, None] * u).ravel()])
        else:
            pts, ts = s, t[:1]
        curves.append((pts * scale, ts))

    def masks():
        mask = Image.new("1", final.size, 0)
        draw = ImageDraw.Draw(mask)
        drawn = [0] * len(curves)                  # points of each curve uncovered so far
        for k in range(1, n):
            for i, (pts, ts) in enumerate(curves):
                upto = int(np.searchsorted(ts, k * step, side="right"))
                if upto <= drawn[i]:
                    continue
                piece = pts[max(drawn[i] - 1, 0):upto]
                if len(piece) > 1:
                    draw.line([tuple(p) for p in piece], fill=255, width=max(1, round(width)), joint="curve")
                for x, y in (piece[0], piece[-1]):
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
                drawn[i] = upto
            yield mask.copy()

    durations = [round(frame_ms)] * n + [HOLD_MS]
    return final, empty, masks(), durations


def frames(drawing, page: int = 0, fps: int = DEFAULT_FPS, speed: float = 1.0,
           max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS):
    """The frames of the page being written: ``(images (RGBA), durations in ms)``. The first
    frame is the empty page, the last the finished page (held ``HOLD_MS``)."""
    from PIL import Image
    final, empty, masks, durations = _plan(drawing, page, fps, speed, max_frames, max_pixels)
    return [empty] + [Image.composite(final, empty, m) for m in masks] + [final], durations


def animation(drawing, fmt: str, page: int = 0, fps: int = DEFAULT_FPS, speed: float = 1.0,
              max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS) -> bytes:
    """A looping GIF or WebP (``fmt``) of the page being written (see ``frames``). A transparent
    background stays transparent in WebP and becomes white in GIF."""
    from PIL import Image

    fmt = str(fmt).lower().lstrip(".")
    if fmt not in ANIMATION_FORMATS:
        raise HandsynthError(f"unknown animation format {fmt!r}: use gif or webp")
    final, empty, masks, durations = _plan(drawing, page, fps, speed, max_frames, max_pixels)
    if fmt == "gif":     # one palette for every frame: both pages over white, quantised together
        w, h = final.size
        both = Image.new("RGBA", (w, 2 * h), "white")
        both.alpha_composite(final, (0, 0))
        both.alpha_composite(empty, (0, h))
        both = both.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE)
        final, empty = both.crop((0, 0, w, h)), both.crop((0, h, w, 2 * h))
    elif drawing.ink.background is not None:
        final, empty = final.convert("RGB"), empty.convert("RGB")
    seq = [empty] + [Image.composite(final, empty, m) for m in masks] + [final]
    buf = io.BytesIO()
    if fmt == "gif":
        seq[0].save(buf, "GIF", save_all=True, append_images=seq[1:], duration=durations, loop=0, disposal=1)
    else:
        seq[0].save(buf, "WEBP", save_all=True, append_images=seq[1:], duration=durations, loop=0,
                    lossless=True, method=2)
    return buf.getvalue()
