"""Sampling handwriting from a synthesis network (any family, through ``models.Stepper``):
options, priming, the batched step driver, and the one policy on top of it: the stop rule, the
step cap, the candidate race, plausibility and trimming.

Every line draws its random numbers from its own stream, seeded by ``(seed, line index)``, so a
line comes out the same whether it is sampled alone or in a batch with others.

The LSTM's compiled step (``models/graves/native_step.c``) runs a fused copy of ``stop_rule``;
the tests compare the two step by step.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from .alphabet import Alphabet
from .errors import HandsynthError
from .hardware import use_bf16
from .layout import CHAR_WIDTH
from .models import SynthesisModel
from .measures import cer, size_trend, stray_strokes
from .strokes import baseline, offsets_to_strokes, standardize, strokes_to_offsets

MAX_LINE_CHARS = 120      # characters per sampled line; layout wraps longer text
CANDIDATES = 2            # each line is written this many times at once; the first plausible is kept
NARROW_AT = 60            # pen steps (about 5 characters) after which a line keeps only its candidate furthest along
MAX_PASSES = 2            # passes for lines with no plausible candidate (stalled or scribbled)
MAX_STEPS_PER_CHAR = 22.0 # a line dawdling longer is scribbled (typical: 11-15; measured, see docs/measurements.md)
WORD_CUT_REACH = 2        # word_strokes: strokes a cut between two words may move to widen the gap between them
WORD_CUT_STEP = 0.05      # ... at this cost (x-heights of gap) per pen step then on another word than its own
MARK_SIZE = 0.3           # units: a stroke smaller than this both ways is a mark (a full stop, a comma, a tick)
LEVEL_MAX = 1.35          # level_sizes: the most a word is grown (or 1 / this shrunk) to the line's mean size


@dataclass(frozen=True)
class SamplingOptions:
    bias: float = 2.0             # Graves' sampling bias: higher is neater (0 = unbiased); measured, see README
    seed: int = 0
    steps_per_char: float = 24.0  # step cap: 40 + steps_per_char * len(text) (typical 11-15; over 22 is a scribble)
    finish_stroke: bool = True    # after the window passes the text, end the current stroke first
    bf16: bool | None = None      # bfloat16 matmuls; None: where the CPU has bfloat16 arithmetic (hardware.py)
    proofread: bool = False       # lines the recogniser misreads are written again once (checked_groups)


@dataclass
class Line:
    text: str
    offsets: np.ndarray        # (N, 3) in normalised units (x-height ~ 1), y up
    hit_cap: bool              # the step cap ended the line, not the stop rule
    phi: np.ndarray | None = None  # (N, U + 1) window weights over the target text, if asked
    steps: int = 0             # pen steps sampled before the run-on trim (when the line finished)


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


@dataclass
class Group:
    """One caller's lines in a batch shared with others (``sample_groups``): its texts, their line
    seeds, its options and primer, and its ``check`` (called once per pen step; raising from it
    abandons this group's lines only). Groups of one batch may differ in bias, seed and primer;
    the rest of their options must be equal."""
    texts: list[str]
    seeds: list[int]
    options: SamplingOptions = SamplingOptions()
    primer: Primer | None = None
    check: Callable[[], None] | None = None


def sample_lines(model: SynthesisModel, alphabet: Alphabet, mean, std, texts: list[str],
                 options: SamplingOptions = SamplingOptions(), primer: Primer | None = None,
                 return_phi: bool = False, line_seeds: list[int] | None = None,
                 candidates: int = 1, score=None, first_candidate: int = 0,
                 narrow_at: int | None = None, check=None) -> list[Line]:
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

    ``check``, if given, is called once per pen step and may raise to abandon the batch (the
    server's time limit and client-gone check).
    """
    seeds = list(line_seeds) if line_seeds is not None else list(range(len(texts)))
    out = sample_groups(model, alphabet, mean, std, [Group(list(texts), seeds, options, primer, check)],
                        return_phi, candidates, score, first_candidate, narrow_at)[0]
    if isinstance(out, BaseException):
        raise out
    return out


def primed_text(primer_text: str, text: str) -> str:
    """The text a primed line is conditioned on: the primer's, a space, then the new text (tuning
    with ``TuneConfig.primed`` trains on the same)."""
    return f"{primer_text} {text}"


def _check_texts(texts: list[str]) -> None:
    for t in texts:
        if not t.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(t) > MAX_LINE_CHARS:
            raise HandsynthError(f"a line of {len(t)} characters is longer than the limit of {MAX_LINE_CHARS}")


def same_primer(a: Primer | None, b: Primer | None) -> bool:
    """Whether two primers are the same style sample (the same object, or equal text and offsets)."""
    if a is None or b is None:
        return a is b
    return a is b or (a.text == b.text and np.array_equal(a.offsets, b.offsets))


def same_but_style(a: SamplingOptions, b: SamplingOptions) -> bool:
    """Whether lines with these options can share a batch: they differ in bias, seed and whether
    they are proofread (after sampling) at most."""
    return replace(a, bias=0.0, seed=0, proofread=False) == replace(b, bias=0.0, seed=0, proofread=False)


@torch.no_grad()
def sample_groups(model: SynthesisModel, alphabet: Alphabet, mean, std, groups: list[Group],
                  return_phi: bool = False, candidates: int = 1, score=None, first_candidate: int = 0,
                  narrow_at: int | None = None) -> list[list[Line] | BaseException]:
    """``sample_lines`` for several callers' lines in one batch (the server's requests): per
    group, its lines, or the exception that ended it (a bad text, or one its ``check`` raised;
    the other groups go on). A line comes out the same as when its group is sampled alone: rows
    draw their own random numbers and the policy (candidates, narrowing) works per text."""
    results: list = [None] * len(groups)
    live = []
    for g, grp in enumerate(groups):
        try:
            _check_texts(grp.texts)
            if len(grp.seeds) != len(grp.texts):
                raise ValueError("one seed per text")
            if not same_but_style(grp.options, groups[0].options):
                raise ValueError("the groups of one batch may differ only in bias, seed and primer")
        except (HandsynthError, ValueError) as e:
            results[g] = e
            continue
        if grp.texts:
            live.append(g)
        else:
            results[g] = []
    if not live:
        return results
    styles = [groups[g].primer for g in live]
    if not getattr(model, "mixes_styles", False) and any(not same_primer(p, styles[0]) for p in styles):
        for g in live:   # a family that writes one style per batch: each style's groups apart
            if results[g] is None:
                mine = [h for h in live if same_primer(groups[h].primer, groups[g].primer)]
                for h, r in zip(mine, sample_groups(model, alphabet, mean, std, [groups[h] for h in mine],
                                                    return_phi, candidates, score, first_candidate, narrow_at)):
                    results[h] = r
        return results
    model.eval()
    options = replace(groups[live[0]].options, bf16=use_bf16(groups[live[0]].options.bf16))   # the dtype chosen
    group_of = np.array([g for g in live for _ in groups[g].texts], np.int64)   # each text's group
    texts1 = [t for g in live for t in groups[g].texts]
    n_texts, C = len(texts1), max(1, int(candidates))
    texts = [t for _ in range(C) for t in texts1]  # row r writes text r % n_texts
    base = [s for g in live for s in groups[g].seeds]
    seeds = [s + (first_candidate + a) * RESAMPLE_SEED_STEP for a in range(C) for s in base]
    B = len(texts)
    heads = {g: primed_text(groups[g].primer.text, "") if groups[g].primer is not None else "" for g in live}
    full = [heads[group_of[r % n_texts]] + t for r, t in enumerate(texts)]
    prefix = np.array([len(heads[group_of[r % n_texts]]) for r in range(B)], np.int64)
    U = max(len(f) for f in full)
    codes = np.zeros((B, U), np.int64)
    for b, f in enumerate(full):
        codes[b, :len(f)] = alphabet.encode(f)
    ends = np.array([len(f) for f in full], np.int64)
    caps = np.array([int(40 + options.steps_per_char * len(t)) for t in texts], np.int64)
    cap = int(caps.max())
    noise = torch.stack([_noise(groups[group_of[r % n_texts]].options.seed, s, cap)
                         for r, s in enumerate(seeds)]).numpy()  # (B, cap, 6)
    bias = np.array([groups[group_of[r % n_texts]].options.bias for r in range(B)], np.float32)
    tb = Tables(code=codes, n_texts=n_texts, ends=ends, caps=caps, noise=noise, bias=bias, prefix=prefix,
                options=options, out_steps=np.zeros((B, cap, 3), np.float32),
                phi_all=np.zeros((B, cap, U + 1), np.float32),  # the alignment, for trimming and for callers
                passed=np.zeros(B, bool), zero=((0.0 - np.asarray(mean)) / np.asarray(std)).astype(np.float32))
    primed, seen = {}, []   # one standardised array per style: rows of one style share it (primed once)
    for g in live:
        p = groups[g].primer
        same = next((h for h in seen if same_primer(groups[h].primer, p)), None)
        if same is not None:
            primed[g] = primed[same]
        else:
            primed[g] = standardize(p.offsets, mean, std) if p is not None and len(p.offsets) else None
            seen.append(g)
    step = model.start(tb, [primed[g] for g in group_of])
    out_steps, phi_all, passed = tb.out_steps, tb.phi_all, tb.passed

    def finish(r: int, n: int) -> Line:
        off = out_steps[r, :n].copy()
        off[:, :2] = off[:, :2] * std + mean
        off[-1, 2] = 1.0
        ph = phi_all[r, :n, int(prefix[r]):int(ends[r]) + 1]
        off = level_sizes(Line(texts[r], off, False, ph))   # what the trim judges is what the page shows
        n = _trim_run_on(off, ph, texts[r])
        return Line(texts[r], off[:n], hit_cap=not bool(passed[r]), phi=ph[:n] if return_phi or score else None,
                    steps=int(len(off)))

    result: list[Line | None] = [None] * n_texts
    tried: list[list] = [[] for _ in range(n_texts)]  # (score, candidate, line) of finished candidates
    failed = np.zeros(len(groups), bool)
    checks = [(g, groups[g].check) for g in live if groups[g].check is not None]
    for t in range(cap):
        quit_now = None
        for g, check in checks:
            if not failed[g]:
                try:
                    check()
                except BaseException as e:   # (a time limit, a client gone, Ctrl-C): this group only
                    results[g], failed[g] = e, True
                    quit_now = failed[group_of[step.rows % n_texts]]
        if quit_now is not None:
            if quit_now.all():
                break
            step.select(~quit_now)
        step(t)
        rows = step.rows
        stop = step.stop if step.stop is not None else stop_rule(tb, rows, t, step.progress)
        drop = _behind(rows % n_texts, step.progress, ~stop) if C > 1 and t + 1 == narrow_at else None
        if stop.any() or drop is not None:
            stop = stop.copy()
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
        if failed[group_of[k]]:
            continue
        if result[k] is None:
            result[k] = min(tried[k], key=lambda c: (c[0], c[1]))[2]
        if not return_phi:
            result[k].phi = None
    for g in live:
        if not failed[g]:
            results[g] = [result[k] for k in np.flatnonzero(group_of == g)]
    return results


@dataclass
class Tables:
    """A batch's per-row data, indexed by the row's place in the batch as first built (rows
    that finish leave the step but keep their place here). Row r writes text r % n_texts."""
    code: np.ndarray        # (R, U) int64 character codes of prefix + text, 0 = padding
    n_texts: int            # distinct texts (rows beyond are further candidates of the same texts)
    ends: np.ndarray        # (R,) int64 position after the last character
    caps: np.ndarray        # (R,) int64 step caps
    noise: np.ndarray       # (R, cap, 6) float32 random numbers (see _noise)
    bias: np.ndarray        # (R,) float32
    prefix: np.ndarray      # (R,) int64 characters of the row's primer text (and a space) before its own
    options: SamplingOptions
    out_steps: np.ndarray   # (R, cap, 3) float32 the pen offsets drawn (standardised)
    phi_all: np.ndarray     # (R, cap, U + 1) float32 the alignment over the text (+ "after the end")
    passed: np.ndarray      # (R,) bool: the row has written its last character
    zero: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))   # (2,) the standardised move that is no move


