"""Measure the sampling bias: completion, plausibility (no stalled line, no over-wide word),
the pen's wobble (``measures.wobble_deg``: how shaky the strokes are) and, when a recogniser is
available, legibility CER, over held-out test-form texts. With several ``--model``s, each at
every bias in one table, so one family's bias scale can be matched to another's (the
transformer's temperature and nucleus to the LSTM's wobble at the same bias); the real lines'
wobble is the reference.

    python scripts/choose_bias.py --iam PATH [--model M [--model M2]] [--recognizer R] [--texts 40] [--biases 0.5 1 2 3]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import handsynth
from handsynth.sampling import plausible
from handsynth.data.corpus import load_corpus
from handsynth.evaluate import completed
from handsynth.sampling import SamplingOptions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iam", required=True)
    ap.add_argument("--model", action="append", help="a shipped name or a model file (repeatable)")
    ap.add_argument("--recognizer")
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--biases", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 3.0])
    args = ap.parse_args()
    from handsynth.measures import wobble_deg
    writers = [handsynth.load_model(m) for m in (args.model or [None])]
    corpus = load_corpus(args.iam, progress=False)
    test = [i for i in corpus.indices("test") if all(all(c in hw.alphabet for c in corpus.texts[i]) for hw in writers)]
    pick = [test[k] for k in np.random.default_rng(args.seed).permutation(len(test))[:args.texts]]
    texts = [corpus.texts[i] for i in pick]
    rec = None
    print(f"real lines: wobble {np.nanmean([wobble_deg(corpus.offsets[i]) for i in pick]):.1f} deg")
    if args.recognizer and Path(args.recognizer).exists():
        from handsynth.measures import cer
        from handsynth.recognizer import load_recognizer, recognize
        rec = load_recognizer(args.recognizer)
        print(f"recogniser CER on the real lines: {cer(recognize(rec, [corpus.offsets[i] for i in pick]), texts):.3f}")
    print("model        bias  completion  plausible  wobble  CER")
    for hw in writers:
        name = hw.name or hw.path.stem
        for b in args.biases:
            lines = []
            for s in range(0, len(texts), 20):
                lines += hw.lines(texts[s:s + 20], options=SamplingOptions(bias=b, seed=args.seed), return_phi=True)
            comp = np.mean([completed(x) for x in lines])
            ok = np.mean([plausible(x) for x in lines])
            wob = np.nanmean([wobble_deg(x.offsets) for x in lines])
            c = f"{cer(recognize(rec, [x.offsets for x in lines]), texts):.3f}" if rec else "-"
            print(f"{name:12s} {b:4.1f}  {comp:10.3f}  {ok:9.3f}  {wob:6.1f}  {c}", flush=True)


if __name__ == "__main__":
    main()
