"""Two or more models side by side from their eval reports (``handsynth eval --out DIR`` writes
``DIR/report.json``): the measures of the model-comparison table, one column per model, as
Markdown. Run each eval with the same texts, seed and options (``--hard-like`` where the
alphabets differ) so the columns compare.

    python scripts/compare_models.py lstm=runs/eval-lstm/report.json transformer=runs/eval-tf/report.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _get(report: dict, path: str):
    node = report
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


CLASSES = ("lowercase", "capitals", "digits", "punctuation", "symbols")

ROWS = [
    ("recogniser CER, held-out / hard", lambda r: f"{_pct(_get(r, 'cer_by_class.iam.recognizer.cer'))} / "
                                                  f"{_pct(_get(r, 'cer_by_class.hard.recognizer.cer'))}"),
    ("Tesseract CER, held-out / hard", lambda r: f"{_pct(_get(r, 'cer_by_class.iam.tesseract.cer'))} / "
                                                 f"{_pct(_get(r, 'cer_by_class.hard.tesseract.cer'))}"),
    ("Tesseract CER on the hard set by class (" + " / ".join(CLASSES) + ")",
     lambda r: " / ".join(_pct(_get(r, f"cer_by_class.hard.tesseract.by_class.{c}")) for c in CLASSES)),
    ("completion, held-out / hard", lambda r: f"{_num(_get(r, 'completion'), 3)} / {_num(_get(r, 'completion_hard'), 3)}"),
    ("end-of-line strays per 100 lines", lambda r: _num(_get(r, "end_strays_per_100_lines"), 1)),
    ("baseline angle before layout (real)", lambda r: f"{_num(_get(r, 'baseline_angle_before_layout_deg'))} deg "
                                                      f"({_num(_get(r, 'baseline_angle_real_deg'))})"),
    ("size ratio last / first third (real)", lambda r: f"{_num(_get(r, 'size_ratio_last_first'), 3)} "
                                                       f"({_num(_get(r, 'size_ratio_last_first_real'), 3)})"),
    ("page line-height spread (real)", lambda r: f"{_num(_get(r, 'page_line_height_spread'), 3)} "
                                                 f"({_num(_get(r, 'page_line_height_spread_real'), 3)})"),
    ("style retrieval top-1 / top-5, priming (real)",
     lambda r: f"{_pct(_get(r, 'style_retrieval.top1'))} / {_pct(_get(r, 'style_retrieval.top5'))} "
               f"({_pct(_get(r, 'style_retrieval.real_top1'))} / {_pct(_get(r, 'style_retrieval.real_top5'))})"),
    ("pen lifts per character (real)", lambda r: f"{_num(_get(r, 'pen_lifts_per_char'), 3)} "
                                                 f"({_num(_get(r, 'pen_lifts_per_char_real'), 3)})"),
    ("eval seconds", lambda r: _num(_get(r, "seconds"), 0)),
]


def table(reports: dict[str, dict]) -> str:
    names = list(reports)
    out = ["| measure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, cell in ROWS:
        out.append(f"| {label} | " + " | ".join(cell(reports[n]) for n in names) + " |")
    settings = {n: (r.get("texts"), r.get("seed"), r.get("bias"), r.get("quick"), r.get("hard_texts"))
                for n, r in reports.items()}
    if len(set(settings.values())) > 1:
        out.append("")
        out.append("warning: the reports were run with different texts, seeds, biases or sizes: "
                   + "; ".join(f"{n}: {s}" for n, s in settings.items()))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", metavar="NAME=REPORT.json")
    a = ap.parse_args(argv)
    reports = {}
    for item in a.reports:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            print(f"compare_models: {item!r}: give NAME=PATH/report.json", file=sys.stderr)
            return 2
        try:
            reports[name] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            print(f"compare_models: {path}: {e}", file=sys.stderr)
            return 2
    print(table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