def stop_rule(tb: Tables, rows: np.ndarray, t: int, progress: np.ndarray) -> np.ndarray:
    """Which live rows stop after pen step ``t``: a row past its text stops when the pen lifts
    (with ``finish_stroke``; at once without), and any row stops at its step cap or at a running
    cap on its progress: a line that has spent more than ``steps_per_char`` per character
    written so far is scribbling in place and stops now (flagged as capped) instead of at the end
    of its budget. The compiled LSTM step (``hs_sample`` in native_step.c) runs a fused copy."""
    o = tb.options
    stop = tb.passed[rows] & ((tb.out_steps[rows, t, 2] > 0.5) | (not o.finish_stroke))
    return stop | ((t + 1) >= tb.caps[rows]) | ((t + 1) >= 40 + o.steps_per_char * (progress + 1))


def sample_checked(model, alphabet: Alphabet, mean, std, texts: list[str], seeds: list[int],
                   options: SamplingOptions, primer: Primer | None, check=None, read=None) -> list[Line]:
    """The policy's lines, as ``write`` samples them: each line is started by CANDIDATES
    candidates at once; after NARROW_AT pen steps only the one whose window is furthest along
    goes on, and the first to finish plausibly (no stall, no scribble, no far too wide word) is kept; lines with no
    plausible candidate get one more pass with new seeds. Bounded: at most MAX_PASSES
    passes, and the least bad candidate is kept."""
    out = checked_groups(model, alphabet, mean, std, [Group(list(texts), list(seeds), options, primer, check)],
                         read)[0]
    if isinstance(out, BaseException):
        raise out
    return out


