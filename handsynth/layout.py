"""Layout: text -> lines -> pages of placed strokes.

Paragraphs (blank lines) and explicit line breaks are kept, long paragraphs are wrapped to the
page width, each generated line's baseline is straightened before placement, and lines sit on a
steady line pitch, aligned left, centre or right between the margins. Page coordinates are
pixels with y growing downwards (as in PNG and SVG). A page of real paper (``paper.Paper``, sizes
in millimetres) comes here as a ``sheet``: ``PageOptions`` in pixels at the output's dpi.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from .errors import HandsynthError
from .strokes import baseline, bounds, offsets_to_strokes, strokes_to_offsets, transform

CHAR_WIDTH = 0.95   # average written width of a character in normalised units (IAM-OnDB, measured)
ALIGNS = ("left", "center", "right")
RULINGS = ("ruled", "squared", "dotted")


@dataclass(frozen=True)
class PageOptions:
    width: int = 1200               # page width in pixels
    page_height: int | None = None  # default: width * sqrt(2) (A-series paper)
    margin: int = 60                # pixels on every side
    x_height: float = 22.0          # pixels per normalised unit (the writing's body height)
    line_pitch: float = 3.4         # distance between baselines, in units
    align: str = "left"
    ruling: str | None = None       # paper ruled through the baselines, squared or dotted (RULINGS)
    # a sheet of real paper (``paper.Paper.page``): kept whole (never cut to its content), its line
    # spacing kept when the writing shrinks to fit, and room kept for the last line's descenders
    sheet: bool = False

    def __post_init__(self):
        if self.align not in ALIGNS:
            raise HandsynthError(f"unknown alignment {self.align!r}: use left, center or right")
        if self.ruling is not None and self.ruling not in RULINGS:
            raise HandsynthError(f"unknown ruling {self.ruling!r}: use ruled, squared or dotted")
        if not 200 <= self.width <= 10000:
            raise HandsynthError(f"page width {self.width} px is out of range (200 to 10000)")

    @property
    def height(self) -> int:
        return self.page_height or int(round(self.width * 2 ** 0.5))

    @property
    def chars_per_line(self) -> int:
        return max(8, int((self.width - 2 * self.margin) / (CHAR_WIDTH * 1.08 * self.x_height)))

    @property
    def lines_per_page(self) -> int:
        usable = self.height - 2 * self.margin - (2.4 if self.sheet else 1.6) * self.x_height
        return max(1, int(usable // (self.line_pitch * self.x_height)) + 1)


def wrap(text: str, width: int) -> list[str]:
    """Text -> lines of at most ``width`` characters. Explicit line breaks are kept, a blank line
    (paragraph break) becomes an empty line; words longer than a line are broken."""
    return [line for line, _ in wrap_rows(text, width)]


def wrap_rows(text: str, width: int) -> list[tuple[str, int]]:
    """``wrap``, each line with the number of the text's row (line of input) it came from: lines
    of one row are one run of text, which ``reflow`` may fill again."""
    lines: list[tuple[str, int]] = []
    for row, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n")):
        raw = " ".join(raw.split())
        if not raw:
            if lines and lines[-1][0] != "":
                lines.append(("", row))
            continue
        lines += [(line, row) for line in textwrap.wrap(raw, width, break_long_words=True, break_on_hyphens=True)]
    while lines and lines[-1][0] == "":
        lines.pop()
    return lines


def straighten(offsets: np.ndarray) -> tuple[list, float]:
    """Line offsets -> strokes with the fitted baseline rotated flat and moved to y = 0, in the
    model's units (``line_scales`` says how large a page writes them). Returns (strokes, the
    baseline angle in degrees that was removed)."""
    strokes = offsets_to_strokes(offsets)
    if not strokes:
        return [], 0.0
    slope, intercept, _ = baseline(strokes)
    angle = float(np.arctan(slope))
    strokes = transform(transform(strokes, dy=-intercept), angle=-angle)
    return strokes, float(np.degrees(angle))


SIZE_BAND = 1.06   # a line's body height is kept within this factor of the drawing's median


X_LETTERS = frozenset("acemnorsuvwxzi")   # letters whose tops are the x-height's (i: its stem)
MEASURABLE_SHARE = 0.45  # a line's body height is measured where this share of its letters and digits are those


def body_measurable(text: str | None) -> bool:
    """Whether a line of ``text`` shows its x-height: enough of its characters are x-height
    letters (``X_LETTERS``) for ``measures.body_height`` to find their tops. In a line of
    capitals and digits ("GARDEN CLUB NOTICE", "OX2 6QT 01865") it would measure the capitals'
    height instead. Unknown text (None) counts as measurable."""
    if text is None:
        return True
    chars = [c for c in text if c.isalnum()]
    n = sum(c in X_LETTERS for c in chars)
    return n >= 3 and n >= MEASURABLE_SHARE * len(chars)


def line_scales(offsets: list, texts: list | None = None) -> list[float]:
    """Per line (None for a blank one): the factor from the model's units to the page's unit.

    One factor for the whole drawing brings the median line's 10-90th percentile height of y to
    1 (the unit training lines were scaled to). Lines keep the sizes the model wrote them in,
    as a person's lines differ a little, except that a line whose body height (the x-height,
    ``measures.body_height``: capitals, ascenders and descenders barely move it) is more than
    ``SIZE_BAND`` from the drawing's median is brought back to that band. Scaling each line to
    its own 10-90% height instead made a line without ascenders half again as tall as one with
    many (a letter in style s05: body heights 0.37 to 0.53 of the line height). Where ``texts``
    are given, a line whose text does not show its x-height (``body_measurable``: a heading in
    capitals, a line of digits) keeps its size and takes no part in the median: measured, its
    capitals would be brought down to the others' x-height."""
    from .measures import body_height

    def h1090(o):
        y = np.concatenate(offsets_to_strokes(o))[:, 1]
        return float(np.percentile(y, 90) - np.percentile(y, 10))

    live = [o for o in offsets if o is not None and len(o)]
    if not live:
        return [None if o is None else 1.0 for o in offsets]
    heights = [h1090(o) for o in live]
    unit = 1.0 / float(np.median([h for h in heights if h > 0.2] or [1.0]))   # a dot or a dash alone: as it is
    texts = [None] * len(offsets) if texts is None else texts
    body = {id(o): body_height(o) if body_measurable(t) else float("nan")
            for o, t in zip(offsets, texts) if o is not None and len(o)}
    finite = [b for b in body.values() if np.isfinite(b) and b > 0]
    mid = float(np.median(finite)) if finite else float("nan")
    out = []
    for o in offsets:
        if o is None or not len(o):
            out.append(None)
            continue
        b = body[id(o)]
        ok = np.isfinite(b) and b > 0 and np.isfinite(mid)
        fix = float(np.clip(b, mid / SIZE_BAND, mid * SIZE_BAND) / b) if ok else 1.0   # outside the band: to its edge
        out.append(unit * fix)
    return out


