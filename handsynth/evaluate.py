"""Quality metrics and pictures: training snapshots (a sample line and the attention plot),
style sheets, baseline drift, completion, pen lifts, and the ``handsynth eval`` report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import write_atomic
from .hardware import use_bf16
from .layout import PageOptions, place, straighten
from .render import Drawing, Ink
from .sampling import SamplingOptions, sample_lines
from .strokes import baseline, offsets_to_strokes


# the likelihood of held-out lines -----------------------------------------------------------------
@torch.no_grad()
def validation_nll(model, corpus, alphabet, mean, std, max_len: int = 700, bf16: bool = False,
                   split: str = "validation", max_lines: int | None = None) -> float:
    """Mean negative log-likelihood per line, in nats (on standardised offsets), of a split's
    lines up to ``max_len`` pen steps, through the family's ``loss`` (any family)."""
    from .data.corpus import make_batch

    model.eval()
    idx = [i for i in corpus.indices(split) if len(corpus.offsets[i]) <= max_len]
    idx = idx[:max_lines] if max_lines else idx
    if not idx:
        return float("nan")
    idx = sorted(idx, key=lambda i: len(corpus.offsets[i]))
    total = 0.0
    for s in range(0, len(idx), 64):
        chunk = idx[s:s + 64]
        b = make_batch([corpus.offsets[i] for i in chunk], [corpus.texts[i] for i in chunk], alphabet, mean, std)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            total += float(model.loss(b)[0])
    return total / len(idx)


# metrics on constructed or generated lines -----------------------------------------------------
def baseline_metrics(offsets: np.ndarray) -> tuple[float, float]:
    """(angle in degrees, spread in x-heights) of a line's fitted baseline. The x-height is the
    line's 10-90th percentile height of y, the unit of the normalised corpus."""
    strokes = offsets_to_strokes(offsets)
    pts = np.concatenate(strokes)
    slope, _, spread = baseline(strokes)
    height = float(np.percentile(pts[:, 1], 90) - np.percentile(pts[:, 1], 10)) or 1.0
    return float(np.degrees(np.arctan(slope))), spread / height


def pen_lifts_per_char(offsets: np.ndarray, text: str) -> float:
    return float((offsets[:, 2] > 0.5).sum()) / max(len(text.replace(" ", "")), 1)


def completed(line, phi: np.ndarray | None = None) -> bool:
    """Written in full: the stop rule ended the line (no step cap), the window reached the last
    character, and no run-on writing follows the end of the text (at most a stroke's worth of
    steps after the window passed it)."""
    if line.hit_cap:
        return False
    phi = line.phi if phi is None else phi
    if phi is None:
        return True
    U = phi.shape[1] - 1
    focus = phi[:, :U + 1].argmax(1)
    if focus.max() < U - 1:
        return False
    after = np.flatnonzero(focus >= U)
    return len(after) == 0 or len(phi) - after[0] <= 60


# pictures ----------------------------------------------------------------------------------------
def attention_plot(phi: np.ndarray, text: str, path: Path, title: str = "") -> None:
    """Heatmap of the window weights phi(t, u): time across, characters down."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.18 * len(text) + 1.6), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(phi[:, :len(text) + 1].T, aspect="auto", origin="upper", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(text) + 1))
    ax.set_yticklabels(list(text.replace(" ", "\u2423")) + ["end"], fontsize=7)
    ax.set_xlabel("pen step")
    ax.set_title(title or f"attention window: {text!r}")
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_atomic(path, buf.getvalue())


def training_snapshot(model, alphabet, mean, std, text, png_path, att_path, seed=0, bias=1.0) -> None:
    """A sample line and its attention plot, written during training."""
    was_training = model.training
    try:
        line = sample_lines(model, alphabet, mean, std, [text], SamplingOptions(bias=bias, seed=seed),
                            return_phi=True)[0]
    finally:
        model.train(was_training)
    pages = place([text], [line.offsets], PageOptions(width=1000))
    write_atomic(Path(png_path), Drawing(pages, Ink()).to_png())
    attention_plot(line.phi, text, Path(att_path), f"attention window ({len(line.offsets)} steps)")


def can_prime(hw, style) -> bool:
    """Whether the model knows every character of a style's priming text (a model trained on
    other data than the built-in styles' may not)."""
    from .errors import HandsynthError

    try:
        hw.primer(style)
    except HandsynthError:
        return False
    return True


