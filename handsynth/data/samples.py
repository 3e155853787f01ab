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
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    strokes, total = [], 0
    for i, s in enumerate(raw):
        try:
            arr = np.asarray(s, dtype=np.float64)
        except (TypeError, ValueError):
            raise HandsynthError(f"{where}: stroke {i} is not a list of numeric [x, y] points") from None
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] not in (2, 3) or not np.all(np.isfinite(arr)):
            raise HandsynthError(f"{where}: stroke {i} must be a non-empty list of finite [x, y] points")
        arr = arr[:, :2].astype(np.float32)
        if y_axis == "down":
            arr[:, 1] = -arr[:, 1]
        total += len(arr)
        strokes.append(arr)
    if total > MAX_POINTS:
        raise HandsynthError(f"{where}: {total} points is more than the limit of {MAX_POINTS}")
    writer = obj.get("writer", "")
    return Sample(" ".join(text.split()), strokes, writer if isinstance(writer, str) else "", where)


def load_samples(path: str | os.PathLike) -> list[Sample]:
    """Read a sample file (JSON, or InkML by its ``.inkml`` extension), or every ``*.json`` and
    ``*.inkml`` file in a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in (".json", ".inkml") and f.is_file())
        if not files:
            raise HandsynthError(f"{path}: no .json or .inkml sample files in this folder")
        return [s for f in files for s in load_samples(f)]
    if path.suffix.lower() == ".inkml":
        from ..inkml import read_inkml
        return [parse_sample(obj, where) for obj, where in read_inkml(path)]
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HandsynthError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HandsynthError(f"{path}: cannot read the file ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise HandsynthError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(doc, dict) and "samples" in doc:
        items = doc["samples"]
        if not isinstance(items, list) or not items:
            raise HandsynthError(f"{path}: 'samples' must be a non-empty list")
        return [parse_sample(o, f"{path} sample {i}") for i, o in enumerate(items)]
    return [parse_sample(doc, str(path))]


def save_samples(samples: list[Sample], path: str | os.PathLike) -> None:
    doc = samples[0].to_json() if len(samples) == 1 else {"samples": [s.to_json() for s in samples]}
    write_atomic(path, json.dumps(doc).encode("utf-8"))
