"""Sampling handwriting from the synthesis network: priming with a style, biased sampling,
stopping, and batches of lines.

Every line draws its random numbers from its own stream, seeded by ``(seed, line index)``, so a
line comes out the same whether it is sampled alone or in a batch with others.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .alphabet import Alphabet
from .data.corpus import standardize
from .errors import HandsynthError
from . import native
from .model import Synthesizer, sample_mixture

MAX_TEXT_CHARS = 120  # per line; layout wraps longer text


@dataclass(frozen=True)
class SamplingOptions:
    bias: float = 2.0             # Graves' sampling bias: higher is neater (0 = unbiased); measured, see README
    seed: int = 0
    steps_per_char: float = 24.0  # step cap: 40 + steps_per_char * len(text) (typical 11-15; over 22 is a scribble)
    finish_stroke: bool = True    # after the window passes the text, end the current stroke first
    bf16: bool = True             # bfloat16 matmuls (as in training); False: float32 throughout


@dataclass
class Line:
    text: str
    offsets: np.ndarray        # (N, 3) in normalised units (x-height ~ 1), y up
    hit_cap: bool              # the step cap ended the line, not the stop rule
    phi: np.ndarray | None = None  # (N, U + 1) window weights over the target text, if asked


@dataclass
class Primer:
    """A style's priming sample: normalised offsets and the text they say."""
    offsets: np.ndarray
    text: str


