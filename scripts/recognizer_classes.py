"""Recognisers side by side on real held-out lines, CER overall and by character class: the
IAM-OnDB test forms and the UNIPEN test writers (their lines the recognisers can read in full
or not: errors are charged to the reference character's class, so a character a recogniser
cannot emit counts against it). Prints a Markdown table.

    python scripts/recognizer_classes.py --iam PATH --unipen PATH shipped=handsynth/weights/recognizer.pt mix=runs/rec-mix/recognizer.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from handsynth.data.corpus import load_corpus  # noqa: E402
from handsynth.measures import cer, cer_by_class  # noqa: E402
from handsynth.recognizer import load_recognizer, recognize  # noqa: E402

CLASSES = ("lowercase", "capitals", "digits", "punctuation", "symbols")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", required=True)
    ap.add_argument("--unipen", required=True)
    ap.add_argument("--lines", type=int, default=600, help="lines per source (random, seed 0)")
    ap.add_argument("recognizers", nargs="+", help="NAME=FILE")
    a = ap.parse_args()
    corpus = load_corpus(a.iam, unipen=a.unipen, progress=False).learnable()
    up = corpus.unipen()
    test = corpus.indices("test")
    rng = np.random.default_rng(0)
    sources = {}
    for name, mask in (("IAM-OnDB test forms", ~up), ("UNIPEN test writers", up)):
        idx = [i for i in test if mask[i]]
        sources[name] = [idx[k] for k in rng.permutation(len(idx))[:a.lines]]
    print("| recogniser | lines | all | " + " | ".join(CLASSES) + " |")
    print("| --- " * (3 + len(CLASSES)) + "|")
    for spec in a.recognizers:
        name, path = spec.split("=", 1)
        rec = load_recognizer(path)
        for source, idx in sources.items():
            refs = [corpus.texts[i] for i in idx]
            hyps = recognize(rec, [corpus.offsets[i] for i in idx])
            by = cer_by_class(hyps, refs)
            cells = [f"{100 * by[c]['cer']:.1f}%" if c in by and by[c]["cer"] is not None else "-" for c in CLASSES]
            print(f"| {name} | {source} ({len(idx)}) | {100 * cer(hyps, refs):.1f}% | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
