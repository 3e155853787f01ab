"""The handsynth sample format: captured handwriting with the text it says.

One JSON document is either one sample or ``{"samples": [sample, ...]}``. A sample is::

    {
      "text": "the quick brown fox",          # what the strokes say (required)
      "strokes": [[[x, y], [x, y], ...], ...],  # one list of points per pen-down stroke (required)
      "writer": "alice",                       # optional
      "y_axis": "down"                         # optional: "down" (screen/canvas, default) or "up"
    }

Points may carry a third value (a time stamp), which is ignored. Units are arbitrary (pixels,
millimetres): samples are normalised like IAM-OnDB lines. The same format is used for training
(``handsynth train --samples``), custom styles (``--style-file``) and the web page's canvas.

``load_samples`` also reads W3C InkML (``.inkml`` files, see ``handsynth.inkml``): each outermost
traceGroup with a text is a sample, or the whole document with its text.
"""
from __future__ import annotations

import json
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import validate
from ..checkpoint import write_atomic
from ..errors import HandsynthError

MAX_POINTS = 20000


@dataclass
class Sample:
    text: str
    strokes: list  # list of (n, 2) float32 arrays, y up
    writer: str = ""
    source: str = field(default="", repr=False)

    def to_json(self) -> dict:
        return {"text": self.text, "writer": self.writer, "y_axis": "up",
                "strokes": [np.round(s, 3).tolist() for s in self.strokes]}


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _points(stroke, where: str) -> np.ndarray:
    """One stroke of a decoded sample -> a float64 (n, 2 or 3) array, refusing anything but a
    non-empty list of [x, y] or [x, y, t] numbers (no strings, no booleans, no nesting)."""
    bad = HandsynthError(f"{where} is not a non-empty list of numeric [x, y] points")
    if isinstance(stroke, np.ndarray):
        if stroke.dtype.kind not in "iuf" or stroke.ndim != 2 or stroke.shape[1] not in (2, 3) or not len(stroke):
            raise bad
        return stroke.astype(np.float64)
    if not isinstance(stroke, (list, tuple)) or not stroke:
        raise bad
    for p in stroke:
        if isinstance(p, np.ndarray):
            if p.dtype.kind not in "iuf" or p.shape not in ((2,), (3,)):
                raise bad
        elif not isinstance(p, (list, tuple)) or len(p) not in (2, 3) or not all(_is_number(v) for v in p):
            raise bad
    try:
        return np.array(stroke, dtype=np.float64)
    except OverflowError:   # an integer beyond float64
        raise HandsynthError(f"{where} has a coordinate too large for a number; coordinates must be within "
                             f"+-{validate.MAX_COORDINATE:,.0f}") from None
    except ValueError:      # [x, y] and [x, y, t] points mixed
        raise HandsynthError(f"{where}: every point must have the same length ([x, y] or [x, y, t])") from None


def parse_sample(obj, where: str = "sample") -> Sample:
    """A decoded JSON object -> ``Sample``; ``HandsynthError`` naming ``where`` if malformed."""
    if not isinstance(obj, dict):
        raise HandsynthError(f"{where}: expected a JSON object with 'text' and 'strokes'")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise HandsynthError(f"{where}: 'text' must be a non-empty string saying what the strokes write")
    raw = obj.get("strokes")
    if not isinstance(raw, list) or not raw:
        raise HandsynthError(f"{where}: 'strokes' must be a non-empty list of strokes (lists of [x, y] points)")
    y_axis = obj.get("y_axis", "down")
    if y_axis not in ("down", "up"):
        raise HandsynthError(f"{where}: 'y_axis' must be 'down' or 'up'")
    total = sum(len(st) for st in raw if isinstance(st, (list, tuple, np.ndarray)))
    if total > MAX_POINTS:   # counted before any conversion: a huge sample costs no memory
        raise HandsynthError(f"{where}: {total} points is more than the limit of {MAX_POINTS}")
    strokes = []
    for i, st in enumerate(raw):
        arr = validate.coordinates(_points(st, f"{where}: stroke {i}"), f"{where}: stroke {i}")
        if y_axis == "down":
            arr[:, 1] = -arr[:, 1]
        strokes.append(arr)
    writer = obj.get("writer", "")
    return Sample(" ".join(text.split()), strokes, writer if isinstance(writer, str) else "", where)


def load_samples(path: str | os.PathLike) -> list[Sample]:
    """Read a sample file (JSON, or InkML by its ``.inkml`` extension), or every ``*.json`` and
    ``*.inkml`` file in a directory."""
    path = Path(path)
    try:
        is_dir = path.is_dir()
    except ValueError:   # a NUL byte in the name
        raise HandsynthError(f"{validate.shown(str(path))}: not a usable file name") from None
    if is_dir:
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in (".json", ".inkml") and f.is_file())
        if not files:
            raise HandsynthError(f"{path}: no .json or .inkml sample files in this folder")
        return [s for f in files for s in load_samples(f)]
    if path.suffix.lower() == ".inkml":
        from ..inkml import read_inkml
        return [parse_sample(obj, where) for obj, where in read_inkml(path)]
    text = validate.decode_text(validate.read_bounded(path, validate.MAX_SAMPLE_FILE_BYTES, "sample file"), str(path))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise HandsynthError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise HandsynthError(f"{path}: the JSON is nested too deeply to be a sample") from None
    except ValueError as e:   # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise HandsynthError(f"{path}: not a usable JSON sample ({str(e).splitlines()[0][:80]})") from None
    if isinstance(doc, dict) and "samples" in doc:
        items = doc["samples"]
        if not isinstance(items, list) or not items:
            raise HandsynthError(f"{path}: 'samples' must be a non-empty list")
        return [parse_sample(o, f"{path} sample {i}") for i, o in enumerate(items)]
    return [parse_sample(doc, str(path))]


def save_samples(samples: list[Sample], path: str | os.PathLike) -> None:
    doc = samples[0].to_json() if len(samples) == 1 else {"samples": [s.to_json() for s in samples]}
    write_atomic(path, json.dumps(doc).encode("utf-8"))