def checked_groups(model, alphabet: Alphabet, mean, std, groups: list[Group],
                   read=None) -> list[list[Line] | BaseException]:
    """``sample_checked`` for several callers' lines in one batch (``sample_groups``), the
    further pass too: per group, its lines or the exception that ended it. ``read``: a reader
    (offsets list -> texts, ``recognizer.reader``) for the groups whose options ask to
    ``proofread`` (``proofread``)."""
    out = sample_groups(model, alphabet, mean, std, groups, True, candidates=CANDIDATES, score=badness,
                        narrow_at=NARROW_AT)
    for p in range(1, MAX_PASSES):
        bad = {g: [k for k, line in enumerate(lines) if not plausible(line)]
               for g, lines in enumerate(out) if not isinstance(lines, BaseException)}
        bad = {g: ks for g, ks in bad.items() if ks}
        if not bad:
            break
        order, redo = _again(model, alphabet, mean, std, groups, bad, p * CANDIDATES)
        for g, lines in zip(order, redo):
            if isinstance(lines, BaseException):
                out[g] = lines
                continue
            for k, line in zip(bad[g], lines):
                if plausible(line) or badness(line) < badness(out[g][k]):
                    out[g][k] = line
    if read is not None and any(groups[g].options.proofread for g in range(len(groups))):
        proofread(model, alphabet, mean, std, groups, out, read)
    return out


