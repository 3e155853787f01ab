"""The ``Handwriter`` facade: text -> lines -> sampled, checked lines -> a ``Drawing``."""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import validate
from .alphabet import Alphabet
from .errors import HandsynthError
from .layout import PageOptions, PlacedLine, WordSpan, place, reflow, straighten, wrap_rows
from .models import SynthesisModel
from .paper import Paper, page_options, sheet_ink
from .drawing import Drawing
from .render import Ink
from .sampling import (MAX_LINE_CHARS, Line, Primer, SamplingOptions, sample_checked, sample_lines,
                       word_strokes)
from .strokes import baseline, offsets_to_strokes, transform
from .styles import Style, get_style, style_from_file, style_from_json

MAX_WRITE_CHARS = 3000    # characters per write() call: about 2 pages
BATCH_LINES = 12          # lines sampled together
# A rewritten word draws its random numbers from the stream (redo seed, REDO_STREAM + word index *
# REDO_TRIES + try): apart from every line's (seed, line index). Up to REDO_TRIES writings are
# tried, in order, until one fits the room on its line.
REDO_STREAM = 1_000_000
REDO_TRIES = 3


@dataclass(frozen=True)
class LineFrame:
    """How a placed line's pen steps (the model's units, y up) became page pixels, so that a word
    written again lands as its line did: rotated by ``-angle`` radians (the line's baseline slope,
    straightened away) and scaled by ``unit`` (to the line's unit height), then ``scale`` pixels
    per unit with y down, the baseline at ``baseline`` pixels from the top."""
    angle: float
    unit: float
    scale: float
    baseline: float

    @classmethod
    def of(cls, line: Line, placed: PlacedLine, x_height: float) -> "LineFrame":
        raw = np.concatenate(offsets_to_strokes(line.offsets)).astype(np.float64)
        flat = np.concatenate(straighten(line.offsets)[0]).astype(np.float64)   # as layout.place saw it
        page = np.concatenate(placed.strokes).astype(np.float64)

        def spread(p):
            return float(np.sqrt(((p - p.mean(0)) ** 2).sum(1).mean()))

        unit = spread(flat) / spread(raw) if spread(raw) > 1e-9 else 1.0
        scale = spread(page) / spread(flat) if spread(flat) > 1e-9 else float(x_height)
        return cls(float(np.radians(placed.angle_removed)), unit, scale,
                   float(np.mean(page[:, 1] + scale * flat[:, 1])))

    def place(self, offsets: np.ndarray) -> list:
        """A word's offsets -> strokes in page pixels, its baseline on this line's and its left
        edge at x = 0."""
        strokes = transform(offsets_to_strokes(offsets), scale=self.unit, angle=-self.angle)
        pts = np.concatenate(strokes)
        slope, intercept, _ = baseline(strokes)
        x0, x1 = float(pts[:, 0].min()), float(pts[:, 0].max())
        at = slope * (x0 + x1) / 2 + intercept       # the word's baseline under its middle
        return [((s - np.array([x0, at], np.float32)) * np.array([self.scale, -self.scale], np.float32)
                 + np.array([0.0, self.baseline], np.float32)).astype(np.float32) for s in strokes]


@dataclass(frozen=True)
class Written:
    """How a drawing was written (``Drawing.source``): the style's primer, the sampling options,
    the page, and a ``LineFrame`` per placed line in reading order (every page)."""
    primer: Primer | None
    options: SamplingOptions
    page: PageOptions
    frames: tuple