@dataclass(frozen=True)
class WordSpan:
    """A word of a placed line and the strokes that write it: ``strokes[start:stop]``."""
    text: str
    start: int
    stop: int


REFLOW_FILL = 0.98   # reflow fills a line to this share of the writing area's width (room for rounding)


def reflow(texts: list[str], offsets: list, words: list, rows: list, opts: PageOptions) -> tuple[list, list, list]:
    """Lines filled again by their written width, as a person fills the measure. Wrapping counts
    characters, but written widths vary by style and by text (a paragraph's lines ended anywhere
    between 60% and 100% of the width, and a wide hand overflowed the page, which shrank all of
    its writing). Here the words of each run of text (``rows[i]``: the input row line i came
    from; blank lines and explicit line breaks are kept) are taken as written, with their strokes
    (``words[i]``: ``WordSpan`` list of line i) and laid out again greedily: each line takes words
    while their written width, at the page's size of writing (``line_scales``, as ``place`` will
    measure them), fits ``REFLOW_FILL`` of the width between the margins. A word keeps the gap
    before it as written; a word that moves after one from another line gets the run's median
    gap. No word is written again and none is cut.

    Returns (texts, offsets, words) of the new lines: offsets with the baseline straightened
    (``straighten``) where a run changed, each run as it was where its line breaks stay the
    same, or where its lines lack a word's strokes."""
    live = [t and o is not None and len(o) for t, o in zip(texts, offsets)]
    scales = line_scales([o if ok else None for o, ok in zip(offsets, live)], texts)
    room = REFLOW_FILL * (opts.width - 2 * opts.margin) / opts.x_height
    out_t, out_o, out_w = [], [], []
    i = 0
    while i < len(texts):
        j = i + 1
        while j < len(texts) and live[i] and live[j] and rows[j] == rows[i]:
            j += 1
        run = range(i, j)
        got = _refill(texts, offsets, words, scales, run, room) if live[i] else None
        if got is None:
            out_t += [texts[k] for k in run]
            out_o += [offsets[k] for k in run]
            out_w += [list(words[k] or []) for k in run]
        else:
            out_t += got[0]
            out_o += got[1]
            out_w += got[2]
        i = j
    return out_t, out_o, out_w


