"""Legibility by Tesseract of the shipped model primed with one or two sentences of one hand
(tests/fixtures/one_hand.json: lines the model wrote, so sampled at half the training lines'
density), 6 texts x 2 seeds each. Before ``strokes.normalize_sample`` such samples lost each
line's first letter under priming.

    python benchmarks/primer_legibility.py [--model me.pt]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import handsynth
from handsynth import judge
from handsynth.measures import cer
from handsynth.styles import style_from_json

ONE_HAND = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "one_hand.json"
TEXTS = ["Please call Anna about the dinner on Sunday", "The train leaves at half past seven",
         "Thank you for the lovely flowers", "Could you bring the blue folder tomorrow",
         "We will meet by the old bridge", "Happy birthday to my dearest friend"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    a = ap.parse_args()
    if not judge.available():
        print("Tesseract is not installed", file=sys.stderr)
        return 2
    docs = json.loads(ONE_HAND.read_text())["samples"]
    hw = handsynth.load_model(a.model) if a.model else handsynth.load_model()
    out = {}
    for name, picked in [("s0", [0]), ("s0+s1", [0, 1]), ("s2", [2]), ("s2+s3", [2, 3]), ("s3+s2", [3, 2])]:
        st = style_from_json([docs[i] for i in picked])
        offs, texts = [], []
        for seed in (0, 1):
            for line in hw.lines(TEXTS, style=st, line_seeds=[seed * 100 + i for i in range(len(TEXTS))], resample=True):
                offs.append(line.offsets)
                texts.append(line.text)
        out[name] = cer(judge.read_lines([judge.render_offsets_png(o) for o in offs]), texts)
        print(f"primed with {name}: Tesseract CER {100 * out[name]:.1f}%", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