@dataclass
class Handwriter:
    """A loaded model ready to write: the network (any family), its alphabet and normalisation
    statistics, and where it came from. ``load_model`` makes one."""
    model: SynthesisModel
    alphabet: Alphabet
    mean: np.ndarray
    std: np.ndarray
    path: Path | None = None
    name: str | None = None    # the shipped model's name, if it is one
    batcher: object = None     # a batching.Batcher: lines sampled in batches shared with other threads' writes
    own_primer: Primer | None = None   # a tuned hand's own: its person's first two sentences (tune.read_primer)
    _reader: object = field(default=None, repr=False)   # the proofreader (proofreader())

    def proofreader(self):
        """The shipped recogniser as the proofreading pass's reader (``recognizer.Reader``),
        loaded on first use; None where there is none (no proofreading then)."""
        if self._reader is None:
            from .recognizer import DEFAULT_RECOGNIZER, Reader, load_recognizer
            self._reader = Reader(load_recognizer(DEFAULT_RECOGNIZER)) if DEFAULT_RECOGNIZER.exists() else False
        return self._reader or None

    def _checked(self, texts: list[str], seeds: list[int], options: SamplingOptions, primer: Primer | None,
                 check=None) -> list[Line]:
        """``sampling.sample_checked`` here, or through the batcher when there is one."""
        if self.batcher is not None:
            return self.batcher.sample(texts, seeds, options, primer, check)
        read = self.proofreader() if options.proofread else None
        return sample_checked(self.model, self.alphabet, self.mean, self.std, texts, seeds, options, primer, check,
                              read)

    @property
    def arch(self) -> str:
        return self.model.arch

    def primer(self, style) -> Primer | None:
        """``style``: None (the model's own hand: for a tuned model, primed with the sentences it
        was learnt from), a built-in id or name, a Style, a path to a sample file, or a sample as a
        dict or a list of up to two of one person's."""
        if style is None or style == "":
            return self.own_primer
        if isinstance(style, (dict, list)):
            style = style_from_json(style)
        elif isinstance(style, os.PathLike):
            style = style_from_file(Path(style))
        elif isinstance(style, str):
            style = get_style(style)
        elif not isinstance(style, Style):
            raise HandsynthError(f"style must be a built-in style's id or name, a Style, a sample dict (or a list "
                                 f"of up to two), or a pathlib.Path of a sample file (got {type(style).__name__})")
        text = self.alphabet.normalize(style.primer_text, skip_unknown=False) if style.text else ""
        return Primer(style.offsets(), text)

    def lines(self, texts: list[str], style=None, options: SamplingOptions = SamplingOptions(),
              line_seeds: list[int] | None = None, return_phi: bool = False, resample: bool = False) -> list[Line]:
        """Sample single lines (no layout), e.g. for evaluation. ``resample``: as ``write`` does,
        resample lines that stalled or hold a far too wide word (their phi is then returned)."""
        if resample:
            seeds = line_seeds if line_seeds is not None else list(range(len(texts)))
            return self._checked(texts, seeds, options, self.primer(style))
        return sample_lines(self.model, self.alphabet, self.mean, self.std, texts, options,
                            self.primer(style), return_phi, line_seeds)

    def write(self, text: str, style=None, bias: float = SamplingOptions.bias, seed: int = SamplingOptions.seed,
              width: int | None = None, align: str = PageOptions.align,
              stroke_width: float = Ink.stroke_width, color: str = Ink.color,
              background: str | None = Ink.background, dpi: int = Ink.dpi, skip_unknown: bool = False,
              paper: str | Paper | None = None, landscape: bool = False, margin_mm: float | None = None,
              line_spacing_mm: float | None = None, x_height_mm: float | None = None,
              ruling: str | None = None, pen: str = Ink.pen, ink_variation: float | None = Ink.ink_variation,
              redo: dict | None = None, proofread: bool = True, progress=None, check=None) -> Drawing:
        """Write ``text`` (any length: paragraphs, line breaks, wrapping, pages) in a style.
        ``progress(done, total)`` is called after each batch of lines; ``check()``, if given, once
        per pen step: raising from it abandons the writing (a deadline, a cancelled request).

        The page: ``width`` pixels wide (default ``PageOptions.width``), or a sheet of ``paper``
        (``paper.PAPERS`` or ``"WxHmm"``; ``landscape``; margins, line spacing and x-height in mm)
        at ``dpi``. ``ruling``: ruled, squared or dotted. ``pen`` (``render.PENS``) and
        ``ink_variation`` (0 to 1; None: the pen's own) change PNG and PDF lines; SVG keeps one
        uniform pen.

        ``proofread``: the shipped recogniser reads each line, and a line it misreads is written
        once more, the better read of the two kept (``sampling.proofread``; about 1.4x the time
        on everyday text, up to 2.5x on text full of digits and capitals). False writes faster.

        ``redo``: ``{word index: seed}``, words to write again (``redo_word``, in word order) after
        the page is written; the page is otherwise the same as without it. The drawing keeps its
        words (``Drawing.words``) and how it was written (``Drawing.source``)."""
        if not isinstance(text, str):
            raise HandsynthError(f"text must be a string (got {type(text).__name__})")
        if not text.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(text) > MAX_WRITE_CHARS:
            raise HandsynthError(f"the text has {len(text)} characters; the limit is {MAX_WRITE_CHARS} per call")
        if isinstance(bias, bool) or not isinstance(bias, numbers.Real):
            raise HandsynthError(f"bias must be a number (got {validate.shown(bias)})")
        try:
            bias = float(bias)
        except OverflowError:   # an int beyond float64
            bias = float("inf")
        if not 0.0 <= bias <= 10.0:
            raise HandsynthError(f"bias {bias} is out of range: use 0 (wild) to 10 (very neat)")
        seed = validate.whole(seed, "seed", 0, validate.MAX_SEED)
        width = validate.optional(validate.whole, width, "width (pixels)")
        skip_unknown = validate.flag(skip_unknown, "skip_unknown")
        landscape = validate.flag(landscape, "landscape")
        for what, mm in (("the line spacing (mm)", line_spacing_mm), ("the x-height (mm)", x_height_mm)):
            validate.optional(validate.number, mm, what, above=0.0)
        validate.callback(progress, "progress")
        validate.callback(check, "check")
        ink = Ink(stroke_width=validate.number(stroke_width, "stroke_width"), color=color, background=background,
                  dpi=validate.whole(dpi, "dpi"), pen=pen,
                  ink_variation=validate.optional(validate.number, ink_variation, "ink_variation"), seed=seed)
        page = page_options(width, align, ink.dpi, paper, landscape, margin_mm, line_spacing_mm, x_height_mm, ruling)
        if page.sheet:
            ink = sheet_ink(ink)
        rows = [self.alphabet.normalize(r, skip_unknown) if r.strip() else "" for r in text.split("\n")]
        if not any(rows):
            raise HandsynthError("nothing left to write after dropping unknown characters")
        primer = self.primer(style)
        wrapped = wrap_rows("\n".join(rows), min(page.chars_per_line, MAX_LINE_CHARS))   # a wide page: lines up to the limit
        lines = [t for t, _ in wrapped]
        todo = [i for i, t in enumerate(lines) if t]
        self._redo_map(redo, sum(len(lines[i].split(" ")) for i in todo))   # bad numbers fail before any writing
        sampled: dict[int, Line] = {}
        proofread = validate.flag(proofread, "proofread")
        opts = SamplingOptions(bias=bias, seed=seed, proofread=proofread)
        for s in range(0, len(todo), BATCH_LINES):
            chunk = todo[s:s + BATCH_LINES]
            for i, line in zip(chunk, self._checked([lines[i] for i in chunk], chunk, opts, primer, check)):
                sampled[i] = line
            if progress:
                progress(min(s + BATCH_LINES, len(todo)), len(todo))
        offsets = [sampled[i].offsets if i in sampled else None for i in range(len(lines))]
        spans = [[WordSpan(*w) for w in word_strokes(sampled[i])] if i in sampled else [] for i in range(len(lines))]
        # the lines filled again by their written width (the words as written, moved between lines)
        lines, offsets, spans = reflow(lines, offsets, spans, [r for _, r in wrapped], page)
        pages = place(lines, offsets, page, words=spans)
        placed = [pl for pg in pages for pl in pg.lines]
        laid = [Line(t, o, False) for t, o in zip(lines, offsets) if t]
        frames = tuple(LineFrame.of(line, pl, page.x_height) for line, pl in zip(laid, placed))
        drawing = Drawing(pages, ink, [sampled[i] for i in todo], Written(primer, opts, page, frames))
        return self.redo_words(drawing, redo, check=check) if redo else drawing

    def redo_words(self, drawing: Drawing, redo: dict, check=None) -> Drawing:
        """``redo_word`` for each word of ``{word index: seed}``, in word order (as ``write(...,
        redo=...)`` does); every number is checked before any word is written."""
        for index, seed in self._redo_map(redo, len(drawing.words)):
            drawing = self.redo_word(drawing, index, seed, check=check)
        return drawing

    @staticmethod
    def _redo_map(redo, n_words: int) -> list[tuple[int, int]]:
        """``{word index: seed}`` checked -> its items in word order."""
        if redo is None:
            return []
        if not isinstance(redo, dict):
            raise HandsynthError(f"redo must map word numbers to seeds, e.g. {{3: 1}} (got {type(redo).__name__})")
        items = []
        for index, seed in redo.items():
            for what, v in (("word number", index), ("seed", seed)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise HandsynthError(f"redo: the {what} must be a whole number from 0 (got {validate.shown(v)})")
            validate.whole(seed, "redo: the seed", 0, validate.MAX_SEED)
            if index >= n_words:
                err = HandsynthError(f"word {index} does not exist: the text has {n_words} word(s), numbered from 0")
                err.words = n_words   # (for callers that count from 1)
                raise err
            items.append((int(index), int(seed)))
        return sorted(items)

    def redo_word(self, drawing: Drawing, index: int, seed: int, check=None) -> Drawing:
        """A new drawing with word ``index`` (``drawing.words``, from 0) written again, with random
        numbers from ``seed``, in the page's style and neatness; every other stroke is kept. The
        word sits where the old one was, on its line's baseline at its line's size; the rest of
        its line moves along by the difference in width (and the line is aligned again). Up to
        ``REDO_TRIES`` writings are tried for one that fits the line's room; if none fits, the
        narrowest is shrunk to fit. Deterministic: the same drawing, word and seed give the
        same result. ``drawing`` must come from ``write`` (it knows how it was written)."""
        src = getattr(drawing, "source", None)
        if not isinstance(src, Written):
            raise HandsynthError("this drawing does not say how it was written: only a drawing from "
                                 "Handwriter.write can have a word written again")
        self._redo_map({index: seed}, len(drawing.words))
        p, j, k = self._locate(drawing, index)
        page = drawing.pages[p]
        line = page.lines[j]
        frame = src.frames[sum(len(pg.lines) for pg in drawing.pages[:p]) + j]
        span = line.words[k]
        opts, W, margin = replace(src.options, seed=int(seed)), float(page.width), float(src.page.margin)
        before, old, after = line.strokes[:span.start], line.strokes[span.start:span.stop], line.strokes[span.stop:]
        gap = 0.0
        if old:
            left = min(float(s[:, 0].min()) for s in old)
            right = max(float(s[:, 0].max()) for s in old)
        else:   # no stroke wrote it: it goes between its neighbours, a word gap (0.6 x-height) apart
            g = 0.6 * frame.scale
            left = (max(float(s[:, 0].max()) for s in before) + g if before else
                    min(float(s[:, 0].min()) for s in after) if after else margin)
            right, gap = left, (g if after else 0.0)

        def layout(new):
            """(the line's strokes with ``new`` in, its overflow past the writing area in pixels)"""
            x0 = min(float(s[:, 0].min()) for s in new)
            new = [s + np.array([left - x0, 0], np.float32) for s in new]
            delta = max(float(s[:, 0].max()) for s in new) - right + gap
            strokes = before + new + [s + np.array([delta, 0], np.float32) for s in after]
            lo = min(float(s[:, 0].min()) for s in strokes)
            hi = max(float(s[:, 0].max()) for s in strokes)
            shift = {"left": 0.0, "center": (W - (hi - lo)) / 2 - lo, "right": W - margin - hi}[src.page.align]
            if shift:
                strokes = [s + np.array([shift, 0], np.float32) for s in strokes]
            return strokes, max(0.0, hi + shift - (W - margin), margin - (lo + shift))

        def width(strokes):
            return max(float(s[:, 0].max()) for s in strokes) - min(float(s[:, 0].min()) for s in strokes)

        tried = []
        for tries in ([0], list(range(1, REDO_TRIES))):
            got = self._checked([span.text] * len(tries), [REDO_STREAM + index * REDO_TRIES + t for t in tries],
                                opts, src.primer, check)
            tried += [frame.place(g.offsets) for g in got]
            fits = [layout(new) for new in tried]
            ok = [f for f in fits if f[1] <= 0.5]
            if ok:
                strokes = ok[0][0]
                break
        else:   # none fits: the narrowest, shrunk about its left end on the baseline
            new = min(tried, key=width)
            over = layout(new)[1]
            f = max(0.2, (width(new) - over) / max(width(new), 1e-6))
            strokes = layout([(s - np.array([0, frame.baseline], np.float32)) * np.float32(f)
                              + np.array([0, frame.baseline], np.float32) for s in new])[0]
        n_new = len(strokes) - len(before) - len(after)
        moved = n_new - len(old)
        words = [w if i < k else WordSpan(w.text, w.start + (moved if i > k else 0), w.stop + moved)
                 for i, w in enumerate(line.words)]
        lines = list(page.lines)
        lines[j] = replace(line, strokes=strokes, words=words)
        new_page = replace(page, lines=lines)
        if not src.page.sheet and len(drawing.pages) == 1:   # a page cut to its content: room for a taller word
            ymax = max(float(s[:, 1].max()) for s in strokes)
            new_page.height = max(page.height, int(np.ceil(ymax + margin)))
        pages = list(drawing.pages)
        pages[p] = new_page
        return replace(drawing, pages=pages)

    @staticmethod
    def _locate(drawing: Drawing, index: int) -> tuple[int, int, int]:
        """Word ``index`` -> (page, line on the page, word on the line)."""
        n = 0
        for p, page in enumerate(drawing.pages):
            for j, line in enumerate(page.lines):
                if index < n + len(line.words):
                    return p, j, index - n
                n += len(line.words)
        raise HandsynthError(f"word {index} does not exist: the drawing has {n} word(s), numbered from 0")
