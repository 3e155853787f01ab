"""Measure the polar tokenizer on the real corpus: fit on train lines, evaluate on validation.

    python scripts/tokenizer_stats.py [--iam /work/shared/data/iam-ondb] [--angle-bins 128] [--radius-bins 64]

Prints, per variant (radius spacing x bin value x error feedback): the round-trip error per
offset in x-height units (mean, 99th percentile), the reconstructed line's drift (mean end-point
error per line, mean point error, and the stroke-end error after re-anchoring each stroke at its
true start), the share of offsets clipped by the largest radius bin, tokens per character and
the distinct tokens used.
"""
from __future__ import annotations

import argparse

import numpy as np

from handsynth.data.corpus import load_corpus
from handsynth.models.transformer.tokenizer import PolarTokenizer


def line_errors(true: np.ndarray, dec: np.ndarray) -> tuple[float, float, float]:
    """(end-point error, mean point error, mean stroke-end error with each stroke re-anchored)."""
    e = np.cumsum(dec[:, :2].astype(np.float64) - true[:, :2], axis=0)
    dist = np.hypot(e[:, 0], e[:, 1])
    ends = np.flatnonzero(true[:, 2] > 0.5)
    if not len(ends) or ends[-1] != len(true) - 1:
        ends = np.append(ends, len(true) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    stroke = np.hypot(*(e[ends] - e[starts]).T)
    return float(dist[-1]), float(dist.mean()), float(stroke.mean())


def measure(tok: PolarTokenizer, lines, feedback: bool) -> dict:
    per, drift, used = [], [], set()
    for off in lines:
        t = tok.encode(off, feedback=feedback)
        dec = tok.decode(t)
        used.update(np.unique(t).tolist())
        per.append(np.hypot(*(dec[:, :2] - off[:, :2]).T))
        drift.append(line_errors(off, dec))
        assert np.array_equal(dec[:, 2] > 0.5, off[:, 2] > 0.5)
    per, drift = np.concatenate(per), np.array(drift)
    r = np.concatenate([np.hypot(o[:, 0], o[:, 1]) for o in lines])
    return {"step mean": per.mean(), "step p99": np.percentile(per, 99), "end-point": drift[:, 0].mean(),
            "point mean": drift[:, 1].mean(), "stroke-end": drift[:, 2].mean(),
            "clipped %": 100 * (r > tok.max_radius).mean(),
            "top bin %": 100 * (r >= tok.radius_edges[-2]).mean(), "distinct": len(used)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", default="/work/shared/data/iam-ondb")
    ap.add_argument("--angle-bins", type=int, default=128)
    ap.add_argument("--radius-bins", type=int, default=64)
    args = ap.parse_args()
    c = load_corpus(args.iam, progress=False)
    train = [c.offsets[i] for i in c.indices("train")]
    val_idx = c.indices("validation")
    val, texts = [c.offsets[i] for i in val_idx], [c.texts[i] for i in val_idx]
    steps, chars = sum(map(len, val)), sum(map(len, texts))
    print(f"train {len(train)} lines, validation {len(val)} lines, {steps} steps; "
          f"tokens per character (joint token = pen steps): {steps / chars:.2f}")
    cols = ["step mean", "step p99", "end-point", "point mean", "stroke-end", "clipped %", "top bin %", "distinct"]
    print(f"{'spacing':9} {'value':7} {'feedback':8} " + " ".join(f"{k:>10}" for k in cols))
    for spacing in ("log", "quantile"):
        for value in ("mean", "centre"):
            tok = PolarTokenizer.fit(train, args.angle_bins, args.radius_bins, spacing, value)
            for feedback in (False, True):
                m = measure(tok, val, feedback)
                print(f"{spacing:9} {value:7} {feedback!s:8} "
                      + " ".join(f"{m[k]:10.4f}" if k != "distinct" else f"{m[k]:10d}" for k in cols),
                      flush=True)
    tok = PolarTokenizer.fit(train, args.angle_bins, args.radius_bins)
    used = set()
    for o in train:
        used.update(np.unique(tok.encode(o)).tolist())
    print(f"default (log, mean): vocab {tok.vocab_size}, distinct tokens on train {len(used)}, "
          f"r_lo {tok.radius_edges[1]:.4f}, r_hi {tok.max_radius:.3f}")


if __name__ == "__main__":
    main()