def style_sheet(hw, text: str, path, bias: float = SamplingOptions.bias, seed: int = 0, width: int = 1400) -> Path:
    """Every built-in style (and the unprimed model) writing ``text``, one row each, labelled."""

    from .styles import builtin_styles

    styles = [None] + [st for st in builtin_styles() if can_prime(hw, st)]
    text = hw.alphabet.normalize(text)
    rows = []
    for st in styles:
        line = hw.lines([text], style=st, options=SamplingOptions(bias=bias, seed=seed), resample=True)[0]  # as write samples
        rows.append(line.offsets)
    opts = PageOptions(width=width, margin=40, x_height=20, line_pitch=3.6)
    pages = place([text] * len(rows), rows, opts, tight=True)
    page = pages[0]
    ink = Ink(stroke_width=2.0)
    from .render import _figure
    fig = _figure(page, ink)
    ax = fig.axes[0]
    for j, st in enumerate(styles[:len(page.lines)]):
        y = opts.margin + opts.x_height * (1.6 + j * opts.line_pitch) - 2.4 * opts.x_height
        label = "(model's own hand)" if st is None else f"{st.id}: {st.name}"
        ax.text(6, y + opts.x_height * 0.2, label, fontsize=7, color="#a33", va="top")
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ink.dpi)
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def drift_report(lines) -> dict:
    """Baseline angle before and after layout straightening, and spread, over sampled lines."""
    raw, spreads = [], []
    after = []
    for line in lines:
        a, s = baseline_metrics(line.offsets)
        raw.append(abs(a))
        spreads.append(s)
        strokes, _ = straighten(line.offsets)
        slope, _, _ = baseline(strokes)
        after.append(abs(np.degrees(np.arctan(slope))))
    return {"baseline_angle_raw_deg": float(np.mean(raw)), "baseline_angle_after_layout_deg": float(np.mean(after)),
            "baseline_spread_xheights": float(np.mean(spreads))}


def find_recognizer(path=None) -> Path | None:
    """The recogniser to judge legibility with: ``path`` if given (it must exist), else the
    shipped ``handsynth/weights/recognizer.pt`` if there is one, else None."""
    from .errors import HandsynthError
    from .recognizer import DEFAULT_RECOGNIZER

    if path:
        if not Path(path).exists():
            raise HandsynthError(f"{path}: no such recogniser file (train one with `handsynth recognizer`)")
        return Path(path)
    return DEFAULT_RECOGNIZER if DEFAULT_RECOGNIZER.exists() else None


def legibility(rec, generated: dict, real_offsets: list, real_texts: list) -> dict:
    """Character error rates of a recogniser: on the generated lines of each style (``generated``
    maps a style name to its lines) and overall, and on the real lines of the same texts."""
    from .recognizer import cer, recognize

    per_style, hyps, refs = {}, [], []
    for name, lines in generated.items():
        h = recognize(rec, [line.offsets for line in lines])
        r = [line.text for line in lines]
        per_style[name] = cer(h, r) if r else float("nan")
        hyps += h
        refs += r
    real_hyps = recognize(rec, real_offsets)
    known = [c for c in per_style.values() if c == c]
    return {"cer_generated": cer(hyps, refs), "cer_real": cer(real_hyps, real_texts),
            "cer_generated_per_style": per_style,
            "style_gap": max(known) - min(known) if known else float("nan"),  # worst style - best style
            "examples": [{"text": r, "read_generated": h} for h, r in list(zip(hyps, refs))[:5]],
            "examples_real": [{"text": r, "read": h} for h, r in list(zip(real_hyps, real_texts))[:5]]}


