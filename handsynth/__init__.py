"""handsynth: typed text in, believable handwriting out.

    import handsynth
    hw = handsynth.load_model()                  # the shipped model (or a path to weights)
    drawing = hw.write("Dear Ada,\\nthank you!", style="s03", bias=2.0, seed=1)
    drawing.save("note.png")                     # .png, .svg or .pdf
    png_bytes, svg_text = drawing.to_png(), drawing.to_svg()
    drawing.strokes                              # list of (n, 2) arrays, page pixels
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .alphabet import Alphabet
from .errors import HandsynthError
from .layout import CHAR_WIDTH, PageOptions, place, wrap
from .render import Drawing, Ink
from .sampling import Line, Primer, SamplingOptions, sample_lines
from .styles import Style, builtin_styles, get_style, style_from_file, style_from_json

__all__ = ["load_model", "available_styles", "Handwriter", "HandsynthError", "SamplingOptions",
           "PageOptions", "Ink", "Drawing", "Style", "MAX_TEXT_CHARS"]

DEFAULT_MODEL = Path(__file__).with_name("weights") / "default.pt"
MAX_TEXT_CHARS = 3000     # per request: about 2 pages
BATCH_LINES = 12          # lines sampled together
CANDIDATES = 2            # each line is written this many times at once; the first plausible is kept
NARROW_AT = 60            # pen steps (about 5 characters) after which a line keeps only its candidate furthest along
MAX_PASSES = 2            # passes for lines with no plausible candidate (stalled or scribbled)
MAX_STEPS_PER_CHAR = 22.0 # a line dawdling longer is scribbled (typical: 11-15; measured, see README)


def available_styles() -> list[Style]:
    """The built-in styles (id, name, the text of their priming sample)."""
    return list(builtin_styles())


def load_model(path: str | os.PathLike | None = None) -> "Handwriter":
    """The shipped model, or weights / a checkpoint written by ``handsynth train``."""
    from .model import load_checkpoint_model

    path = Path(path) if path else DEFAULT_MODEL
    if not path.exists():
        raise HandsynthError(f"{path}: no such model file")
    try:
        model, meta = load_checkpoint_model(path)
    except Exception as e:
        raise HandsynthError(f"{path}: not a handsynth model file ({e.__class__.__name__})") from None
    return Handwriter(model, Alphabet(meta["alphabet"]), np.array(meta["offset_mean"], np.float32),
                      np.array(meta["offset_std"], np.float32), path)


@dataclass
class Handwriter:
    model: object
    alphabet: Alphabet
    mean: np.ndarray
    std: np.ndarray
    path: Path | None = None

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
            return self._sample_checked(texts, seeds, options, self.primer(style))
        return sample_lines(self.model, self.alphabet, self.mean, self.std, texts, options,
                            self.primer(style), return_phi, line_seeds)

    def write(self, text: str, style=None, bias: float = SamplingOptions.bias, seed: int = 0,
              width: int = 1200, align: str = "left", stroke_width: float = 2.2, color: str = "#1b1f3b",
              background: str | None = "white", dpi: int = 150, skip_unknown: bool = False,
              progress=None) -> Drawing:
        """Write ``text`` (any length: paragraphs, line breaks, wrapping, pages) in a style."""
        if not isinstance(text, str) or not text.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(text) > MAX_TEXT_CHARS:
            raise HandsynthError(f"the text has {len(text)} characters; the limit is {MAX_TEXT_CHARS} per call")
        try:
            bias = float(bias)
        except (TypeError, ValueError):
            raise HandsynthError(f"bias must be a number (got {bias!r})") from None
        if not 0.0 <= bias <= 10.0:
            raise HandsynthError(f"bias {bias} is out of range: use 0 (wild) to 10 (very neat)")
        page = PageOptions(width=int(width), align=align)
        ink = Ink(stroke_width=float(stroke_width), color=color, background=background, dpi=int(dpi))
        rows = [self.alphabet.normalize(r, skip_unknown) if r.strip() else "" for r in text.split("\n")]
        if not any(rows):
            raise HandsynthError("nothing left to write after dropping unknown characters")
        primer = self.primer(style)
        lines = wrap("\n".join(rows), page.chars_per_line)
        todo = [i for i, t in enumerate(lines) if t]
        sampled: dict[int, Line] = {}
        opts = SamplingOptions(bias=bias, seed=seed)
        for s in range(0, len(todo), BATCH_LINES):
            chunk = todo[s:s + BATCH_LINES]
            for i, line in zip(chunk, self._sample_checked([lines[i] for i in chunk], chunk, opts, primer)):
                sampled[i] = line
            if progress:
                progress(min(s + BATCH_LINES, len(todo)), len(todo))
        offsets = [sampled[i].offsets if i in sampled else None for i in range(len(lines))]
        pages = place(lines, offsets, page)
        return Drawing(pages, ink, [sampled[i] for i in todo])

    def _sample_checked(self, texts, seeds, opts, primer) -> list[Line]:
        """Sample lines so that they come out plausible: each line is started by CANDIDATES
        candidates at once; after NARROW_AT pen steps only the one whose window is furthest along
        goes on, and the first to finish plausibly (no stall, no scribble, no far too wide word) is kept; lines with no
        plausible candidate get one more pass with new seeds. Bounded: at most MAX_PASSES
        passes, and the least bad candidate is kept."""
        out = sample_lines(self.model, self.alphabet, self.mean, self.std, texts, opts, primer, True, seeds,
                           candidates=CANDIDATES, score=badness, narrow_at=NARROW_AT)
        for p in range(1, MAX_PASSES):
            bad = [k for k, line in enumerate(out) if not plausible(line)]
            if not bad:
                break
            redo = sample_lines(self.model, self.alphabet, self.mean, self.std, [texts[k] for k in bad], opts,
                                primer, True, [seeds[k] for k in bad], candidates=CANDIDATES, score=badness,
                                first_candidate=p * CANDIDATES, narrow_at=NARROW_AT)
            for k, line in zip(bad, redo):
                if plausible(line) or badness(line) < badness(out[k]):
                    out[k] = line
        return out


def line_width(line: Line) -> float:
    x = np.cumsum(line.offsets[:, 0])
    return float(x.max() - x.min()) if len(x) else 0.0


def word_widths(line: Line) -> list[tuple[str, float]]:
    """Each word of the line with the written width (x-heights) of the pen steps the attention
    window spent on it (``line.phi`` needed)."""
    if line.phi is None or not len(line.offsets):
        return []
    x = np.cumsum(line.offsets[:, 0])
    focus = line.phi[:, :len(line.text)].argmax(1)
    out, start = [], 0
    for word in line.text.split(" "):
        span = np.flatnonzero((focus >= start) & (focus < start + len(word)))
        out.append((word, float(np.ptp(x[span])) if len(span) else 0.0))
        start += len(word) + 1
    return out


def badness(line: Line) -> float:
    """How far the line is from plausible: 0 when fine; larger for stalled lines, lines with far
    more pen steps per character than handwriting needs (scribbles), and words far wider than
    their letters need."""
    score = 10.0 if line.hit_cap else 0.0
    # many pen steps per character: the window stalled while the pen scribbled in place
    score += max(0.0, len(line.offsets) / max(len(line.text), 1) - MAX_STEPS_PER_CHAR) / 5
    per_char = line_width(line) / max(len(line.text), 1)
    score += max(0.0, per_char / CHAR_WIDTH - 2.2) + max(0.0, 0.3 - per_char / CHAR_WIDTH)
    for word, width in word_widths(line):
        score += max(0.0, width / (CHAR_WIDTH * max(len(word), 1)) - 3.5)
    return score


def plausible(line: Line) -> bool:
    """A written line that reached its end with a sensible width for its characters and words."""
    return badness(line) == 0.0
