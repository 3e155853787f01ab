"""Build the built-in style bank (handsynth/styles/bank.json) from held-out IAM-OnDB lines.

    python scripts/build_style_bank.py --iam PATH [--model handsynth/weights/default.pt]
        [--recognizer handsynth/weights/recognizer.pt] [--max-cer 0.2] [--count 12]

Candidates are short lines (24-44 characters) of distinct test-split forms (never trained on).
Each is described by measured features (slant, joined-up-ness, size) and, with --model, checked
by priming the model with it and writing four texts at the default bias: a candidate is kept only
if every text is written in full with a sensible width and, with --recognizer, the recogniser
reads the four lines with a character error rate of at most --max-cer. The final bank spreads over the feature space. Only a
dozen short lines are kept (with attribution), as the IAM-OnDB terms allow for style primers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from handsynth.data.iam import iter_iam
from handsynth.data.corpus import split_of
from handsynth.strokes import Normalization, normalize_line, offsets_to_strokes

CHECK_TEXTS = ["The quick brown fox jumps over the lazy dog.", "Meet me at 10:30 on Friday, ok?",
               "handwriting synthesis", "Dots and crosses of i, j, t, x, f and k."]


def features(strokes, text, raw_height):
    off = normalize_line(strokes, Normalization(downsample=1))
    pen = off[off[:, 2] < 0.5]
    vert = pen[np.abs(pen[:, 1]) > 1.5 * np.abs(pen[:, 0]) + 1e-6]
    sign = np.sign(vert[:, 1])
    slant = float(np.degrees(np.arctan2((vert[:, 0] * sign).sum(), np.abs(vert[:, 1]).sum())))
    lifts = float((off[:, 2] > 0.5).sum()) / max(len(text.replace(" ", "")), 1)
    return off, slant, lifts, raw_height


def describe(slant, lifts, size):
    joined = "cursive" if lifts < 0.6 else "print" if lifts > 1.0 else "semi-joined"
    lean = "left-leaning" if slant < -4 else "upright" if slant < 8 else "slanted" if slant < 18 else "very slanted"
    return f"{joined}, {lean}, {size}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iam", required=True)
    ap.add_argument("--model")
    ap.add_argument("--recognizer", help="judge each candidate's lines with this recogniser")
    ap.add_argument("--max-cer", type=float, default=0.2)
    ap.add_argument("--candidates", type=int, default=72, help="candidates checked with the model")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "handsynth/styles/bank.json"))
    args = ap.parse_args()

    cands, seen = [], set()
    for line in iter_iam(args.iam):
        if line.problem or split_of(line.form_id) != 2 or line.form_id in seen or "#" in line.text:
            continue
        if not 24 <= len(line.text) <= 44:
            continue
        pts = np.concatenate(line.strokes)
        raw_h = float(np.percentile(pts[:, 1], 90) - np.percentile(pts[:, 1], 10))
        off, slant, lifts, _ = features(line.strokes, line.text, raw_h)
        if not 8 <= len(off) / len(line.text) * 0.5 <= 20:
            continue
        seen.add(line.form_id)
        cands.append(dict(line_id=line.line_id, text=line.text, off=off, slant=slant, lifts=lifts, height=raw_h))
    print(f"{len(cands)} candidate lines from distinct test forms")
    heights = np.array([c["height"] for c in cands])
    lo, hi = np.percentile(heights, [33, 67])
    for c in cands:
        c["size"] = "small" if c["height"] < lo else "large" if c["height"] > hi else "medium"

    if args.model:
        import handsynth
        from handsynth.sampling import line_width, plausible
        from handsynth.layout import CHAR_WIDTH
        from handsynth.sampling import SamplingOptions
        from handsynth.styles import Style
        hw = handsynth.load_model(args.model)
        rec = None
        if args.recognizer:
            from handsynth.measures import cer
            from handsynth.recognizer import load_recognizer, recognize
            rec = load_recognizer(args.recognizer)
        ok = []
        for c in cands[:args.candidates]:
            style = Style("x", "x", c["text"], tuple(offsets_to_strokes(c["off"])))
            try:
                lines = hw.lines(CHECK_TEXTS, style=style, options=SamplingOptions(seed=0))
            except handsynth.HandsynthError:
                continue
            # plausible (no stalled line or over-wide word) and not cramped (the primer's size
            # and spacing carried over so tightly that letters run together)
            c["ok"] = sum(plausible(x) and line_width(x) / len(x.text) >= 0.6 * CHAR_WIDTH for x in lines)
            c["cer"] = cer(recognize(rec, [x.offsets for x in lines]), CHECK_TEXTS) if rec else 0.0
            print(c["line_id"], c["ok"], f"cer {c['cer']:.3f}", f"{c['slant']:.1f}", f"{c['lifts']:.2f}", c["size"],
                  flush=True)
            if c["ok"] == len(CHECK_TEXTS) and c["cer"] <= args.max_cer:
                ok.append(c)
        cands = ok
    # spread over (slant, joined-up-ness, size): greedy farthest-point selection
    feats = np.array([[c["slant"] / 10, c["lifts"] / 0.3, np.log(c["height"]) / 0.3] for c in cands])
    chosen = [int(np.argmin(np.abs(feats - np.median(feats, 0)).sum(1)))]
    while len(chosen) < min(args.count, len(cands)):
        d = np.min(np.linalg.norm(feats[:, None] - feats[chosen][None], axis=2), 1)
        chosen.append(int(np.argmax(d)))
    styles, names = [], set()
    for k, i in enumerate(chosen):
        c = cands[i]
        name = describe(c["slant"], c["lifts"], c["size"])
        base, n = name, 2
        while name in names:
            name, n = f"{base} {n}", n + 1
        names.add(name)
        strokes = offsets_to_strokes(c["off"])
        styles.append({"id": f"s{k + 1:02d}", "name": name, "text": c["text"], "y_axis": "up",
                       "source": f"IAM-OnDB line {c['line_id']} (test split; Liwicki & Bunke, ICDAR 2005)",
                       "strokes": [np.round(s, 3).tolist() for s in strokes]})
    Path(args.out).write_text(json.dumps({"styles": styles}, separators=(",", ":")))
    for s in styles:
        print(s["id"], s["name"], repr(s["text"]), s["source"])


if __name__ == "__main__":
    main()
