"""What the proofreading pass (``SamplingOptions.proofread``) buys: held-out IAM-OnDB texts and
the hard-text set written as ``write`` writes them, over the model's own hand and a few styles,
without it and with 1 or 2 rounds of it; read by Tesseract (the independent judge: the recogniser now chooses) and
by our recogniser, with the seconds each took and how many lines were written again.

    python scripts/proofread_gain.py --iam ../shared/data/iam-ondb [--texts 60] [--styles none,s05,s10,s16,s21]
        [--model lstm-mix] [--rounds 0,1,2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handsynth  # noqa: E402
from handsynth import sampling  # noqa: E402
from handsynth.evaluate import judge_lines  # noqa: E402
from handsynth.measures import cer, cer_by_class, load_hard_texts  # noqa: E402
from handsynth.sampling import SamplingOptions  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iam", required=True)
    ap.add_argument("--texts", type=int, default=60)
    ap.add_argument("--styles", default="none,s05,s10,s16,s21")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="a shipped model's name or a file (default: the default model)")
    ap.add_argument("--rounds", default="0,1,2",
                    help="proofreading rounds to compare (0: no proofreading; sampling.PROOF_ROUNDS)")
    a = ap.parse_args()
    from handsynth.data.corpus import load_corpus
    hw = handsynth.load_model(a.model) if a.model else handsynth.load_model()
    corpus = load_corpus(a.iam, progress=False)
    test = [i for i in corpus.indices("test") if all(c in hw.alphabet for c in corpus.texts[i])]
    pick = [test[k] for k in np.random.default_rng(a.seed).permutation(len(test))[:a.texts]]
    sets = {"held-out": [corpus.texts[i] for i in pick], "hard": load_hard_texts(hw.alphabet.chars)}
    styles = [None if s == "none" else s for s in a.styles.split(",")]
    rewritten = [0]
    keep = sampling.proofread

    def counting(model, alphabet, mean, std, groups, out, read):
        before = [[id(x) for x in lines] for lines in out]
        keep(model, alphabet, mean, std, groups, out, read)
        rewritten[0] += sum(x != y for b, lines in zip(before, out) for x, y in zip(b, [id(z) for z in lines]))
    sampling.proofread = counting
    for name, texts in sets.items():
        for rounds in [int(r) for r in a.rounds.split(",")]:
            proof = rounds > 0
            sampling.PROOF_ROUNDS = max(rounds, 1)
            rewritten[0] = 0
            t0 = time.time()
            lines = []
            for k, st in enumerate(styles):
                mine = texts[k::len(styles)]
                for s in range(0, len(mine), 12):
                    lines += hw.lines(mine[s:s + 12], style=st, resample=True, line_seeds=list(range(s, s + 12))[:len(mine[s:s + 12])],
                                      options=SamplingOptions(seed=a.seed, proofread=proof))
            secs = time.time() - t0
            refs = [line.text for line in lines]
            ours = hw.proofreader()([line.offsets for line in lines])
            tess = judge_lines([line.offsets for line in lines])
            by = cer_by_class(tess, refs)
            cls = ", ".join(f"{c} {v['cer']:.1%}" for c, v in by.items() if v["cer"] is not None and c != "space")
            print(f"{name:8s} rounds={rounds}: {len(lines)} lines, Tesseract CER {cer(tess, refs):.1%} ({cls}); "
                  f"recogniser {cer(ours, refs):.1%}; {secs:.0f} s sampling; {rewritten[0]} lines written again",
                  flush=True)


if __name__ == "__main__":
    main()
