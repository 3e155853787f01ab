"""Tesseract's CER on the references the generated lines are judged against: real lines (the
built-in styles) rendered plainly, the same texts and the hard-text set in Debian's handwriting
fonts, and in a print font. Prints JSON: {source: {text set: {"cer", "by_class", "n"}}}.

    python scripts/judge_references.py [--worst 3]
"""
from __future__ import annotations

import argparse
import json

from handsynth import judge
from handsynth.measures import cer, cer_by_class, load_hard_texts
from handsynth.styles import builtin_styles


def score(hyps, refs, worst):
    by_line = sorted(((cer([h], [r]), r, h) for h, r in zip(hyps, refs)), reverse=True)
    return {"cer": round(cer(hyps, refs), 4), "n": len(refs),
            "by_class": {k: round(v["cer"], 4) for k, v in cer_by_class(hyps, refs).items() if v["cer"] is not None},
            "worst": [{"cer": round(c, 3), "text": r, "read": h} for c, r, h in by_line[:worst]]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worst", type=int, default=3, help="worst lines to show per entry")
    args = ap.parse_args()
    if not judge.available():
        raise SystemExit("tesseract is not installed: apt-get install tesseract-ocr")
    styles = builtin_styles()
    sets = {"styles": [s.text for s in styles], "hard": load_hard_texts()}
    out = {"real": {"styles": score(judge.read_lines([judge.render_offsets_png(s.offsets()) for s in styles]),
                                    sets["styles"], args.worst)}}
    for name, path in judge.find_fonts().items():
        out[name] = {k: score(judge.read_lines([judge.render_font_png(t, path) for t in texts]), texts, args.worst)
                     for k, texts in sets.items()}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