def _again(model, alphabet: Alphabet, mean, std, groups: list[Group], bad: dict, first: int) -> tuple[list, list]:
    """Lines written once more in one batch: ``bad`` maps a group to its lines' places; candidate
    seeds from ``first`` on. Returns (the groups in order, their new lines or exceptions)."""
    order = list(bad)
    redo = sample_groups(model, alphabet, mean, std,
                         [replace(groups[g], texts=[groups[g].texts[k] for k in bad[g]],
                                  seeds=[groups[g].seeds[k] for k in bad[g]]) for g in order],
                         True, candidates=CANDIDATES, score=badness, first_candidate=first, narrow_at=NARROW_AT)
    return order, redo


PROOF_CER = 0.1   # proofread: a line read with more errors than this share of its characters is written again
PROOF_ROUNDS = 1  # ... in at most this many rounds, each for the lines the last one left misread (a second
                  # round: Tesseract CER on the hard set 21.9 -> 21.8%, held-out unchanged, 1.26x the hard
                  # set's sampling time; python scripts/proofread_gain.py --rounds 1,2)


def proofread(model, alphabet: Alphabet, mean, std, groups: list[Group], out: list, read) -> None:
    """The proofreading pass, in place on ``checked_groups``' result: the recogniser (``read``)
    reads every line of the groups that ask for it (``SamplingOptions.proofread``), and each line
    it reads with more than ``PROOF_CER`` errors is written once more (``CANDIDATES`` new
    candidates, seeds apart from every earlier pass); the new line is kept when it is read with
    fewer errors and is plausible (or the old one was not). Lines still misread go round again,
    up to ``PROOF_ROUNDS`` rounds. Bounded: one batch a round, only the misread
    lines. A judge that also chooses is no longer independent: report legibility by another
    reader (Tesseract) when it is on."""
    asked = [g for g, lines in enumerate(out) if not isinstance(lines, BaseException) and groups[g].options.proofread]
    if not asked:
        return
    readings = read([line.offsets for g in asked for line in out[g]])
    errors, at = {}, 0
    for g in asked:
        errors[g] = [cer([r], [line.text]) for line, r in zip(out[g], readings[at:at + len(out[g])])]
        at += len(out[g])
    chars = getattr(read, "chars", None)
    for r in range(PROOF_ROUNDS):
        bad = {g: [k for k, e in enumerate(errors[g]) if e > PROOF_CER
                   and (chars is None or set(out[g][k].text) <= chars)] for g in errors}
        bad = {g: ks for g, ks in bad.items() if ks}
        if not bad:
            return
        order, redo = _again(model, alphabet, mean, std, groups, bad, (MAX_PASSES + r) * CANDIDATES)
        fresh = [(g, k, line) for g, lines in zip(order, redo) if not isinstance(lines, BaseException)
                 for k, line in zip(bad[g], lines)]
        for g, lines in zip(order, redo):
            if isinstance(lines, BaseException):
                out[g] = lines
                del errors[g]
        again = read([line.offsets for _, _, line in fresh]) if fresh else []
        for (g, k, line), text in zip(fresh, again):
            old, e = out[g][k], cer([text], [line.text])
            if e < errors[g][k] and (plausible(line) or not plausible(old)):
                out[g][k], errors[g][k] = line, e


