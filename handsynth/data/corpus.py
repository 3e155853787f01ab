"""The training corpus: IAM-OnDB lines (and captured samples) cleaned, normalised, split, cached,
and cut into length-bucketed batches."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..alphabet import Alphabet
from ..checkpoint import atomic_target
from ..errors import HandsynthError
from ..strokes import Normalization, dots_as_strokes, normalize_line, normalize_sample, standardize
from .iam import iter_iam, locate, source_signature
from .samples import Sample, load_samples
from . import unipen as _unipen
from .unipen import TEXT, WORDS, read_unipen

CACHE_VERSION = 1
SPLITS = ("train", "validation", "test")
MIN_STEPS_PER_CHAR = 2.5   # fewer: strokes missing for much of the text
MAX_STEPS_PER_CHAR = 40.0  # more: stray scribbles, or a transcription that is a fragment
MIN_CHAR_COUNT = 100   # a character found only in UNIPEN joins the alphabet with this many training occurrences


def split_of(form_id: str) -> int:
    """Deterministic, form-disjoint split: 90% train, 5% validation, 5% test by a hash of the form."""
    h = zlib.crc32(form_id.encode()) % 100
    return 2 if h < 5 else 1 if h < 10 else 0


def default_cache_dir() -> Path:
    return Path(os.environ.get("HANDSYNTH_CACHE", Path.home() / ".cache" / "handsynth"))


@dataclass
class Corpus:
    offsets: list           # normalised (not standardised) (N, 3) float32 arrays
    texts: list             # str, what each line says
    line_ids: list
    form_ids: list
    split: np.ndarray       # 0 train, 1 validation, 2 test
    norm: Normalization = Normalization()
    dropped: Counter = field(default_factory=Counter)
    raw_points: int = 0     # points of the kept lines before downsampling

    def __len__(self) -> int:
        return len(self.texts)

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == SPLITS.index(split))

    def alphabet(self, min_count: int = 1, keep: str = "") -> Alphabet:
        """The characters of the texts (those occurring at least ``min_count`` times), plus ``keep``."""
        counts = Counter("".join(self.texts))
        return Alphabet({c for c, n in counts.items() if n >= min_count} | set(keep) | {" "})

    def learnable(self, keep: str = "", min_count: int = MIN_CHAR_COUNT) -> "Corpus":
        """The lines a network can learn to write or read: a character that only UNIPEN has needs
        ``min_count`` occurrences in its train split (every other corpus's characters, and
        ``keep``, always count); lines with rarer ones are left out and counted as dropped. A
        corpus without UNIPEN is returned as it is."""
        unipen = self.unipen()
        if not unipen.any():
            return self
        keep = "".join(self.subset(~unipen).alphabet().chars) + keep
        alphabet = self.subset(unipen & (self.split == 0)).alphabet(min_count, keep)
        ok = np.array([all(c in alphabet for c in t) for t in self.texts])
        out = self.subset(ok)
        out.dropped["characters too rare to learn"] += int((~ok).sum())
        return out

    def unipen(self) -> np.ndarray:
        """(lines,) bool: which lines come from UNIPEN."""
        return np.array([f.startswith("unipen:") for f in self.form_ids], bool)

    def subset(self, keep: np.ndarray) -> "Corpus":
        """The lines where ``keep`` (a bool mask) holds."""
        idx = np.flatnonzero(keep)
        pick = lambda v: [v[i] for i in idx]  # noqa: E731
        return Corpus(pick(self.offsets), pick(self.texts), pick(self.line_ids), pick(self.form_ids),
                      self.split[idx], self.norm, Counter(self.dropped), self.raw_points)

    def offset_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of (dx, dy) over training lines (all lines if none are marked train)."""
        idx = self.indices("train")
        if len(idx) == 0:
            idx = np.arange(len(self))
        d = np.concatenate([self.offsets[i][1:, :2] for i in idx])
        return d.mean(0).astype(np.float32), (d.std(0) + 1e-6).astype(np.float32)

    def extend(self, other: "Corpus") -> None:
        self.offsets += other.offsets
        self.texts += other.texts
        self.line_ids += other.line_ids
        self.form_ids += other.form_ids
        self.split = np.concatenate([self.split, other.split])
        self.dropped.update(other.dropped)
        self.raw_points += other.raw_points

    # cache -----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        lengths = np.array([len(o) for o in self.offsets], np.int64)
        with atomic_target(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, offsets=np.concatenate(self.offsets) if self.offsets else np.zeros((0, 3), np.float32),
                     lengths=lengths, texts=np.array(self.texts, dtype=str), line_ids=np.array(self.line_ids, dtype=str),
                     form_ids=np.array(self.form_ids, dtype=str), split=self.split.astype(np.int8),
                     meta=np.array(json.dumps({"norm": dataclasses.asdict(self.norm), "dropped": dict(self.dropped),
                                               "raw_points": self.raw_points})))

    @classmethod
    def load(cls, path: Path) -> "Corpus":
        with np.load(path, allow_pickle=False) as z:
            ends = np.cumsum(z["lengths"])
            offsets = np.split(z["offsets"], ends[:-1]) if len(ends) else []
            meta = json.loads(str(z["meta"]))
            return cls(list(offsets), list(map(str, z["texts"])), list(map(str, z["line_ids"])),
                       list(map(str, z["form_ids"])), z["split"].astype(np.int64), Normalization(**meta["norm"]),
                       Counter(meta["dropped"]), int(meta["raw_points"]))


