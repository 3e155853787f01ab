"""Build the built-in style bank (handsynth/styles/bank.json): hands with range, from held-out lines.

    python scripts/build_style_bank.py --iam PATH [--unipen PATH] [--count 24] [--keep]
        [--model NAME_OR_FILE] [--recognizer FILE] [--max-cer 0.2] [--candidates 200]

Candidates are short lines of distinct held-out writers, never trained on: IAM-OnDB test-split
forms (24-44 characters, one line per form) and, with --unipen, UNIPEN test-split writers (one line
each, 24-56 characters, from the corpus's line-like samples). Each candidate is

- **described** by measured features of its normalised line (x-height 1): slant (degrees from
  upright of the pen's near-vertical moves), pen lifts per character (cursive < 0.6 <= semi-joined
  <= 1.0 < print), width per character, and roundness (the share of drawn moves turning by more
  than 60 degrees: few sharp turns is round, many is angular; the candidates' quartiles split
  round / - / angular and narrow / - / wide);
- **embedded** by the shipped style encoder (the eval's style judge);
- **checked** by priming the model with it and writing four texts at the default bias: kept only if
  every text is written in full with a sensible width and the recogniser reads the four lines at a
  character error rate of at most --max-cer.

The bank is chosen among the kept candidates by greedy farthest-point selection on the style
encoder's embeddings (cosine distance), so it spreads over the space of hands the encoder tells
apart; --keep starts from the current bank's styles (their ids, strokes and sources stay, so
drawings made with them do not change; their names are measured afresh). Names are the traits,
("round cursive, right-slanted, wide"); styles that share all their traits are numbered.
Only short lines are kept, with attribution, as the IAM-OnDB and UNIPEN terms allow for style
primers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from handsynth.data.corpus import load_corpus
from handsynth.strokes import offsets_to_strokes

CHECK_TEXTS = ["The quick brown fox jumps over the lazy dog.", "Meet me at 10:30 on Friday, ok?",
               "handwriting synthesis", "Dots and crosses of i, j, t, x, f and k."]
IAM_SOURCE = "IAM-OnDB line {} (test split; Liwicki & Bunke, ICDAR 2005)"
UNIPEN_SOURCE = "UNIPEN train_r01_v07 writer {} (test split; Guyon et al., ICPR 1994; CC BY 4.0)"
BANK = Path(__file__).resolve().parents[1] / "handsynth/styles/bank.json"


def features(off: np.ndarray, text: str) -> dict:
    """Measured traits of one normalised line (offsets, x-height 1)."""
    pen = off[off[:, 2] < 0.5]
    vert = pen[np.abs(pen[:, 1]) > 1.5 * np.abs(pen[:, 0]) + 1e-6]
    sign = np.sign(vert[:, 1])
    slant = float(np.degrees(np.arctan2((vert[:, 0] * sign).sum(), np.abs(vert[:, 1]).sum())))
    letters = max(len(text.replace(" ", "")), 1)
    lifts = float((off[:, 2] > 0.5).sum()) / letters
    x = np.cumsum(off[:, 0])
    width = float(x.max() - x.min()) / max(len(text), 1)
    # turns between consecutive drawn moves within a stroke (a move after a pen lift is a jump)
    drawn = np.r_[False, off[:-1, 2] < 0.5]            # the move into point i is drawn
    m = off[:, :2]
    both = drawn[1:] & drawn[:-1]
    a, b = m[:-1][both], m[1:][both]
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ok = (na > 0.02) & (nb > 0.02)
    cos = (a[ok] * b[ok]).sum(1) / (na[ok] * nb[ok])
    sharp = float((cos < 0.5).mean()) if ok.any() else 0.0
    return {"slant": slant, "lifts": lifts, "width": width, "sharp": sharp}


def describe(f: dict, q: dict) -> str:
    joined = "cursive" if f["lifts"] < 0.6 else "print" if f["lifts"] > 1.0 else "semi-joined"
    shape = "round " if f["sharp"] < q["sharp"][0] else "angular " if f["sharp"] > q["sharp"][1] else ""
    s = f["slant"]
    lean = "left-leaning" if s < -4 else "upright" if s < 8 else "right-slanted" if s < 18 else "strongly slanted"
    width = ", narrow" if f["width"] < q["width"][0] else ", wide" if f["width"] > q["width"][1] else ""
    return f"{shape}{joined}, {lean}{width}"


def full_density(off: np.ndarray) -> list:
    """A corpus line (every other point kept) as strokes with the midpoints put back, so that a
    style made of them normalises (``Style.offsets``: every other point) to the corpus line."""
    out = []
    for s in offsets_to_strokes(off):
        s = np.asarray(s, np.float64)
        if len(s) > 1:
            mid = (s[:-1] + s[1:]) / 2
            s = np.insert(s, np.arange(1, len(s)), mid, axis=0)
        out.append(s)
    return out


def candidates(corpus, source: str, chars: tuple) -> list:
    """One short held-out line per form (IAM) or writer (UNIPEN)."""
    out, seen = [], set()
    unipen = corpus.unipen()
    for i in corpus.indices("test"):
        if bool(unipen[i]) != (source == "unipen"):
            continue
        text, form = corpus.texts[i], corpus.form_ids[i]
        if form in seen or not chars[0] <= len(text) <= chars[1] or "#" in text and source == "iam":
            continue
        off = corpus.offsets[i]
        if not 4 <= len(off) / len(text) <= 10:     # (the corpus keeps every other point)
            continue
        seen.add(form)
        out.append({"key": corpus.line_ids[i], "form": form, "text": text, "off": off, "source": source})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", required=True)
    ap.add_argument("--unipen", help="add UNIPEN test-split writers as candidates")
    ap.add_argument("--model", help="check candidates with this model (default: the shipped one)")
    ap.add_argument("--recognizer", help="judge each candidate's lines with this recogniser (default: the shipped one)")
    ap.add_argument("--max-cer", type=float, default=0.2)
    ap.add_argument("--candidates", type=int, default=200, help="at most this many candidates checked with the model")
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--keep", action="store_true", help="start from the current bank's styles (ids and strokes kept)")
    ap.add_argument("--out", default=str(BANK))
    args = ap.parse_args()

    import handsynth
    from handsynth.evaluate import find_recognizer
    from handsynth.layout import CHAR_WIDTH
    from handsynth.measures import cer
    from handsynth.recognizer import load_recognizer, recognize
    from handsynth.sampling import SamplingOptions, line_width, plausible
    from handsynth.style_encoder import embed, load_style_encoder
    from handsynth.styles import Style, builtin_styles

    corpus = load_corpus(args.iam, progress=False, unipen=args.unipen)
    cands = candidates(corpus, "iam", (24, 44))
    if args.unipen:
        cands += candidates(corpus, "unipen", (24, 56))
    print(f"{len(cands)} candidate lines of distinct held-out writers "
          f"({sum(c['source'] == 'unipen' for c in cands)} UNIPEN)")
    kept = []
    if args.keep:   # the current bank: ids, strokes, texts and sources as they are
        for s in builtin_styles():
            off = s.offsets()
            kept.append({"key": s.id, "id": s.id, "text": s.text, "off": off, "source_text": s.source,
                         "strokes": s.strokes, "y_axis": "up"})
        sources = {s.source for s in builtin_styles()}
        cands = [c for c in cands if IAM_SOURCE.format(c["key"]) not in sources]
    hw = handsynth.load_model(args.model)
    rec_path = args.recognizer or find_recognizer()
    rec = load_recognizer(rec_path) if rec_path else None
    ok = []
    for c in cands[:args.candidates]:
        strokes = full_density(c["off"])
        style = Style("x", "x", c["text"], tuple(strokes))
        try:
            lines = hw.lines(CHECK_TEXTS, style=style, options=SamplingOptions(seed=0))
        except handsynth.HandsynthError:
            continue
        # plausible (no stalled line or over-wide word) and not cramped
        c["ok"] = sum(plausible(x) and line_width(x) / len(x.text) >= 0.6 * CHAR_WIDTH for x in lines)
        c["cer"] = cer(recognize(rec, [x.offsets for x in lines]), CHECK_TEXTS) if rec else 0.0
        c["strokes"] = strokes
        print(c["key"], c["ok"], f"cer {c['cer']:.3f}", flush=True)
        if c["ok"] == len(CHECK_TEXTS) and c["cer"] <= args.max_cer:
            ok.append(c)
    print(f"{len(ok)} candidates write the check texts legibly")
    pool = kept + ok
    enc = load_style_encoder()
    emb = embed(enc, [p["off"] for p in pool])
    chosen = list(range(len(kept))) or [int(np.argmax(emb @ emb.mean(0)))]   # (the most typical first)
    while len(chosen) < min(args.count, len(pool)):
        sim = (emb @ emb[chosen].T).max(1)
        sim[chosen] = np.inf
        chosen.append(int(np.argmin(sim)))          # the hand least like any chosen one
    for p in pool:
        p["f"] = features(p["off"], p["text"])
    q = {k: np.percentile([pool[i]["f"][k] for i in chosen], [25, 75]) for k in ("sharp", "width")}
    names = [describe(pool[i]["f"], q) for i in chosen]
    count = {n: names.count(n) for n in names}
    seen: dict = {}
    styles = []
    for k, (i, name) in enumerate(zip(chosen, names)):
        p = pool[i]
        if count[name] > 1:
            seen[name] = seen.get(name, 0) + 1
            name = f"{name} {seen[name]}"
        sid = p.get("id", f"s{k + 1:02d}")
        if "source_text" in p:
            source, strokes = p["source_text"], p["strokes"]
        else:
            writer = p["form"].split(":", 1)[1] if p["source"] == "unipen" else None
            source = UNIPEN_SOURCE.format(writer) if writer else IAM_SOURCE.format(p["key"])
            strokes = p["strokes"]
        styles.append({"id": sid, "name": name, "text": p["text"], "y_axis": "up", "source": source,
                       "strokes": [np.round(np.asarray(s, np.float64), 3).tolist() for s in strokes]})
        f = p["f"]
        print(sid, f"{name:42s}", f"slant {f['slant']:5.1f} lifts {f['lifts']:.2f} width {f['width']:.2f} "
              f"sharp {f['sharp']:.3f}", repr(p["text"]), source)
    Path(args.out).write_text(json.dumps({"styles": styles}, separators=(",", ":")))


if __name__ == "__main__":
    main()
