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
from .model import Synthesizer, sample_mixture

MAX_TEXT_CHARS = 120  # per line; layout wraps longer text


@dataclass(frozen=True)
class SamplingOptions:
    bias: float = 2.0             # Graves' sampling bias: higher is neater (0 = unbiased); measured, see README
    seed: int = 0
    steps_per_char: float = 35.0  # step cap: 40 + steps_per_char * len(text) (average is ~11)
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


@torch.no_grad()
def sample_lines(model: Synthesizer, alphabet: Alphabet, mean, std, texts: list[str],
                 options: SamplingOptions = SamplingOptions(), primer: Primer | None = None,
                 return_phi: bool = False, line_seeds: list[int] | None = None) -> list[Line]:
    """Sample one line of handwriting per text, all in one batch.

    With a ``primer``, its strokes are fed through the network with the text
    ``primer.text + " " + text`` and sampling continues from there; only the new part is
    returned. A line stops when the window has passed its last character (Graves' rule, then the
    current stroke is finished), or at the step cap.
    """
    if not texts:
        return []
    for t in texts:
        if not t.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(t) > MAX_TEXT_CHARS:
            raise HandsynthError(f"a line of {len(t)} characters is longer than the limit of {MAX_TEXT_CHARS}")
    model.eval()
    B = len(texts)
    prefix = (primer.text + " ") if primer is not None else ""
    full = [prefix + t for t in texts]
    U = max(len(f) for f in full)
    codes = np.zeros((B, U), np.int64)
    for b, f in enumerate(full):
        codes[b, :len(f)] = alphabet.encode(f)
    text = torch.from_numpy(codes)
    onehot = model.onehot(text)
    ends = np.array([len(f) for f in full])
    caps = np.array([int(40 + options.steps_per_char * len(t)) for t in texts])
    cap = int(caps.max())
    seeds = line_seeds if line_seeds is not None else list(range(B))
    noise = torch.stack([_noise(options.seed, s, cap) for s in seeds]).numpy()  # (B, cap, 6)

    weights = model.step_weights(torch.bfloat16 if options.bf16 else torch.float32)
    state = model.initial_state(B)
    x = torch.zeros(B, 3)
    x[:, 2] = 1.0  # the start token
    if primer is not None and len(primer.offsets):
        p = torch.from_numpy(standardize(primer.offsets, mean, std))
        inputs = torch.cat([x[:1], p[:-1]]).expand(B, len(p), 3)  # start token, then the primer
        state = model.prime(inputs, onehot, weights)
        x = p[-1].expand(B, 3).clone()

    # the loop's bookkeeping is numpy: per step it is a few dozen operations on tiny arrays
    out_steps = np.zeros((B, cap, 3), np.float32)
    phi_all = np.zeros((B, cap, U + 1), np.float32)  # the window's weights, for trimming and for callers
    lengths = np.full(B, cap)
    passed = np.zeros(B, bool)
    bias = np.full(B, float(options.bias), np.float32)
    outside = np.where(codes > 0, 0.0, -np.inf).astype(np.float32)  # padding never counts as 'inside'
    rows = np.arange(B)  # the lines still being written; finished ones leave the batch
    for t in range(cap):
        out, state, phi = model.step(x, state, onehot, None, weights)
        ph = phi.numpy()
        xs = sample_mixture(out.numpy(), bias[rows], noise[rows, t])
        out_steps[rows, t] = xs
        phi_all[rows, t] = ph
        # Graves' stop rule: phi after the last character outweighs every character's phi
        last = ph[np.arange(len(rows)), ends[rows]]
        inside = (ph[:, :U] + outside[rows]).max(1)
        passed[rows] |= last > inside
        stop = passed[rows] & ((xs[:, 2] > 0.5) | (not options.finish_stroke))
        stop |= (t + 1) >= caps[rows]
        if stop.any():
            lengths[rows[stop]] = t + 1
            keep = ~stop
            if not keep.any():
                break
            rows, xs = rows[keep], xs[keep]
            keep_t = torch.from_numpy(keep)
            state, onehot = state.select(keep_t), onehot[keep_t]
        x = torch.from_numpy(xs)
    lines = []
    for b in range(B):
        n = int(lengths[b])
        off = out_steps[b, :n].copy()
        off[:, :2] = off[:, :2] * std + mean
        off[-1, 2] = 1.0
        ph = phi_all[b, :n, len(prefix):int(ends[b]) + 1]
        n = _trim_run_on(off, ph)
        lines.append(Line(texts[b], off[:n], hit_cap=not bool(passed[b]), phi=ph[:n] if return_phi else None))
    return lines


def _trim_run_on(offsets: np.ndarray, phi: np.ndarray) -> int:
    """Steps to keep: a last stroke written while the window already sat past the final
    character (a stray mark after the text) is dropped."""
    stroke_ends = np.flatnonzero(offsets[:, 2] > 0.5)
    if len(stroke_ends) < 2:
        return len(offsets)
    start = stroke_ends[-2] + 1
    after = phi[start:].argmax(1) == phi.shape[1] - 1
    return start if after.mean() > 0.9 else len(offsets)