def _noise(seed: int, line: int, steps: int, block: int = 256) -> torch.Tensor:
    """A line's random numbers, (steps, 6): four uniforms and two standard normals per step. Drawn
    in fixed blocks, so the first k steps are the same whatever the step cap."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + line)
    u = torch.cat([torch.rand(block, 6, generator=g) for _ in range(-(-steps // block))])[:steps]
    r = torch.sqrt(-2 * torch.log(u[:, 4].clamp(min=1e-12)))  # Box-Muller
    return torch.cat([u[:, :4], (r * torch.cos(2 * torch.pi * u[:, 5]))[:, None],
                      (r * torch.sin(2 * torch.pi * u[:, 5]))[:, None]], 1)


RESAMPLE_SEED_STEP = 100_003  # candidate a of a line uses the line's seed + a * RESAMPLE_SEED_STEP


@torch.no_grad()
def sample_lines(model: Synthesizer, alphabet: Alphabet, mean, std, texts: list[str],
                 options: SamplingOptions = SamplingOptions(), primer: Primer | None = None,
                 return_phi: bool = False, line_seeds: list[int] | None = None,
                 candidates: int = 1, score=None, first_candidate: int = 0,
                 narrow_at: int | None = None) -> list[Line]:
    """Sample one line of handwriting per text, all in one batch.

    With a ``primer``, its strokes are fed through the network with the text
    ``primer.text + " " + text`` and sampling continues from there; only the new part is
    returned. A line stops when the window has passed its last character (Graves' rule, then the
    current stroke is finished), or at the step cap (``hit_cap``), which also applies to the
    characters written so far: a line that stalls stops early.

    ``candidates`` > 1 writes each text that many times at once (candidate ``a`` seeded with the
    line's seed + ``(first_candidate + a) * RESAMPLE_SEED_STEP``); ``score(line)`` rates a
    finished candidate (0 = fine). The first candidate to finish with score 0 is the line, and
    the text's other candidates stop there; if none scores 0, the lowest score wins. With
    ``narrow_at``, each text keeps only one candidate from that pen step on: the one whose window
    is furthest along (the first on a tie). The race then costs extra rows for its first steps
    only, and still drops a candidate that is slow or stalls from the start.
    """
    if not texts:
        return []
    for t in texts:
        if not t.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(t) > MAX_TEXT_CHARS:
            raise HandsynthError(f"a line of {len(t)} characters is longer than the limit of {MAX_TEXT_CHARS}")
    model.eval()
    n_texts, C = len(texts), max(1, int(candidates))
    base_seeds = line_seeds if line_seeds is not None else list(range(n_texts))
    texts = [t for _ in range(C) for t in texts]  # row r writes text r % n_texts
    seeds = [s + (first_candidate + a) * RESAMPLE_SEED_STEP for a in range(C) for s in base_seeds]
    B = len(texts)
    prefix = (primer.text + " ") if primer is not None else ""
    full = [prefix + t for t in texts]
    U = max(len(f) for f in full)
    codes = np.zeros((B, U), np.int64)
    for b, f in enumerate(full):
        codes[b, :len(f)] = alphabet.encode(f)
    text = torch.from_numpy(codes)
    onehot = model.onehot(text)
    ends = np.array([len(f) for f in full], np.int64)
    caps = np.array([int(40 + options.steps_per_char * len(t)) for t in texts], np.int64)
    cap = int(caps.max())
    noise = torch.stack([_noise(options.seed, s, cap) for s in seeds]).numpy()  # (B, cap, 6)

    dtype = torch.bfloat16 if options.bf16 else torch.float32
    weights = model.step_weights(dtype)
    state = model.initial_state(B)
    x = torch.zeros(B, 3)
    x[:, 2] = 1.0  # the start token
    if primer is not None and len(primer.offsets):
        p = torch.from_numpy(standardize(primer.offsets, mean, std))
        inputs = torch.cat([x[:1], p[:-1]]).expand(n_texts, len(p), 3)  # start token, then the primer
        # a text's candidates share its priming: each text is primed once
        state = model.prime(inputs, onehot[:n_texts], weights).select(torch.arange(B) % n_texts)
        x = p[-1].expand(B, 3).clone()

    tb = _Tables(code=codes, ends=ends, caps=caps, noise=noise,
                 bias=np.full(B, float(options.bias), np.float32), prefix=len(prefix), options=options,
                 out_steps=np.zeros((B, cap, 3), np.float32),
                 phi_all=np.zeros((B, cap, U + 1), np.float32),  # the window's weights, for trimming and for callers
                 passed=np.zeros(B, bool))
    lib = native.library() if native.supports(model.config, dtype, U + 1) else None
    step = native.NativeStep(lib, model, weights, state, x, tb) if lib is not None else \
        _TorchStep(model, weights, state, onehot, x, tb)
    out_steps, phi_all, passed = tb.out_steps, tb.phi_all, tb.passed
    check = getattr(model, "step_check", None)   # e.g. the server's time limit, once per pen step

    def finish(r: int, n: int) -> Line:
        off = out_steps[r, :n].copy()
        off[:, :2] = off[:, :2] * std + mean
        off[-1, 2] = 1.0
        ph = phi_all[r, :n, len(prefix):int(ends[r]) + 1]
        n = _trim_run_on(off, ph)
        return Line(texts[r], off[:n], hit_cap=not bool(passed[r]), phi=ph[:n] if return_phi or score else None)

    result: list[Line | None] = [None] * n_texts
    tried: list[list] = [[] for _ in range(n_texts)]  # (score, candidate, line) of finished candidates
    for t in range(cap):
        if check is not None:
            check()
        n_stop = step(t)
        rows = step.rows
        drop = _behind(rows % n_texts, step.progress, ~step.stop) if C > 1 and t + 1 == narrow_at else None
        if n_stop or drop is not None:
            stop = step.stop.copy()
            for r in rows[stop]:
                k = r % n_texts
                line = finish(r, t + 1)
                if C == 1:
                    result[k] = line
                    continue
                sc = score(line) if score else 0.0
                tried[k].append((sc, r // n_texts, line))
                if sc == 0.0 and result[k] is None:  # accepted: the text's other candidates stop here
                    result[k] = line
            keep = np.array([result[r % n_texts] is None for r in rows]) & ~stop
            if drop is not None:
                keep &= ~drop
            if not keep.any():
                break
            step.select(keep)
    for k in range(n_texts):
        if result[k] is None:
            result[k] = min(tried[k], key=lambda c: (c[0], c[1]))[2]
        if not return_phi:
            result[k].phi = None
    return result


@dataclass
class _Tables:
    """A batch's per-row data, indexed by the row's place in the batch as first built (rows
    that finish leave the step but keep their place here)."""
    code: np.ndarray        # (R, U) int64 character codes of prefix + text, 0 = padding
    ends: np.ndarray        # (R,) int64 position after the last character
    caps: np.ndarray        # (R,) int64 step caps
    noise: np.ndarray       # (R, cap, 6) float32 random numbers (see _noise)
    bias: np.ndarray        # (R,) float32
    prefix: int             # characters of the primer's text before each row's own
    options: SamplingOptions
    out_steps: np.ndarray   # (R, cap, 3) float32 the pen offsets drawn (standardised)
    phi_all: np.ndarray     # (R, cap, U + 1) float32 the window's weights
    passed: np.ndarray      # (R,) bool: the window has passed the row's last character


class _TorchStep:
    """One pen step for the rows still being written, in PyTorch and numpy: the network's step,
    the mixture draw, recording, and the stop rule. (``native.NativeStep`` does the same with
    the work between the matmuls compiled.) Calling it with the pen step t returns how many rows
    stop; ``stop`` and ``progress`` (the character the window is on, past the prefix) are per
    row, ``rows`` the rows' places in the tables, and ``select(keep)`` drops rows."""

    def __init__(self, model, weights, state, onehot, x, tables: _Tables):
        self.model, self.weights, self.state, self.onehot, self.x, self.tb = model, weights, state, onehot, x, tables
        self.rows = np.arange(x.shape[0])
        self.outside = np.where(tables.code > 0, 0.0, -np.inf).astype(np.float32)  # padding never counts as 'inside'

    def __call__(self, t: int) -> int:
        tb, rows, U = self.tb, self.rows, self.tb.code.shape[1]
        out, self.state, phi = self.model.step(self.x, self.state, self.onehot, None, self.weights)
        ph = phi.numpy()
        xs = sample_mixture(out.numpy(), tb.bias[rows], tb.noise[rows, t])
        tb.out_steps[rows, t] = xs
        tb.phi_all[rows, t] = ph
        # Graves' stop rule: phi after the last character outweighs every character's phi
        last = ph[np.arange(len(rows)), tb.ends[rows]]
        inside = (ph[:, :U] + self.outside[rows]).max(1)
        tb.passed[rows] |= last > inside
        stop = tb.passed[rows] & ((xs[:, 2] > 0.5) | (not tb.options.finish_stroke))
        # the step cap, and a running cap on the window's progress: a line that has spent more
        # than steps_per_char per character written so far is scribbling in place; it stops now
        # (flagged as capped) instead of at the end of its budget
        self.progress = np.maximum(ph[:, :U].argmax(1) - tb.prefix, 0)
        stop |= ((t + 1) >= tb.caps[rows]) | ((t + 1) >= 40 + tb.options.steps_per_char * (self.progress + 1))
        self.stop = stop
        self.x = torch.from_numpy(xs)
        return int(stop.sum())

    def select(self, keep: np.ndarray):
        k = torch.from_numpy(keep)
        self.rows = self.rows[keep]
        self.state, self.onehot, self.x = self.state.select(k), self.onehot[k], self.x[k]


def _behind(text_of_row: np.ndarray, progress: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The live rows to drop so that each text keeps one live row: the one whose window is
    furthest along (the first on a tie; rows are in candidate order)."""
    lead: dict[int, int] = {}
    for j in np.flatnonzero(live):
        k = int(text_of_row[j])
        if k not in lead or progress[j] > progress[lead[k]]:
            lead[k] = j
    return live & (np.array([lead.get(int(k), -1) for k in text_of_row]) != np.arange(len(live)))


def _trim_run_on(offsets: np.ndarray, phi: np.ndarray) -> int:
    """Steps to keep: a last stroke that is a stray mark after the text is dropped. That is a
    last stroke written while the window already sat past the final character, or one that
    the window passes the end during, after the final character was written as a stroke of its
    own right of the rest, itself drawn right of everything (e.g. a tick after a full stop)."""
    stroke_ends = np.flatnonzero(offsets[:, 2] > 0.5)
    if len(stroke_ends) < 2:
        return len(offsets)
    start = stroke_ends[-2] + 1
    end_pos = phi.shape[1] - 1
    focus = phi.argmax(1)
    after = focus[start:] == end_pos
    if after.mean() > 0.9:
        return start
    prev_start = stroke_ends[-3] + 1 if len(stroke_ends) >= 3 else 0
    x = np.cumsum(offsets[:, 0])
    # the previous stroke is the final character on its own (all of it on that character, and
    # right of everything before it, so not an i's dot or a t's cross)
    last_char_done = (bool((focus[prev_start:start] >= end_pos - 1).all()) and prev_start > 0
                      and x[prev_start:start].min() > x[:prev_start].max() + 0.1)
    right_of_all = x[start:].min() > x[:start].max() + 0.2
    if last_char_done and right_of_all and after.mean() > 0.3:
        return start
    return len(offsets)
