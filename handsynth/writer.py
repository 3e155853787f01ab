"""The ``Handwriter`` facade: text -> lines -> sampled, checked lines -> a ``Drawing``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .alphabet import Alphabet
from .errors import HandsynthError
from .layout import PageOptions, place, wrap
from .models import SynthesisModel
from .paper import Paper, page_options, sheet_ink
from .drawing import Drawing
from .render import Ink
from .sampling import MAX_LINE_CHARS, Line, Primer, SamplingOptions, sample_checked, sample_lines
from .styles import get_style, style_from_file, style_from_json

MAX_WRITE_CHARS = 3000    # characters per write() call: about 2 pages
BATCH_LINES = 12          # lines sampled together


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

    @property
    def arch(self) -> str:
        return self.model.arch

    def primer(self, style) -> Primer | None:
        """``style``: None (the model's own hand), a built-in id or name, a Style, a path to a
        sample file, or a sample as a dict."""
        if style is None or style == "":
            return None
        if isinstance(style, dict):
            style = style_from_json(style)
        elif isinstance(style, Path):
            style = style_from_file(style)
        elif isinstance(style, str):
            style = get_style(style)
        text = self.alphabet.normalize(style.text, skip_unknown=False) if style.text else ""
        return Primer(style.offsets(), text)

    def lines(self, texts: list[str], style=None, options: SamplingOptions = SamplingOptions(),
              line_seeds: list[int] | None = None, return_phi: bool = False, resample: bool = False) -> list[Line]:
        """Sample single lines (no layout), e.g. for evaluation. ``resample``: as ``write`` does,
        resample lines that stalled or hold a far too wide word (their phi is then returned)."""
        if resample:
            seeds = line_seeds if line_seeds is not None else list(range(len(texts)))
            return sample_checked(self.model, self.alphabet, self.mean, self.std, texts, seeds, options,
                                  self.primer(style))
        return sample_lines(self.model, self.alphabet, self.mean, self.std, texts, options,
                            self.primer(style), return_phi, line_seeds)

    def write(self, text: str, style=None, bias: float = SamplingOptions.bias, seed: int = SamplingOptions.seed,
              width: int | None = None, align: str = PageOptions.align,
              stroke_width: float = Ink.stroke_width, color: str = Ink.color,
              background: str | None = Ink.background, dpi: int = Ink.dpi, skip_unknown: bool = False,
              paper: str | Paper | None = None, landscape: bool = False, margin_mm: float | None = None,
              line_spacing_mm: float | None = None, x_height_mm: float | None = None,
              ruling: str | None = None, pen: str = Ink.pen, ink_variation: float | None = Ink.ink_variation,
              progress=None, check=None) -> Drawing:
        """Write ``text`` (any length: paragraphs, line breaks, wrapping, pages) in a style.
        ``progress(done, total)`` is called after each batch of lines; ``check()``, if given, once
        per pen step: raising from it abandons the writing (a deadline, a cancelled request).

        The page: ``width`` pixels wide (default ``PageOptions.width``), or a sheet of ``paper``
        (``paper.PAPERS`` or ``"WxHmm"``; ``landscape``; margins, line spacing and x-height in mm)
        at ``dpi``. ``ruling``: ruled, squared or dotted. ``pen`` (``render.PENS``) and
        ``ink_variation`` (0 to 1; None: the pen's own) change PNG and PDF lines; SVG keeps one
        uniform pen."""
        if not isinstance(text, str) or not text.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(text) > MAX_WRITE_CHARS:
            raise HandsynthError(f"the text has {len(text)} characters; the limit is {MAX_WRITE_CHARS} per call")
        try:
            bias = float(bias)
        except (TypeError, ValueError):
            raise HandsynthError(f"bias must be a number (got {bias!r})") from None
        if not 0.0 <= bias <= 10.0:
            raise HandsynthError(f"bias {bias} is out of range: use 0 (wild) to 10 (very neat)")
        ink = Ink(stroke_width=float(stroke_width), color=color, background=background, dpi=int(dpi), pen=pen,
                  ink_variation=None if ink_variation is None else float(ink_variation), seed=int(seed))
        page = page_options(width, align, ink.dpi, paper, landscape, margin_mm, line_spacing_mm, x_height_mm, ruling)
        if page.sheet:
            ink = sheet_ink(ink)
        rows = [self.alphabet.normalize(r, skip_unknown) if r.strip() else "" for r in text.split("\n")]
        if not any(rows):
            raise HandsynthError("nothing left to write after dropping unknown characters")
        primer = self.primer(style)
        lines = wrap("\n".join(rows), min(page.chars_per_line, MAX_LINE_CHARS))   # a wide page: lines up to the limit
        todo = [i for i, t in enumerate(lines) if t]
        sampled: dict[int, Line] = {}
        opts = SamplingOptions(bias=bias, seed=seed)
        for s in range(0, len(todo), BATCH_LINES):
            chunk = todo[s:s + BATCH_LINES]
            for i, line in zip(chunk, sample_checked(self.model, self.alphabet, self.mean, self.std,
                                                     [lines[i] for i in chunk], chunk, opts, primer, check)):
                sampled[i] = line
            if progress:
                progress(min(s + BATCH_LINES, len(todo)), len(todo))
        offsets = [sampled[i].offsets if i in sampled else None for i in range(len(lines))]
        pages = place(lines, offsets, page)
        return Drawing(pages, ink, [sampled[i] for i in todo])
