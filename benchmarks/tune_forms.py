"""Priming against tuning (``handsynth tune``) on held-out IAM-OnDB test forms used as users.

For each of N test forms with enough lines the model can write: the "user's" sentences are its
first ``--lines`` lines (tuning trains on all but the last of them and holds that one out), the
text to write is the next line's, and the form's remaining lines are the gallery the style
encoder ranks forms by (``style_encoder.retrieval``, mean scoring, chance 1/N). Conditions:
the unprimed model (the floor), priming with the user's first line, the tuned model unprimed,
the tuned model primed with that line, and the real line (the ceiling). Legibility: Tesseract and
the recogniser on the written lines, and on a check text of characters the forms' users rarely
write (capitals, digits, symbols), base model against tuned, both primed.

    python benchmarks/tune_forms.py --iam ../shared/data/iam-ondb --forms 16 [--model lstm-mix] [--lines 5] [--primer-lines 2] [--steps 60] [--lr 3e-5]
        [--sheet docs/tune.png] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

CHECK = ["Call 0123 456 789 by 5 PM, Quinn & Zoe!", "JUST 12 DAYS: Mon 3rd, Fri 27th (Xmas)"]


def main(argv=None) -> int:
    import handsynth
    from handsynth import judge
    from handsynth.data.corpus import load_corpus
    from handsynth.evaluate import find_recognizer, judge_lines
    from handsynth.measures import cer
    from handsynth.recognizer import load_recognizer, recognize
    from handsynth.sampling import Primer, SamplingOptions, primed_text, sample_checked
    from handsynth.style_encoder import embed, load_style_encoder, retrieval
    from handsynth.tune import TuneConfig, continued, tune_lines, tuned_writer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", required=True)
    ap.add_argument("--model", default=None, help="the base model to tune (a shipped name or a file; default: the default model)")
    ap.add_argument("--forms", type=int, default=16)
    ap.add_argument("--lines", type=int, default=3, help="the user's sentences per form (the last held out)")
    ap.add_argument("--steps", type=int, default=TuneConfig.max_steps)
    ap.add_argument("--lr", type=float, default=TuneConfig.lr)
    ap.add_argument("--parts", default=TuneConfig.parts)
    ap.add_argument("--rank", type=int, default=TuneConfig.rank)
    ap.add_argument("--anchor", type=float, default=TuneConfig.anchor)
    ap.add_argument("--primed", action=argparse.BooleanOptionalAction, default=TuneConfig.primed,
                    help="primed tuning (TuneConfig.primed)")
    ap.add_argument("--primer-lines", type=int, default=1,
                    help="prime with the user's first N sentences joined as one line (tune.continued; default 1)")
    ap.add_argument("--bias", type=float, default=None, help="sampling bias (default: SamplingOptions.bias)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strengths", default=f"{TuneConfig.strength:g}",
                    help="comma-separated shares of the tuned change to write with (1: as tuned; default the tuned "
                         "file's); the first is the one the sheet shows, the default's results are named plainly")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--sheet", help="a PNG of the first 3 forms: the real line, primed, tuned and primed")
    a = ap.parse_args(argv)

    hw = handsynth.load_model(a.model)
    enc = load_style_encoder()
    rec_path = find_recognizer()
    rec = load_recognizer(rec_path) if rec_path else None
    corpus = load_corpus(a.iam, progress=False)
    by_form: dict = {}
    for i in corpus.indices("test"):
        if all(c in hw.alphabet for c in corpus.texts[i]):
            by_form.setdefault(corpus.form_ids[i], []).append(i)
    forms = sorted(f for f, idx in by_form.items() if len(idx) >= a.lines + 2)
    forms = [forms[k] for k in sorted(np.random.default_rng(a.seed).permutation(len(forms))[:a.forms])]
    opts = SamplingOptions(seed=a.seed) if a.bias is None else SamplingOptions(seed=a.seed, bias=a.bias)
    config = TuneConfig(parts=a.parts, lr=a.lr, max_steps=a.steps, rank=a.rank, anchor=a.anchor, seed=a.seed,
                        primed=a.primed)
    gallery, gallery_forms = [], []
    strengths = [float(x) for x in a.strengths.split(",")]
    at = lambda name, s: name if s == TuneConfig.strength else f"{name}@{s:g}"   # noqa: E731
    out = {k: [] for k in ["unprimed", "primed", "real"] + [at(n, s) for s in strengths for n in ("tuned", "tuned_primed")]}
    check = {"base": [], **{at("tuned", s): [] for s in strengths}}
    written = {"primed": [], **{at("tuned_primed", s): [] for s in strengths}}
    rows = []
    times, gains = [], []
    for k, f in enumerate(forms):
        idx = sorted(by_form[f], key=lambda i: corpus.line_ids[i])
        user, target = idx[:a.lines], idx[a.lines]
        gallery += [corpus.offsets[i] for i in idx[a.lines + 1:]]
        gallery_forms += [f] * len(idx[a.lines + 1:])
        text = corpus.texts[target]
        primer = Primer(corpus.offsets[user[0]], corpus.texts[user[0]])
        for i in user[1:a.primer_lines]:   # the next sentences after it, as a primed model would continue
            primer = Primer(continued(primer.offsets, corpus.offsets[i]), primed_text(primer.text, corpus.texts[i]))
        t0 = time.perf_counter()
        tuned = tune_lines(hw, [corpus.offsets[i] for i in user], [corpus.texts[i] for i in user], config)
        times.append(time.perf_counter() - t0)
        gains.append(tuned.history[0][1] - min(h for _, h in tuned.history))
        mines = {s: tuned_writer(hw, tuned, strength=s) for s in strengths}
        for name, w, p in [("unprimed", hw, None), ("primed", hw, primer)] + \
                [(at(n, s), mines[s], p) for s in strengths for n, p in (("tuned", None), ("tuned_primed", primer))]:
            line = sample_checked(w.model, w.alphabet, w.mean, w.std, [text], [k], opts, p)[0]
            out[name].append(line.offsets)
            if name in written:
                written[name].append((line.offsets, text))
        out["real"].append(corpus.offsets[target])
        if k < 3:
            rows += [(f"{f}: real line", text, corpus.offsets[target]),
                     (f"{f}: primed with its first line", text, out["primed"][-1]),
                     (f"{f}: tuned on {a.lines - 1} lines, primed", text, out[at("tuned_primed", strengths[0])][-1])]
        for name, w in [("base", hw)] + [(at("tuned", s), mines[s]) for s in strengths]:
            check[name] += [(line.offsets, line.text) for line in
                            sample_checked(w.model, w.alphabet, w.mean, w.std, CHECK, [0, 1], opts, primer)]
        print(f"{f}: tuned in {times[-1]:.0f} s, best step {tuned.best_step}, held-out NLL "
              f"{tuned.history[0][1]:.3f} -> {min(h for _, h in tuned.history):.3f}", file=sys.stderr, flush=True)
    g_emb = embed(enc, gallery)
    result = {"forms": len(forms), "chance_top1": 1 / len(forms), "config": vars(a),
              "tune_seconds_median": statistics.median(times), "held_out_gain_median": statistics.median(gains)}
    for name, offs in out.items():
        r = retrieval(embed(enc, offs), forms, g_emb, gallery_forms)
        result[name] = {"top1": r["top1"], "top5": r["top5"]}
    judges = {"tesseract": lambda offs: judge_lines(offs)} if judge.available() else {}
    if rec is not None:
        judges["recogniser"] = lambda offs: recognize(rec, offs)
    for jname, read in judges.items():
        for name, lines in list(written.items()) + [("check_" + n, v) for n, v in check.items()]:
            result.setdefault("cer_" + jname, {})[name] = cer(read([o for o, _ in lines]), [t for _, t in lines])
    print(json.dumps(result, indent=2))
    if a.sheet:
        from handsynth.evaluate import lines_sheet
        lines_sheet(rows, a.sheet, title="held-out IAM-OnDB test forms as users: the same text three ways")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
