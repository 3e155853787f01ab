"""Pen offsets <-> polar tokens (the reference design's joint token: one token per pen step).

Each offset ``(dx, dy, end_of_stroke)`` (normalised units, x-height ~ 1, y up) becomes one token
``(angle bin, radius bin, end_of_stroke)``:

- the angle ``atan2(dy, dx)`` falls in one of ``angle_bins`` equal sectors of ``[-pi, pi)`` and
  decodes to the sector's centre;
- the radius falls in one of ``radius_bins`` bins fitted to the training radii: bin 0 is
  ``[0, r_lo)`` (zero-length moves land there), then log-spaced edges from ``r_lo`` to ``r_hi``
  (fine for short moves, coarse for long ones, a constant relative width like the sectors'),
  radii past ``r_hi`` are clipped into the last bin; each bin decodes to the mean training radius
  in it. ``scripts/tokenizer_stats.py`` measures these choices against quantile edges and bin
  centres;
- ``token = (end_of_stroke * radius_bins + radius_bin) * angle_bins + angle_bin``, so the
  vocabulary is ``angle_bins * radius_bins * 2`` (16,384 by default).

``encode(..., feedback=True)`` quantises each step against where the decoded pen already is
(error feedback), so rounding errors do not add up along a line: the reconstruction of every
point stays within one step's rounding error instead of drifting.

The fitted bins are plain floats (``to_dict``/``from_dict``), so they can travel in a model file
read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

LOW_QUANTILE = 0.01   # r_lo: radii below the 1st percentile share bin 0 with zero moves


@dataclass(frozen=True)
class PolarTokenizer:
    angle_bins: int
    radius_edges: tuple   # radius_bins + 1 increasing floats: 0, r_lo, ..., r_hi
    radius_values: tuple  # radius_bins floats: what each radius bin decodes to

    # construction ----------------------------------------------------------------------------
    @classmethod
    def fit(cls, offsets_list, angle_bins: int = 128, radius_bins: int = 64, spacing: str = "log",
            value: str = "mean") -> PolarTokenizer:
        """Bins from training lines (a list of ``(N, 3)`` offsets). ``spacing``: "log" (default)
        or "quantile" (equal counts per bin); ``value``: "mean" (default: the mean training
        radius in each bin) or "centre" (the bin's midpoint)."""
        if angle_bins < 1 or radius_bins < 2:
            raise ValueError("need at least 1 angle bin and 2 radius bins")
        d = np.concatenate([np.asarray(o, np.float64).reshape(-1, 3)[:, :2] for o in offsets_list])
        r = np.hypot(d[:, 0], d[:, 1])
        if not len(r) or r.max() <= 0:
            raise ValueError("no non-zero pen moves to fit radius bins to")
        r_hi = float(r.max())
        r_lo = float(np.quantile(r[r > 0], LOW_QUANTILE))
        r_lo = min(r_lo, r_hi / 2)
        if spacing == "log":
            inner = np.geomspace(r_lo, r_hi, radius_bins)[:-1]
        elif spacing == "quantile":
            inner = np.quantile(r, np.arange(1, radius_bins) / radius_bins)
        else:
            raise ValueError(f"unknown spacing {spacing!r}")
        inner = np.maximum.accumulate(np.maximum(inner, 1e-9))   # ties (many equal radii) stay ordered
        edges = np.concatenate([[0.0], inner, [max(r_hi, inner[-1])]])
        centres = (edges[:-1] + edges[1:]) / 2
        values = centres
        if value == "mean":
            b = np.clip(np.searchsorted(inner, r, side="right"), 0, radius_bins - 1)
            count = np.bincount(b, minlength=radius_bins)
            total = np.bincount(b, weights=r, minlength=radius_bins)
            values = np.where(count > 0, total / np.maximum(count, 1), centres)
        elif value != "centre":
            raise ValueError(f"unknown value {value!r}")
        return cls(int(angle_bins), tuple(map(float, edges)), tuple(map(float, values)))

    def to_dict(self) -> dict:
        return {"kind": "polar", "angle_bins": self.angle_bins,
                "radius_edges": list(self.radius_edges), "radius_values": list(self.radius_values)}

    @classmethod
    def from_dict(cls, d: dict) -> PolarTokenizer:
        return cls(int(d["angle_bins"]), tuple(map(float, d["radius_edges"])),
                   tuple(map(float, d["radius_values"])))

    # sizes -----------------------------------------------------------------------------------
    @property
    def radius_bins(self) -> int:
        return len(self.radius_values)

    @property
    def vocab_size(self) -> int:
        return self.angle_bins * self.radius_bins * 2

    @property
    def max_radius(self) -> float:
        """Moves longer than this are clipped into the last radius bin."""
        return self.radius_edges[-1]

    @cached_property
    def _inner(self) -> np.ndarray:
        return np.asarray(self.radius_edges[1:-1], np.float64)

    @cached_property
    def _values(self) -> np.ndarray:
        return np.asarray(self.radius_values, np.float64)

    # coding ----------------------------------------------------------------------------------
    def _quantise(self, dx, dy, eos) -> np.ndarray:
        a = ((np.arctan2(dy, dx) + math.pi) // (2 * math.pi / self.angle_bins)).astype(np.int64)
        a %= self.angle_bins  # atan2 = pi lands on -pi's sector
        rb = np.minimum(np.searchsorted(self._inner, np.hypot(dx, dy), side="right"), self.radius_bins - 1)
        return (eos.astype(np.int64) * self.radius_bins + rb) * self.angle_bins + a

    def encode(self, offsets: np.ndarray, feedback: bool = False) -> np.ndarray:
        """``(N, 3)`` offsets -> ``(N,)`` int64 tokens. ``feedback``: quantise each step against
        the decoded pen position so far (no drift along the line; see the module docstring)."""
        off = np.asarray(offsets, np.float64).reshape(-1, 3)
        eos = off[:, 2] > 0.5
        if not feedback:
            return self._quantise(off[:, 0], off[:, 1], eos)
        tokens = np.empty(len(off), np.int64)
        inner, values, n_a, n_r = self.radius_edges[1:-1], self.radius_values, self.angle_bins, self.radius_bins
        width = 2 * math.pi / n_a
        cx = cy = 0.0   # true position minus decoded position
        for t, (dx, dy, end) in enumerate(zip(off[:, 0].tolist(), off[:, 1].tolist(), eos.tolist())):
            x, y = dx + cx, dy + cy
            a = int((math.atan2(y, x) + math.pi) // width) % n_a
            rb = min(bisect.bisect_right(inner, math.hypot(x, y)), n_r - 1)
            tokens[t] = (end * n_r + rb) * n_a + a
            angle, r = (a + 0.5) * width - math.pi, values[rb]
            cx, cy = x - r * math.cos(angle), y - r * math.sin(angle)
        return tokens

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """``(N,)`` tokens -> ``(N, 3)`` float32 offsets (each bin's representative move)."""
        t = np.asarray(tokens, np.int64).reshape(-1)
        if len(t) and (t.min() < 0 or t.max() >= self.vocab_size):
            raise ValueError(f"tokens outside [0, {self.vocab_size})")
        a = t % self.angle_bins
        rb = (t // self.angle_bins) % self.radius_bins
        eos = t // (self.angle_bins * self.radius_bins)
        angle = (a + 0.5) * (2 * math.pi / self.angle_bins) - math.pi
        r = self._values[rb]
        return np.stack([r * np.cos(angle), r * np.sin(angle), eos], 1).astype(np.float32)