def run_report(model=None, iam=None, out="eval", texts=200, bias=SamplingOptions.bias, seed=0, recognizer=None,
               progress=True) -> dict:
    """The ``handsynth eval`` report (JSON + Markdown + a sample sheet) in ``out``."""
    import handsynth
    from .data.corpus import load_corpus
    from .errors import HandsynthError

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hw = handsynth.load_model(model)
    rec_path = find_recognizer(recognizer)
    t0 = time.time()
    report: dict = {"model": str(hw.path), "bias": bias, "seed": seed, "texts": texts,
                    "sampling": {"bias": bias, "seed": seed, "steps_per_char": SamplingOptions.steps_per_char,
                                 "finish_stroke": SamplingOptions.finish_stroke, "bf16": use_bf16(SamplingOptions.bf16),
                                 "resampled_like_write": True},
                    "recognizer": str(rec_path) if rec_path else None}
    if iam is None:
        raise HandsynthError("eval needs --iam PATH (held-out texts and real lines come from IAM-OnDB)")
    corpus = load_corpus(iam, progress=progress)
    report["validation_nll_per_line"] = validation_nll(hw.model, corpus, hw.alphabet, hw.mean, hw.std)
    test = [i for i in corpus.indices("test") if all(c in hw.alphabet for c in corpus.texts[i])]
    pick = [test[k] for k in np.random.default_rng(seed).permutation(len(test))[:texts]]
    if not pick:
        raise HandsynthError(f"{iam}: no test-form lines the model can write; eval needs held-out test forms")
    chosen = [corpus.texts[i] for i in pick]
    rec = None
    if rec_path is not None:  # checked before the slow part
        from .recognizer import load_recognizer
        rec = load_recognizer(rec_path)
        seen = set(rec.meta.get("train_forms", ())) & {corpus.form_ids[i] for i in pick}
        if seen:
            raise HandsynthError(f"{rec_path}: the recogniser was trained on {len(seen)} of the held-out test "
                                 "forms, so its CER would flatter; retrain it with `handsynth recognizer`")
    styles = [None] + [s.id for s in handsynth.available_styles() if can_prime(hw, s)]
    report["styles_skipped"] = [s.id for s in handsynth.available_styles() if s.id not in styles]
    per_style = {}
    all_lines = []
    style_lines = {}
    for k, st in enumerate(styles):
        mine = chosen[k::len(styles)]
        if not mine:  # fewer texts than styles
            continue
        lines = []
        for s in range(0, len(mine), 16):
            # as `write` samples: implausible lines (stalled, a far too wide word) are resampled
            lines += hw.lines(mine[s:s + 16], style=st, options=SamplingOptions(bias=bias, seed=seed),
                              line_seeds=list(range(s, s + len(mine[s:s + 16]))), return_phi=True, resample=True)
        all_lines += lines
        style_lines[st or "none"] = lines
        per_style[st or "none"] = {"texts": len(mine),
                                   "completion": float(np.mean([completed(line) for line in lines]))}
    real_lifts = float(np.mean([pen_lifts_per_char(corpus.offsets[i], corpus.texts[i]) for i in pick]))
    report.update(completion=float(np.mean([completed(line) for line in all_lines])),
                  pen_lifts_per_char=float(np.mean([pen_lifts_per_char(line.offsets, line.text) for line in all_lines])),
                  pen_lifts_per_char_real=real_lifts, per_style=per_style, **drift_report(all_lines))
    real_drift = [abs(baseline_metrics(corpus.offsets[i])[0]) for i in pick]
    report["baseline_angle_real_deg"] = float(np.mean(real_drift))
    if rec is None:
        report["legibility"] = "no recogniser available"
    else:
        report["legibility"] = legibility(rec, {k: v for k, v in style_lines.items() if v},
                                          [corpus.offsets[i] for i in pick], chosen)
        report["legibility"]["recognizer_step"] = rec.meta.get("step")
        for name, c in report["legibility"]["cer_generated_per_style"].items():
            per_style[name]["cer"] = c
    sheet_text = "The quick brown fox jumps over the lazy dog."
    if not all(c in hw.alphabet for c in sheet_text):  # a model trained on other data
        sheet_text = chosen[0]
    style_sheet(hw, sheet_text, out / "sheet.png", bias=bias, seed=seed)
    report["seconds"] = round(time.time() - t0, 1)
    report["headline"] = {k: report[k] for k in ("validation_nll_per_line", "completion",
                                                 "baseline_angle_after_layout_deg", "baseline_spread_xheights",
                                                 "pen_lifts_per_char", "pen_lifts_per_char_real")}
    if isinstance(report["legibility"], dict):
        report["headline"].update(legibility_cer=report["legibility"]["cer_generated"],
                                  legibility_cer_real=report["legibility"]["cer_real"])
    else:
        report["headline"]["legibility"] = report["legibility"]
    write_atomic(out / "report.json", json.dumps(report, indent=1).encode())
    md = ["# handsynth evaluation", "", f"model `{report['model']}`, bias {bias}, seed {seed}, {len(chosen)} held-out "
          "test-form texts split round-robin over the styles", "", "| metric | value |", "| --- | --- |"]
    md += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in report["headline"].items()]
    md += ["", "| style | texts | completion | legibility CER |", "| --- | --- | --- | --- |"]
    md += [f"| {k} | {v['texts']} | {v['completion']:.2f} | " + (f"{v['cer']:.3f} |" if "cer" in v else "- |")
           for k, v in per_style.items()]
    md += ["", f"legibility judge: `{rec_path}`; CER is read by the recogniser on the generated lines and on the "
           "real test-form lines of the same texts" if rec_path else "legibility: no recogniser available"]
    if report["styles_skipped"]:
        md += ["", "styles skipped (the model cannot write their priming text): " + ", ".join(report["styles_skipped"])]
    md += ["", "![sample sheet](sheet.png)", ""]
    write_atomic(out / "report.md", "\n".join(md).encode())
    return report