def line_width(line: Line) -> float:
    x = np.cumsum(line.offsets[:, 0])
    return float(x.max() - x.min()) if len(x) else 0.0


def char_words(text: str) -> np.ndarray:
    """For each character of ``text``, its word's place among ``text.split(" ")``; -1 for a space."""
    owner = np.full(len(text), -1, np.int64)
    start = 0
    for k, word in enumerate(text.split(" ")):
        owner[start:start + len(word)] = k
        start += len(word) + 1
    return owner


def text_focus(line: Line) -> np.ndarray:
    """For each pen step, the character of ``line.text`` the alignment's argmax sits on."""
    return line.phi[:, :len(line.text)].argmax(1)


def step_words(line: Line) -> np.ndarray:
    """For each pen step, the word the alignment's argmax sits on (its place among
    ``line.text.split(" ")``), or -1 on a space (``line.phi`` needed)."""
    return char_words(line.text)[text_focus(line)]


def word_widths(line: Line) -> list[tuple[str, float]]:
    """Each word of the line with the written width (x-heights) of the pen steps the attention
    window spent on it (``line.phi`` needed)."""
    if line.phi is None or not len(line.offsets):
        return []
    x = np.cumsum(line.offsets[:, 0])
    owner = step_words(line)
    out = []
    for k, word in enumerate(line.text.split(" ")):
        span = np.flatnonzero(owner == k)
        out.append((word, float(np.ptp(x[span])) if len(span) else 0.0))
    return out


