"""Handwriting styles: the built-in bank (priming samples with their text) and custom styles
from a sample file (the JSON format of ``handsynth.data.samples``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..data.samples import Sample, load_samples, parse_sample
from ..errors import HandsynthError
from ..strokes import dots_as_strokes, normalize_line

BANK = Path(__file__).with_name("bank.json")
MIN_CHARS, MAX_CHARS = 8, 120
MIN_POINTS = 30


@dataclass(frozen=True)
class Style:
    id: str
    name: str
    text: str
    strokes: tuple            # (n, 2) float32 arrays, y up
    source: str = ""          # attribution

    def offsets(self) -> np.ndarray:
        return normalize_line(dots_as_strokes(self.strokes))


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
    off = normalize_line(sample.strokes)
    if not np.all(np.isfinite(off)):
        raise HandsynthError(f"{where}: the strokes cannot be normalised (their points are too far apart or "
                             "all in one place); send the handwriting as drawn")
    per_char = len(off) / len(sample.text)
    if not 2.5 <= per_char <= 60:
        raise HandsynthError(f"{where}: the strokes do not look like the text {sample.text!r} "
                             f"({per_char:.1f} points per character after normalising)")
    return Style("custom", sample.writer or "custom", sample.text, tuple(sample.strokes), where)


def style_from_file(path) -> Style:
    samples = load_samples(path)
    if len(samples) != 1:
        raise HandsynthError(f"{path}: a style file holds exactly one sample (found {len(samples)})")
    return check_sample(samples[0], str(path))


def style_from_json(obj) -> Style:
    return check_sample(parse_sample(obj, "style sample"), "style sample")


def get_style(key: str) -> Style:
    """A built-in style by id or by name (case-insensitive)."""
    key_l = str(key).strip().lower()
    for s in builtin_styles():
        if key_l in (s.id.lower(), s.name.lower()):
            return s
    known = ", ".join(s.id for s in builtin_styles())
    raise HandsynthError(f"unknown style {key!r}; choose one of: {known} (see `handsynth styles`)")