def _accept(text: str, strokes, norm: Normalization, sample: bool = False) -> tuple[np.ndarray | None, str]:
    """A line's offsets, or None and why not. ``sample``: a person's, normalised at the training
    lines' density (``strokes.normalize_sample``)."""
    text = " ".join(text.split())
    if not text:
        return None, "empty transcription"
    if "#" in text:
        return None, "transcription has an unreadable-word marker (#)"
    off = normalize_sample(strokes, len(text), norm) if sample else normalize_line(strokes, norm)
    if len(off) < 2:
        return None, "no usable points"
    per_char = len(off) / len(text)
    if not MIN_STEPS_PER_CHAR <= per_char <= MAX_STEPS_PER_CHAR:
        return None, "absurd points per character"
    return off, ""


def build_iam(path, norm: Normalization = Normalization(), progress: bool = True) -> Corpus:
    corpus = Corpus([], [], [], [], np.zeros(0, np.int64), norm)
    split = []
    try:
        from tqdm import tqdm
        it = tqdm(iter_iam(path), desc="reading IAM-OnDB", unit=" lines", disable=not progress)
    except ImportError:  # pragma: no cover
        it = iter_iam(path)
    for line in it:
        if line.problem:
            corpus.dropped[line.problem.split(" in ")[0].split(" file ")[0]] += 1
            continue
        off, why = _accept(line.text, line.strokes, norm)
        if off is None:
            corpus.dropped[why] += 1
            continue
        corpus.offsets.append(off)
        corpus.texts.append(" ".join(line.text.split()))
        corpus.line_ids.append(line.line_id)
        corpus.form_ids.append(line.form_id)
        corpus.raw_points += sum(len(s) for s in line.strokes)
        split.append(split_of(line.form_id))
    corpus.split = np.array(split, np.int64)
    if not corpus.texts:
        raise HandsynthError(f"{path}: no usable lines found (dropped: {dict(corpus.dropped)})")
    return corpus


def build_unipen(path, norm: Normalization = Normalization(), categories=WORDS + TEXT,
                 drop_bad: bool = True) -> Corpus:
    """UNIPEN as line-like training samples (``unipen.line_samples``: a writer's words on one
    line, single words stitched into lines, free text of one line; ``categories`` may add the
    isolated characters 1a-1d). form_ids are "unipen:<writer>", so the split is writer-disjoint.
    Unlike IAM, '#' is a real character here."""
    reading = read_unipen(path, categories)
    samples, left_out = _unipen.line_samples(reading.segments, drop_bad=drop_bad)
    corpus = Corpus([], [], [], [], np.zeros(0, np.int64), norm, Counter(reading.problems) + left_out)
    for sample in samples:
        text = sample.text
        off = normalize_line(sample.strokes, norm)
        if len(off) < 2:
            corpus.dropped["no usable points"] += 1
            continue
        if len(text) > 1 and not MIN_STEPS_PER_CHAR <= len(off) / len(text) <= MAX_STEPS_PER_CHAR:
            corpus.dropped["absurd points per character"] += 1
            continue
        corpus.offsets.append(off)
        corpus.texts.append(text)
        corpus.line_ids.append(f"unipen:{sample.ink}:{len(corpus.texts)}")
        corpus.form_ids.append(f"unipen:{sample.writer}")
        corpus.raw_points += sum(len(s) for s in sample.strokes)
    corpus.split = np.array([split_of(f) for f in corpus.form_ids], np.int64)
    if not corpus.texts:
        raise HandsynthError(f"{path}: no usable UNIPEN segments found (dropped: {dict(corpus.dropped)})")
    return corpus


def samples_corpus(samples: list[Sample], norm: Normalization = Normalization()) -> Corpus:
    """Captured samples as training lines (always in the train split)."""
    corpus = Corpus([], [], [], [], np.zeros(0, np.int64), norm)
    for i, s in enumerate(samples):
        off, why = _accept(s.text, dots_as_strokes(s.strokes), norm, sample=True)   # canvas dots drawn as pens record them
        if off is None:
            corpus.dropped[why] += 1
            continue
        corpus.offsets.append(off)
        corpus.texts.append(" ".join(s.text.split()))
        corpus.line_ids.append(f"sample-{i}")
        corpus.form_ids.append(f"sample:{s.writer or Path(s.source).stem}")
        corpus.raw_points += sum(len(st) for st in s.strokes)
    corpus.split = np.zeros(len(corpus.texts), np.int64)
    return corpus