def _refill(texts, offsets, words, scales, run, room):
    """One run of lines filled again (``reflow``), or None when it stays as it is."""
    items = []   # (word, strokes, left, right, gap before it as written or None, scale)
    for k in run:
        spans = words[k] or []
        if [w.text for w in spans] != texts[k].split(" "):
            return None
        strokes, _ = straighten(offsets[k])
        prev = None
        for w in spans:
            st = strokes[w.start:w.stop]
            if not st:
                return None
            pts = np.concatenate(st)
            left, right = float(pts[:, 0].min()), float(pts[:, 0].max())
            items.append((w.text, st, left, right, None if prev is None else left - prev, scales[k]))
            prev = right
    gaps = [it[4] for it in items if it[4] is not None]
    usual = float(np.median(gaps)) if gaps else 0.6
    breaks, width = [], 0.0
    for n, (_, _, left, right, gap, k) in enumerate(items):
        w, g = (right - left) * k, (usual if gap is None else gap) * k
        if n and width + g + w > room:
            breaks.append(n)
            width = w
        else:
            width += (g if n else 0.0) + w
    old = list(np.cumsum([len(texts[k].split(" ")) for k in run])[:-1])
    if breaks == old:
        return None
    out_t, out_o, out_w = [], [], []
    for a, b in zip([0] + breaks, breaks + [len(items)]):
        strokes, spans, x = [], [], 0.0
        for n in range(a, b):
            text, st, left, right, gap, _ = items[n]
            if n > a:
                x += usual if gap is None else gap   # (a gap as written follows the word written before it)
            strokes += [s + np.array([x - left, 0.0], np.float32) for s in st]
            spans.append(WordSpan(text, len(strokes) - len(st), len(strokes)))
            x += right - left
        out_t.append(" ".join(w.text for w in spans))
        out_o.append(strokes_to_offsets(strokes))
        out_w.append(spans)
    return out_t, out_o, out_w


@dataclass
class PlacedLine:
    text: str
    strokes: list                   # (n, 2) arrays in page pixels, y down
    angle_removed: float = 0.0      # degrees of baseline slope straightened away
    words: list = field(default_factory=list)   # WordSpan per word, in order (when the writer knows them)


