"""How full a page's lines are: each line's written width over the width between the margins, for
the lines that end inside a paragraph (its last line ends where the text does), in a letter of
three paragraphs written in several styles, with and without ``layout.reflow``; next to real
held-out IAM-OnDB forms (each line's width over the form's widest line, last lines left out).

    python scripts/line_fill.py [--iam ../shared/data/iam-ondb] [--styles s01,s05,...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handsynth  # noqa: E402
from handsynth import writer  # noqa: E402

LETTER = ("Dear Margaret,\n\nThank you so much for the lovely afternoon on Sunday. The garden looked "
          "wonderful in the autumn light, and the apple cake was the best I have tasted in years. "
          "I have already told my sister about it, and she wants the recipe.\n\n"
          "We are planning a trip to the coast next month, once the weather settles. If you and "
          "Peter are free, it would be a joy to have you along; the cottage has room for four and "
          "the walks by the cliffs are beautiful at this time of year.\n\n"
          "With love and many thanks,\nElizabeth")


def fills(drawing) -> tuple[list[float], int, float]:
    """(fill of each line that ends inside a paragraph, lines, x-height used / asked)."""
    src = drawing.source
    avail = src.page.width - 2 * src.page.margin
    out, n = [], 0
    texts = []
    for page in drawing.pages:
        for line in page.lines:
            pts = np.concatenate(line.strokes)
            texts.append((line.text, float(np.ptp(pts[:, 0])) / avail))
            n += 1
    paragraphs = [p.replace("\n", " ").split() for p in LETTER.split("\n\n")]
    ends = {p[-1] for p in paragraphs} | {"Margaret,", "thanks,", "Elizabeth"}
    for text, f in texts:
        if text.split()[-1] not in ends:
            out.append(f)
    scale = src.frames[0].scale / (src.page.x_height * src.frames[0].unit) if src.frames else 1.0
    return out, n, scale


def real_fills(iam: str, forms: int = 60) -> list[float]:
    from handsynth.data.corpus import load_corpus
    corpus = load_corpus(iam, progress=False)
    by_form: dict = {}
    for i in corpus.indices("test"):
        by_form.setdefault(corpus.form_ids[i], []).append(i)
    out = []
    for ids in list(by_form.values())[:forms]:
        if len(ids) < 3:
            continue
        w = [float(np.ptp(np.cumsum(corpus.offsets[i][:, 0]))) for i in ids]
        out += [x / max(w) for x in w[:-1]]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iam", default=None)
    ap.add_argument("--styles", default="none,s01,s05,s10,s16,s21")
    ap.add_argument("--width", type=int, default=1200)
    a = ap.parse_args()
    hw = handsynth.load_model()
    real = real_fills(a.iam) if a.iam else []
    if real:
        print(f"real IAM-OnDB test forms: {len(real)} lines, fill median {np.median(real):.3f}, "
              f"10th percentile {np.percentile(real, 10):.3f}, min {min(real):.3f}")
    keep = writer.reflow
    rows = {}
    for style in a.styles.split(","):
        st = None if style == "none" else style
        for name, fn in (("char wrap", lambda t, o, w, r, p: (t, o, w)), ("reflow", keep)):
            writer.reflow = fn
            d = hw.write(LETTER, style=st, width=a.width, seed=1)
            f, n, scale = fills(d)
            rows.setdefault(name, []).extend(f)
            print(f"{style:5s} {name:9s}: {n} lines, inner-line fill min {min(f):.3f} median {np.median(f):.3f} "
                  f"max {max(f):.3f}; writing at {scale:.2f} of the asked size", flush=True)
        writer.reflow = keep
    for name, f in rows.items():
        print(f"all styles, {name}: {len(f)} inner lines, fill median {np.median(f):.3f}, 10th percentile "
              f"{np.percentile(f, 10):.3f}, min {min(f):.3f}, max {max(f):.3f}")


if __name__ == "__main__":
    main()