def _cached(cache_dir: Path, name: str, key_parts: list, build) -> Corpus:
    """A processed corpus from ``cache_dir/<name>-<key>.npz`` (the key hashes the source and the
    settings), else ``build()`` and save it there (a read-only cache folder only costs time)."""
    key = hashlib.sha1(json.dumps(key_parts).encode()).hexdigest()[:16]
    cache = cache_dir / f"{name}-{key}.npz"
    if cache.exists():
        try:
            part = Corpus.load(cache)
            if part.texts:
                return part
        except Exception:
            pass
    part = build()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        part.save(cache)
    except (OSError, HandsynthError):
        pass
    return part


def load_corpus(iam: str | os.PathLike | None = None, samples: list | tuple = (),
                norm: Normalization = Normalization(), cache_dir: Path | None = None,
                progress: bool = True, unipen: str | os.PathLike | None = None,
                unipen_characters: tuple = ()) -> Corpus:
    """IAM-OnDB and/or UNIPEN (each cached as .npz keyed by source and settings) plus any sample
    files. ``unipen_characters``: isolated-character categories (``unipen.CHARACTER_LINES``, e.g.
    ("1a",) for digits) set side by side into lines (``unipen.character_lines``) beside the words
    and free text."""
    if iam is None and not samples and unipen is None:
        raise HandsynthError("no training data: pass --iam PATH, --unipen PATH and/or --samples PATH")
    corpus = Corpus([], [], [], [], np.zeros(0, np.int64), norm)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    if iam is not None:
        locate(iam)
        corpus.extend(_cached(cache_dir, "iam", [CACHE_VERSION, source_signature(iam), dataclasses.asdict(norm)],
                              lambda: build_iam(iam, norm, progress)))
    if unipen is not None:
        _unipen.locate(unipen)
        extra = tuple(sorted(set(unipen_characters)))
        bad = [c for c in extra if c not in _unipen.CHARACTER_LINES]
        if bad:
            raise HandsynthError(f"unknown UNIPEN character category {bad[0]!r}: use "
                                 + " or ".join(_unipen.CHARACTER_LINES))
        key = [CACHE_VERSION, _unipen.READER_VERSION, _unipen.source_signature(unipen), dataclasses.asdict(norm)]
        corpus.extend(_cached(cache_dir, "unipen", key + ([list(extra)] if extra else []),
                              lambda: build_unipen(unipen, norm, WORDS + TEXT + extra)))
    for path in samples:
        corpus.extend(samples_corpus(load_samples(path), norm))
    return corpus


def statistics(corpus: Corpus) -> dict:
    """What ``handsynth corpus`` prints."""
    chars = Counter("".join(corpus.texts))
    steps = np.array([len(o) for o in corpus.offsets])
    nchar = np.array([len(t) for t in corpus.texts])
    return {
        "lines": len(corpus),
        "forms": len(set(corpus.form_ids)),
        "split_lines": {s: int((corpus.split == i).sum()) for i, s in enumerate(SPLITS)},
        "split_forms": {s: len({f for f, k in zip(corpus.form_ids, corpus.split) if k == i})
                        for i, s in enumerate(SPLITS)},
        "characters": int(nchar.sum()),
        "distinct_characters": len(chars),
        "character_counts": dict(sorted(chars.items(), key=lambda kv: -kv[1])),
        "raw_points_per_line": corpus.raw_points / max(len(corpus), 1),
        "raw_points_per_character": corpus.raw_points / max(int(nchar.sum()), 1),
        "steps_per_line": float(steps.mean()) if len(steps) else 0.0,
        "steps_per_character": float(steps.sum() / max(nchar.sum(), 1)),
        "lines_over_700_steps": int((steps > 700).sum()),
        "dropped": dict(corpus.dropped),
    }


# batching ------------------------------------------------------------------------------------
@dataclass
class Batch:
    inputs: torch.Tensor     # (B, T, 3) standardised, a start token then the line shifted by one
    targets: torch.Tensor    # (B, T, 3) standardised dx, dy and end_of_stroke
    mask: torch.Tensor       # (B, T) 1 where a real step
    text: torch.Tensor       # (B, U) character codes, 0 = padding
    text_mask: torch.Tensor  # (B, U)


def make_batch(offsets: list, texts: list, alphabet: Alphabet, mean, std) -> Batch:
    B, T, U = len(offsets), max(len(o) for o in offsets), max(len(t) for t in texts)
    inputs = np.zeros((B, T, 3), np.float32)
    targets = np.zeros((B, T, 3), np.float32)
    mask = np.zeros((B, T), np.float32)
    text = np.zeros((B, U), np.int64)
    for b, (o, t) in enumerate(zip(offsets, texts)):
        s = standardize(o, mean, std)
        n = len(s)
        targets[b, :n] = s
        inputs[b, 0, 2] = 1.0  # start token: pen up at the origin
        inputs[b, 1:n] = s[:-1]
        mask[b, :n] = 1
        text[b, :len(t)] = alphabet.encode(t)
    tt = torch.from_numpy(text)
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask), tt,
                 (tt > 0).float())


def bucket_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Indices grouped by similar length (little padding), batches in random order. Lengths are
    jittered by up to 10% before sorting so batches differ between epochs."""
    order = np.argsort(lengths * (1 + 0.1 * rng.random(len(lengths))), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches
