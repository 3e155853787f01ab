"""Stroke types and geometry: offsets <-> points, normalisation, downsampling, baselines.

Conventions (shared by the whole package):
- *strokes* are a list of ``(n, 2)`` float32 arrays of absolute points, y growing upwards;
- *offsets* are a ``(N, 3)`` float32 array ``dx, dy, end_of_stroke``: the pen's move from the
  previous point (the first row is the first point itself, relative to the origin) and whether
  the pen lifts after this point.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

Strokes = list  # list[np.ndarray of shape (n, 2)]


def strokes_to_offsets(strokes: Strokes) -> np.ndarray:
    """Absolute points per stroke -> ``(N, 3)`` offsets with ``end_of_stroke`` on each stroke's
    last point."""
    strokes = [np.asarray(s, dtype=np.float32).reshape(-1, 2) for s in strokes]
    strokes = [s for s in strokes if len(s)]
    if not strokes:
        return np.zeros((0, 3), np.float32)
    points = np.concatenate(strokes)
    out = np.zeros((len(points), 3), np.float32)
    out[0, :2] = points[0]
    out[1:, :2] = np.diff(points, axis=0)
    ends = np.cumsum([len(s) for s in strokes]) - 1
    out[ends, 2] = 1.0
    return out


def offsets_to_strokes(offsets: np.ndarray) -> Strokes:
    """``(N, 3)`` offsets -> list of absolute-point strokes (split after each end_of_stroke)."""
    offsets = np.asarray(offsets, dtype=np.float32)
    if len(offsets) == 0:
        return []
    points = np.cumsum(offsets[:, :2], axis=0)
    ends = np.flatnonzero(offsets[:, 2] > 0.5) + 1
    pieces = np.split(points, ends)
    return [p for p in pieces if len(p)]


def bounds(strokes: Strokes) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of all points."""
    pts = np.concatenate([np.asarray(s).reshape(-1, 2) for s in strokes]) if strokes else np.zeros((1, 2))
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def transform(strokes: Strokes, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0,
              angle: float = 0.0) -> Strokes:
    """Rotate by ``angle`` radians about the origin, scale, then translate."""
    if not len(strokes):
        return []
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, s], [-s, c]], np.float32)  # row-vector convention: p @ rot
    pts = [np.asarray(st, np.float32).reshape(-1, 2) for st in strokes]
    out = (np.concatenate(pts) @ rot) * np.float32(scale) + np.array([dx, dy], np.float32)
    return np.split(out, np.cumsum([len(p) for p in pts])[:-1])   # all points at once, then per stroke


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = slope * x + intercept``; slope 0 when x has no spread."""
    if len(x) < 2 or np.ptp(x) < 1e-6:
        return 0.0, float(np.mean(y)) if len(y) else 0.0
    slope, intercept = np.polyfit(x.astype(np.float64), y.astype(np.float64), 1)
    return float(slope), float(intercept)


def baseline(strokes: Strokes, bins: int | None = None) -> tuple[float, float, float]:
    """Estimate the writing's baseline: ``(slope, intercept, spread)``.

    The points are cut into vertical slices along x (about one per two x-heights of width); in each
    slice the 20th percentile of y stands for the baseline there (descenders are few, the body
    of the letters sits on the line). A least-squares line through those slice minima is the
    baseline; ``spread`` is the standard deviation of the slice minima around it.
    """
    pts = np.concatenate([np.asarray(s).reshape(-1, 2) for s in strokes])
    x, y = pts[:, 0], pts[:, 1]
    height = max(np.percentile(y, 90) - np.percentile(y, 10), 1e-6)
    width = np.ptp(x)
    n = bins or int(np.clip(width / (2 * height), 1, 200))
    edges = np.linspace(x.min(), x.max() + 1e-6, n + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, n - 1)
    # per slice with at least 3 points: the mean x and the 20th percentile of y (linear
    # interpolation, as np.percentile), for all slices at once
    count = np.bincount(which, minlength=n)
    full = np.flatnonzero(count >= 3)
    if len(full) < 2:
        return 0.0, float(np.percentile(y, 20)), 0.0
    ys = y[np.lexsort((y, which))].astype(np.float64)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])[full]
    pos = 0.2 * (count[full] - 1)
    lo = np.floor(pos).astype(np.int64)
    by = ys[start + lo] + (pos - lo) * (ys[start + np.minimum(lo + 1, count[full] - 1)] - ys[start + lo])
    bx = np.bincount(which, weights=x.astype(np.float64), minlength=n)[full] / count[full]
    slope, intercept = fit_line(bx, by)
    # one robust refit: drop slices far below the line (descenders)
    resid = by - (slope * bx + intercept)
    keep = np.abs(resid) <= 2.5 * (np.median(np.abs(resid)) + 1e-6)
    if keep.sum() >= 2 and keep.sum() < len(bx):
        slope, intercept = fit_line(bx[keep], by[keep])
        resid = by[keep] - (slope * bx[keep] + intercept)
    return slope, intercept, float(np.std(resid))


DOT_SIZE = 0.06   # a dot drawn as a tiny stroke: its height in line heights (IAM-OnDB's 3-point strokes: median 0.12)


def dots_as_strokes(strokes: Strokes, size: float = DOT_SIZE) -> Strokes:
    """One-point strokes (a canvas's i-dots and full stops) -> three-point strokes ``size`` line
    heights (10-90th percentile of y) tall, as a pen records a dot. A priming sample ending in a
    one-point stroke made the network start every line with a dot and a damaged first letter
    (".Met me", ".ith a bit"); pen-recorded dots, as in IAM-OnDB, do not."""
    strokes = [np.asarray(st, np.float32).reshape(-1, 2) for st in strokes]
    if not any(len(st) == 1 for st in strokes):
        return strokes
    y = np.concatenate(strokes)[:, 1]
    r = size / 2 * max(float(np.percentile(y, 90) - np.percentile(y, 10)), 1e-6)
    step = np.array([[0.0, 0.0], [r, -r], [0.0, -2 * r]], np.float32)
    return [st + step if len(st) == 1 else st for st in strokes]


@dataclass(frozen=True)
class Normalization:
    """How a raw line becomes training offsets (stored with the corpus cache and checkpoints)."""

    downsample: int = 2           # keep every n-th point (always the first and last of a stroke)
    clip: float = 5.0             # offsets clipped to +-clip (in x-heights) after scaling
    max_angle: float = 30.0       # lines are rotated flat by at most this many degrees


def normalize_line(strokes: Strokes, norm: Normalization = Normalization()) -> np.ndarray:
    """Raw strokes (y up) -> normalised offsets.

    1. degenerate points (repeats within a stroke) are removed;
    2. the line is rotated flat: a least-squares line through all points gives its angle;
    3. it is scaled to unit height, the height being the 10-90th percentile range of y
       (robust to stray dots and long descenders);
    4. every ``downsample``-th point is kept, always keeping each stroke's first and last point;
    5. offsets are clipped at ``+-clip`` (repairs the rare extreme jump).
    """
    clean = []
    for s in strokes:
        s = np.asarray(s, np.float32).reshape(-1, 2)
        if len(s) > 1:
            keep = np.ones(len(s), bool)
            keep[1:] = np.any(np.diff(s, axis=0) != 0, axis=1)
            s = s[keep]
        if len(s):
            clean.append(s)
    if not clean:
        return np.zeros((0, 3), np.float32)
    pts = np.concatenate(clean)
    slope, _ = fit_line(pts[:, 0], pts[:, 1])
    angle = float(np.clip(np.arctan(slope), -np.radians(norm.max_angle), np.radians(norm.max_angle)))
    clean = transform(clean, angle=-angle)
    pts = np.concatenate(clean)
    height = float(np.percentile(pts[:, 1], 90) - np.percentile(pts[:, 1], 10))
    if height <= 1e-6:
        height = float(max(np.ptp(pts[:, 1]), np.ptp(pts[:, 0]), 1.0))
    origin = pts[0]
    clean = [(s - origin) / height for s in clean]
    if norm.downsample > 1:
        clean = [s if len(s) <= 2 else s[np.unique(np.r_[np.arange(0, len(s), norm.downsample), len(s) - 1])]
                 for s in clean]
    off = strokes_to_offsets(clean)
    off[:, :2] = np.clip(off[:, :2], -norm.clip, norm.clip)
    return off


# steps per character of the IAM-OnDB training lines as normalised (downsample 2): 5th, 50th
# and 95th percentile
TRAIN_STEPS_PER_CHAR = (8.25, 11.1, 15.6)


def normalize_sample(strokes: Strokes, n_chars: int, norm: Normalization = Normalization()) -> np.ndarray:
    """A person's sample (a style, a line to tune on) normalised as ``normalize_line``, at the
    density of the training lines: where ``norm`` gives it fewer or more steps per character than
    nearly all of them (a pen or screen sampled slower or faster than IAM-OnDB's tablet, or strokes
    the model wrote, already downsampled), every n-th point is kept instead, the n whose steps per
    character are nearest the training lines' median. A primer at half their density misleads the
    window (the first letter of each line went missing) and tuning on it teaches a hand of half
    the steps."""
    off = normalize_line(strokes, norm)
    lo, mid, hi = TRAIN_STEPS_PER_CHAR
    if n_chars <= 0 or len(off) < 2 or lo <= len(off) / n_chars <= hi:
        return off
    every = int(np.clip(round(norm.downsample * len(off) / n_chars / mid), 1, 8))   # steps go as 1 / n
    return off if every == norm.downsample else normalize_line(strokes, replace(norm, downsample=every))


def standardize(off: np.ndarray, mean, std) -> np.ndarray:
    """Offsets in normalised units -> the network's standardised units: (dx, dy) minus the
    training lines' mean, over their standard deviation (end_of_stroke unchanged)."""
    out = off.astype(np.float32, copy=True)
    out[:, :2] = (out[:, :2] - mean) / std
    return out


def continued(primer: np.ndarray, line: np.ndarray) -> np.ndarray:
    """``line``'s offsets joined after ``primer``'s as one line: it starts a word's gap (half the
    primer's height) right of the primer's rightmost point, its baseline (``baseline``) where the
    primer's ends, as a primed sample continues the primer's strokes with the text after them."""
    ends = np.cumsum(primer[:, :2].astype(np.float64), 0)
    own = np.cumsum(line[:, :2].astype(np.float64), 0)
    gap = 0.5 * (float(np.ptp(ends[:, 1])) or 2.0)
    x = ends[:, 0].max() + gap
    slope, intercept, _ = baseline([ends])
    line_slope, line_intercept, _ = baseline([own])
    y = slope * x + intercept + own[0, 1] - (line_slope * own[0, 0] + line_intercept)   # baselines meet
    first = line[0].copy()
    first[:2] = [x - ends[-1, 0], y - ends[-1, 1]]
    first[2] = 0.0
    head = primer.copy()
    head[-1, 2] = 1.0   # the pen leaves the paper before the jump
    return np.concatenate([head, first[None], line[1:]]).astype(np.float32)
