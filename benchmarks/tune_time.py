"""How long ``handsynth tune`` takes on 5 sentences, as a user runs it (the command, model load
included), on held-out IAM-OnDB test forms used as users.

For each of ``--forms`` test forms with at least ``--lines`` lines the model can write, the first
``--lines`` lines become a sample file (docs/samples.md), and ``handsynth tune --samples F --out O``
runs ``--rounds`` times, the forms interleaved within each round. Prints each run's wall time,
steps and why it stopped, and the median per form and over all runs.

    python benchmarks/tune_time.py --iam ../shared/data/iam-ondb [--forms 3] [--lines 5] [--rounds 3] [--no-primed]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    import handsynth
    from handsynth.data.corpus import load_corpus
    from handsynth.strokes import offsets_to_strokes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", required=True)
    ap.add_argument("--forms", type=int, default=3)
    ap.add_argument("--lines", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--primed", action=argparse.BooleanOptionalAction, default=None,
                    help="pass --primed / --no-primed to handsynth tune (default: its default)")
    ap.add_argument("--json", help="write the results here too")
    a = ap.parse_args(argv)

    hw = handsynth.load_model()
    corpus = load_corpus(a.iam, progress=False)
    by_form: dict = {}
    for i in corpus.indices("test"):
        try:
            hw.alphabet.normalize(corpus.texts[i], False)
        except handsynth.HandsynthError:
            continue
        by_form.setdefault(corpus.form_ids[i], []).append(i)
    forms = [f for f, idx in sorted(by_form.items()) if len(idx) >= a.lines][:a.forms]
    work = Path(tempfile.mkdtemp(prefix="tune-time-"))
    files = {}
    for f in forms:
        items = [{"text": corpus.texts[i], "y_axis": "up",
                  "strokes": [np.round(s, 4).tolist() for s in offsets_to_strokes(corpus.offsets[i])]}
                 for i in by_form[f][:a.lines]]
        files[f] = work / f"{f}.json"
        files[f].write_text(json.dumps({"samples": items}))
    runs: dict = {f: [] for f in forms}
    for r in range(a.rounds):
        for f in forms:
            out = work / f"{f}-{r}.pt"
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-m", "handsynth", "tune", "--samples", str(files[f]), "--out", str(out)]
                               + ([] if a.primed is None else ["--primed" if a.primed else "--no-primed"]),
                               capture_output=True, text=True)
            dt = time.perf_counter() - t0
            if p.returncode:
                print(p.stderr.strip().splitlines()[-1], file=sys.stderr)
                return 1
            summary = p.stdout.strip().splitlines()[-1]
            runs[f].append(dt)
            print(f"round {r + 1} {f}: {dt:.1f} s  {summary}", flush=True)
    every = [t for ts in runs.values() for t in ts]
    print(f"{a.lines} sentences ({a.lines - 1} learnt from, 1 held out), {a.rounds} runs per form:")
    for f, ts in runs.items():
        print(f"  {f}: median {statistics.median(ts):.1f} s ({', '.join(f'{t:.1f}' for t in ts)})")
    print(f"  all {len(every)} runs: median {statistics.median(every):.1f} s, range {min(every):.1f}-{max(every):.1f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({"lines": a.lines, "primed": a.primed, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