@dataclass(frozen=True)
class Ruling:
    """Ruled, squared or dotted paper in page pixels: lines through the baselines (``first``, then
    every ``pitch``) between the top and bottom ``margin``; or a grid of half the pitch over the
    whole page, through the baselines and the left margin."""
    kind: str
    first: float     # y of the first baseline
    pitch: float     # pixels between baselines
    margin: float

    def geometry(self, width: float, height: float) -> tuple[np.ndarray, np.ndarray]:
        """(segments (n, 2, 2) as ((x0, y0), (x1, y1)), dots (m, 2)) covering a page of this size."""
        if self.kind == "ruled":
            ys = np.arange(self.first, height - self.margin + 1e-6, self.pitch)
            ys = ys[ys >= self.margin - 1e-6]
            xs = np.zeros(0)
        else:
            step = self.pitch / 2
            ys = self.first + step * np.arange(np.ceil(-self.first / step), np.floor((height - self.first) / step) + 1)
            xs = self.margin + step * np.arange(np.ceil(-self.margin / step), np.floor((width - self.margin) / step) + 1)
        if self.kind == "dotted":
            gx, gy = np.meshgrid(xs, ys)
            return np.zeros((0, 2, 2)), np.c_[gx.ravel(), gy.ravel()]
        rows = [((0.0, y), (width, y)) for y in ys]
        cols = [((x, 0.0), (x, height)) for x in xs]
        return np.array(rows + cols, np.float64).reshape(-1, 2, 2), np.zeros((0, 2))


@dataclass
class Page:
    width: float                    # pixels (a sheet of paper: its exact size at the dpi, unrounded)
    height: float
    lines: list = field(default_factory=list)
    ruling: Ruling | None = None

    @property
    def strokes(self) -> list:
        return [s for line in self.lines for s in line.strokes]


def place(texts: list[str], offsets: list, opts: PageOptions, tight: bool = True,
          words: list | None = None) -> list[Page]:
    """Place generated lines (``offsets[i]`` writes ``texts[i]``; an empty text is a blank line)
    on pages. A single page is cut to its content (``tight``, not a sheet of paper); multi-page
    output keeps full pages. ``words[i]``, if given: line i's ``WordSpan`` list, kept with its
    placed line."""
    straight = []
    for t, o, k in zip(texts, offsets, line_scales([o if t else None for t, o in zip(texts, offsets)], texts)):
        strokes, angle = straighten(o) if t else ([], 0.0)
        straight.append((transform(strokes, scale=k) if strokes else [], angle))
    avail = opts.width - 2 * opts.margin
    widths = [bounds(s)[2] - bounds(s)[0] for s, _ in straight if s]
    # one scale for the whole drawing, so every line has the same size of writing
    widest = max(widths, default=0.0) * opts.x_height
    xh = opts.x_height * min(1.0, avail / widest) if widest > 0 else opts.x_height
    # baselines: a pixel page scales them with the writing; a sheet keeps its line spacing
    unit = opts.x_height if opts.sheet else xh
    per_page = opts.lines_per_page
    pages, chunk = [], []
    rows = list(zip(texts, straight))
    spans = list(words) if words is not None else [[] for _ in texts]
    for i in range(0, max(len(rows), 1), per_page):
        chunk = rows[i:i + per_page]
        page = Page(opts.width, opts.height, ruling=opts.ruling and Ruling(
            opts.ruling, opts.margin + 1.6 * unit, opts.line_pitch * unit, opts.margin))
        for j, (text, (strokes, angle)) in enumerate(chunk):
            if not strokes:
                continue
            y0 = opts.margin + unit * (1.6 + j * opts.line_pitch)
            xmin, _, xmax, _ = bounds(strokes)
            w = (xmax - xmin) * xh
            x0 = {"left": opts.margin, "center": (opts.width - w) / 2,
                  "right": opts.width - opts.margin - w}[opts.align] - xmin * xh
            pts = np.concatenate(strokes) * np.array([xh, -xh], np.float32) + np.array([x0, y0], np.float32)
            placed = np.split(pts.astype(np.float32), np.cumsum([len(s) for s in strokes])[:-1])
            page.lines.append(PlacedLine(text, placed, angle, list(spans[i + j] or [])))
        pages.append(page)
    if tight and not opts.sheet and len(pages) == 1 and pages[0].lines:
        ymax = max(float(s[:, 1].max()) for s in pages[0].strokes)
        last = opts.margin + unit * (1.6 + (len(rows) - 1) * opts.line_pitch)
        pages[0].height = int(np.ceil(max(ymax, last + 0.8 * xh) + opts.margin))
    return pages