def word_strokes(line: Line) -> list[tuple[str, int, int]]:
    """Each word of the line with the strokes that write it: ``(word, first, stop)``, a range of
    the line's strokes (``strokes.offsets_to_strokes`` order; ``line.phi`` needed).

    A stroke belongs to the word most of its pen steps are on (``step_words``). A stroke written
    while the window sat on a space (the end of a word, a late i-dot or t-bar) goes with the
    word beside that space nearer to it on the page (the one before on a tie). The words keep
    their order, so the ranges follow one another and cover every stroke: a stroke out of order
    goes with its neighbours. The window runs a little ahead of the pen, so each cut between two
    words then moves (by up to ``WORD_CUT_REACH`` strokes) to where the two stand furthest apart
    on the page. A word no stroke writes has an empty range where it would be."""
    words = line.text.split(" ")
    if line.phi is None or not len(line.offsets):
        return []
    n = len(line.offsets)
    cuts = np.unique(np.r_[0, np.flatnonzero(line.offsets[:, 2] > 0.5) + 1, n])
    stroke_of_step = np.repeat(np.arange(len(cuts) - 1), np.diff(cuts))
    chars, focus = char_words(line.text), text_focus(line)
    owner = step_words(line)
    on = owner >= 0
    votes = np.zeros((len(cuts) - 1, len(words)))
    np.add.at(votes, (stroke_of_step[on], owner[on]), 1.0)
    x = np.cumsum(line.offsets[:, 0])
    extent = [(x[owner == k].min(), x[owner == k].max()) if (owner == k).any() else None for k in range(len(words))]
    for k in np.flatnonzero(votes.sum(1) == 0):   # all on spaces: the nearer word beside the space
        steps = slice(cuts[k], cuts[k + 1])
        space = int(np.bincount(focus[steps]).argmax())
        centre = float(x[steps].mean())
        near = [(abs(centre - np.clip(centre, *extent[w])), i, w) for i, w in enumerate(
            (chars[space - 1] if space > 0 else -1, chars[space + 1] if space + 1 < len(chars) else -1))
            if w >= 0 and extent[w] is not None]
        if near:
            votes[k, min(near)[2]] = 0.01   # a preference only: never outweighs a pen step on a letter
    # the ordered assignment with the most pen steps on their own word (dynamic programming)
    best = np.zeros_like(votes)
    best[0] = votes[0]
    for k in range(1, len(votes)):
        best[k] = votes[k] + np.maximum.accumulate(best[k - 1])
    assign = np.zeros(len(votes), np.int64)
    w = len(words) - 1
    for k in range(len(votes) - 1, -1, -1):
        w = int(np.argmax(best[k, :w + 1]))   # the earliest of equals
        assign[k] = w
    first = np.searchsorted(assign, np.arange(len(words)), side="left")
    stop = np.searchsorted(assign, np.arange(len(words)), side="right")
    # The window runs a little ahead of the pen: a word's last stroke (a k's kick, the end of a u)
    # can sit on the space or the next word's first letter. Each cut between two written words
    # moves by up to WORD_CUT_REACH strokes to where the words stand furthest apart on the page,
    # less WORD_CUT_STEP for every pen step then counted on another word than its own.
    lo_x = np.minimum.reduceat(x, cuts[:-1])
    hi_x = np.maximum.reduceat(x, cuts[:-1])
    for w in range(1, len(words)):
        a, b, c = first[w - 1], first[w], stop[w]
        if a == b or b == c:
            continue
        scores = {}
        for cut in range(max(a + 1, b - WORD_CUT_REACH), min(c - 1, b + WORD_CUT_REACH) + 1):
            moved = slice(min(cut, b), max(cut, b))   # strokes that change word
            lost = (votes[moved, w - 1] - votes[moved, w]).sum() * (1 if cut < b else -1)
            gap = float(lo_x[cut:c].min() - hi_x[a:cut].max())
            scores[cut] = (gap - WORD_CUT_STEP * float(lost), -abs(cut - b))
        first[w] = stop[w - 1] = max(scores, key=scores.get)
    return [(word, int(a), int(b)) for word, a, b in zip(words, first, stop)]


def level_sizes(line: Line) -> np.ndarray:
    """The line's offsets with its words brought to one size. The network's writing shrinks along
    a line: the body height of a line's last third was 0.76 of its first in the model's own hand
    (0.84 over the 24 styles), where real held-out lines of the same texts keep 0.87-0.95
    (``measures.size_ratio_last_first``). The trend is fitted over the whole line
    (``measures.size_trend``), and each word (``word_strokes``) is scaled about the left end of
    its baseline to the line's mean size at the word's middle, at most ``LEVEL_MAX`` either way;
    the words after it move along by the difference in width, so the gaps between words stay as
    written. Letters within a word keep their sizes. The pen steps and their order are kept
    (``line.phi`` still fits them); a line without a fitted trend or word spans comes back as it
    is."""
    off = line.offsets
    trend = size_trend(off) if len(off) else None
    spans = [(a, b) for _, a, b in word_strokes(line) if b > a] if trend is not None else []
    if len(spans) < 2:
        return off
    b, x0 = trend
    strokes = offsets_to_strokes(off)
    if sum(len(s) for s in strokes) != len(off):   # (offsets_to_strokes keeps every step)
        return off
    slope, intercept, _ = baseline(strokes)
    along = np.array([1.0, slope], np.float64) / np.hypot(1.0, slope)
    out = [np.asarray(s, np.float64) for s in strokes]
    shift = 0.0
    for a, c in spans:
        pts = np.concatenate(out[a:c])
        left, right = float(pts[:, 0].min()), float(pts[:, 0].max())
        f = float(np.clip(np.exp(-b * ((left + right) / 2 - x0)), 1 / LEVEL_MAX, LEVEL_MAX))
        anchor = np.array([left, slope * left + intercept])
        move = along * shift * np.hypot(1.0, slope)   # x moves by shift, along the baseline
        for k in range(a, c):
            out[k] = anchor + f * (out[k] - anchor) + move
        shift += (f - 1.0) * (right - left)
    new = strokes_to_offsets(out)
    new[:, 2] = off[:, 2]
    return new


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


