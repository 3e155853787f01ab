"""Handwriting styles: the built-in bank (priming samples with their text) and custom styles
from a sample file (the JSON format of ``handsynth.data.samples``).

A custom style of several sentences primes with the first ``PRIMER_SENTENCES`` of them joined as
one line (``strokes.continued``), the text likewise (``sampling.primed_text``): after tuning to a
person's hand, two of their sentences as the primer double the style retrieval of one
(docs/measurements.md, "Primed tuning"), and priming alone gains too."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.samples import Sample, load_samples, parse_sample
from ..errors import HandsynthError
from ..strokes import continued, dots_as_strokes, normalize_line, normalize_sample

BANK = Path(__file__).with_name("bank.json")
MIN_CHARS, MAX_CHARS = 8, 120
MIN_POINTS = 30
PRIMER_SENTENCES = 2      # a custom style's sentences that prime: the first two, joined


@dataclass(frozen=True)
class Style:
    id: str
    name: str
    text: str
    strokes: tuple            # (n, 2) float32 arrays, y up
    source: str = ""          # attribution
    more: tuple = ()          # the sentences after the first that prime too (Styles of one sentence)
    custom: bool = False      # a person's sample: normalised at the training lines' density (normalize_sample)

    def own_offsets(self) -> np.ndarray:
        """This sentence's offsets alone (the bank's as the corpus normalises; a person's at the
        training lines' density)."""
        strokes = dots_as_strokes(self.strokes)
        return normalize_sample(strokes, len(self.text)) if self.custom else normalize_line(strokes)

    def offsets(self) -> np.ndarray:
        """The primer's offsets: each sentence normalised, the later ones joined after the first."""
        return join_sentences([s.own_offsets() for s in (self, *self.more)])

    @property
    def primer_text(self) -> str:
        """The text the primer was written as: the sentences' texts joined as a primed line's."""
        return join_texts([s.text for s in (self, *self.more)])


def join_sentences(offsets: list) -> np.ndarray:
    """The first ``PRIMER_SENTENCES`` sentences' offsets of one hand as one primer line
    (``strokes.continued``): a style's, and a tuned file's own (``tune``)."""
    out = offsets[0]
    for o in offsets[1:PRIMER_SENTENCES]:
        out = continued(out, o)
    return out


def join_texts(texts: list) -> str:
    """The text ``join_sentences``'s line says (``sampling.primed_text``)."""
    from ..sampling import primed_text

    out = texts[0]
    for t in texts[1:PRIMER_SENTENCES]:
        out = primed_text(out, t)
    return out


@lru_cache(maxsize=1)
def builtin_styles() -> tuple[Style, ...]:
    if not BANK.exists():
        return ()
    doc = json.loads(BANK.read_text(encoding="utf-8"))
    out = []
    for item in doc["styles"]:
        s = parse_sample(item, f"built-in style {item.get('id')}")
        out.append(Style(item["id"], item["name"], s.text, tuple(s.strokes), item.get("source", "")))
    return tuple(out)


def check_sample(sample: Sample, where: str) -> Style:
    """A captured sample -> a Style, refusing samples too short or too long to prime with."""
    n_points = sum(len(s) for s in sample.strokes)
    if len(sample.text) < MIN_CHARS:
        raise HandsynthError(f"{where}: the sample's text is too short ({len(sample.text)} characters); "
                             f"write at least {MIN_CHARS} characters, ideally a sentence")
    if len(sample.text) > MAX_CHARS:
        raise HandsynthError(f"{where}: the sample's text is too long ({len(sample.text)} characters); "
                             f"use one line of at most {MAX_CHARS}")
    if n_points < MIN_POINTS:
        raise HandsynthError(f"{where}: the sample has only {n_points} points; write the whole text")
    off = normalize_sample(dots_as_strokes(sample.strokes), len(sample.text))
    if not np.all(np.isfinite(off)):
        raise HandsynthError(f"{where}: the strokes cannot be normalised (their points are too far apart or "
                             "all in one place); send the handwriting as drawn")
    per_char = len(off) / len(sample.text)
    if not 2.5 <= per_char <= 60:
        raise HandsynthError(f"{where}: the strokes do not look like the text {sample.text!r} "
                             f"({per_char:.1f} points per character after normalising)")
    return Style("custom", sample.writer or "custom", sample.text, tuple(sample.strokes), where, custom=True)


def joined(styles: list[Style]) -> Style:
    """Custom styles (one sentence each, of one person) as one style that primes with the first
    ``PRIMER_SENTENCES`` of them joined."""
    return replace(styles[0], more=tuple(styles[1:PRIMER_SENTENCES]))


def style_from_file(path) -> Style:
    """A sample file's sentences (one or more) as a style: it primes with the first two."""
    samples = load_samples(path)
    if not samples:
        raise HandsynthError(f"{path}: the style file holds no sample")
    return joined([check_sample(s, f"{path}" + (f" sample {i}" if len(samples) > 1 else ""))
                   for i, s in enumerate(samples[:PRIMER_SENTENCES])])


def style_from_json(obj) -> Style:
    """A sample as a dict, or a list of up to ``PRIMER_SENTENCES`` of one person's, as a style."""
    if isinstance(obj, (list, tuple)):
        if not 1 <= len(obj) <= PRIMER_SENTENCES:
            raise HandsynthError(f"a style sample list holds 1 to {PRIMER_SENTENCES} sentences of one hand "
                                 f"(got {len(obj)})")
        where = [f"style sample {i}" if len(obj) > 1 else "style sample" for i in range(len(obj))]   # from 0, as files
        return joined([check_sample(parse_sample(o, w), w) for o, w in zip(obj, where)])
    return check_sample(parse_sample(obj, "style sample"), "style sample")


def get_style(key: str) -> Style:
    """A built-in style by id or by name (case-insensitive)."""
    key_l = str(key).strip().lower()
    for s in builtin_styles():
        if key_l in (s.id.lower(), s.name.lower()):
            return s
    known = ", ".join(s.id for s in builtin_styles())
    raise HandsynthError(f"unknown style {key!r}; choose one of: {known} (see `handsynth styles`)")
