"""docs/letter.png: one letter with an all-capital heading, an address, a date, a time, a phone
number and a price, written in five styles side by side, for reading by eye.

    python scripts/letter_sheet.py [--out docs/letter.png] [--styles none,s05,s08,s13,s19] [--model lstm]
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import handsynth  # noqa: E402
from handsynth.styles import get_style  # noqa: E402

LETTER = ("GARDEN CLUB NOTICE\n"
          "14 Mill Lane, Oxford OX2 6QT\n"
          "Tuesday 3 March 2026\n\n"
          "Dear members, the spring sale opens at 10:30 am on Saturday in the church hall. "
          "Seedlings cost 2.50 each or 4 for 8.00. Call Jane on 01865 557 204 before Friday.")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/letter.png")
    ap.add_argument("--styles", default="none,s05,s08,s13,s19")
    ap.add_argument("--width", type=int, default=760)
    ap.add_argument("--model", help="a shipped model's name or a model file (default: the shipped default)")
    a = ap.parse_args()
    from PIL import Image, ImageDraw, ImageFont
    hw = handsynth.load_model(a.model)
    tiles = []
    for style in a.styles.split(","):
        st = None if style == "none" else style
        d = hw.write(LETTER, style=st, width=a.width, seed=1)
        img = Image.open(io.BytesIO(d.to_png())).convert("RGB")
        label = "the model's own hand" if st is None else f"{st}: {get_style(st).name}"
        ImageDraw.Draw(img).text((12, 8), label, fill=(150, 40, 40), font=ImageFont.load_default(size=22))
        tiles.append(img)
    cols = 2
    w = max(t.width for t in tiles)
    rows = [tiles[i:i + cols] for i in range(0, len(tiles), cols)]
    heights = [max(t.height for t in r) for r in rows]
    sheet = Image.new("RGB", (w * cols, sum(heights)), "white")
    y = 0
    for r, h in zip(rows, heights):
        for k, t in enumerate(r):
            sheet.paste(t, (k * w, y))
        y += h
    sheet.save(a.out, optimize=True)
    print(f"{a.out}: {sheet.width}x{sheet.height}")


if __name__ == "__main__":
    main()