def _behind(text_of_row: np.ndarray, progress: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The live rows to drop so that each text keeps one live row: the one whose window is
    furthest along (the first on a tie; rows are in candidate order)."""
    lead: dict[int, int] = {}
    for j in np.flatnonzero(live):
        k = int(text_of_row[j])
        if k not in lead or progress[j] > progress[lead[k]]:
            lead[k] = j
    return live & (np.array([lead.get(int(k), -1) for k in text_of_row]) != np.arange(len(live)))


def _trim_run_on(offsets: np.ndarray, phi: np.ndarray, text: str) -> int:
    """Steps to keep: stray marks after the text are dropped. First a last stroke written while
    the window already sat past a final mark (not a letter or digit: the window runs ahead of
    the pen, and a final t's stem or cross is written while it already sits past the end) that
    follows a mark (a stroke smaller than ``MARK_SIZE``; after a letter it is the mark), or
    one that the window passes the end during, after the final character was written as a
    stroke of its own right of the rest, itself drawn right of everything (e.g. a tick after a
    full stop); then, from the first stroke the eval counts as a stray
    (``measures.stray_strokes``: a second "!", a repeated final letter standing right, tall
    writing over the end), that stroke and all after it."""
    n = _trim_last(offsets, phi, text)
    strays = stray_strokes(offsets[:n], phi[:n], text)
    if strays.any():
        k = int(np.argmax(strays))
        ends = np.flatnonzero(offsets[:n, 2] > 0.5)
        if k > 0:
            n = int(ends[k - 1]) + 1
    return n


def _trim_last(offsets: np.ndarray, phi: np.ndarray, text: str) -> int:
    stroke_ends = np.flatnonzero(offsets[:, 2] > 0.5)
    if len(stroke_ends) < 2:
        return len(offsets)
    start = stroke_ends[-2] + 1
    end_pos = phi.shape[1] - 1
    focus = phi.argmax(1)
    after = focus[start:] == end_pos
    prev_start = stroke_ends[-3] + 1 if len(stroke_ends) >= 3 else 0
    # A final letter's own stroke stays (the window runs ahead of the pen), and so does a final
    # mark written after a letter: only a stroke after a mark (a small stroke) goes, such as a
    # second full stop or a bar after one. The window is no guide here: it sat on the full stop
    # of "thing." all through the g.
    x = np.cumsum(offsets[:, 0])
    y = np.cumsum(offsets[:, 1])
    after_mark = max(np.ptp(x[prev_start:start]), np.ptp(y[prev_start:start])) < MARK_SIZE
    if after.mean() > 0.9 and not (bool(text) and text[-1].isalnum()) and after_mark:
        return start
    # the previous stroke is the final character on its own (all of it on that character, and
    # right of everything before it, so not an i's dot or a t's cross)
    last_char_done = (bool((focus[prev_start:start] >= end_pos - 1).all()) and prev_start > 0
                      and x[prev_start:start].min() > x[:prev_start].max() + 0.1)
    right_of_all = x[start:].min() > x[:start].max() + 0.2
    final_letter = bool(text) and text[-1].isalnum()
    if last_char_done and right_of_all and after.mean() > 0.3 and (final_letter or after_mark):
        return start
    return len(offsets)
