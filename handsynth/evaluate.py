"""Quality metrics and pictures: training snapshots (a sample line and the attention plot),
style sheets, baseline drift, completion, pen lifts, and the ``handsynth eval`` report."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .checkpoint import write_atomic
from .errors import HandsynthError
from .hardware import use_bf16
from .layout import PageOptions, place, straighten
from .drawing import Drawing
from .render import Ink
from .sampling import SamplingOptions, sample_lines
from .strokes import baseline, offsets_to_strokes


# the likelihood of held-out lines -----------------------------------------------------------------
@torch.no_grad()
def validation_nll(model, corpus, alphabet, mean, std, max_len: int = 700, bf16: bool = False,
                   split: str = "validation", max_lines: int | None = None, keep=lambda i: True) -> float:
    """Mean negative log-likelihood per line, in nats (on standardised offsets), of a split's
    lines up to ``max_len`` pen steps (and ``keep(i)``), through the family's ``loss`` (any family)."""
    from .data.corpus import make_batch

    model.eval()
    idx = [i for i in corpus.indices(split) if len(corpus.offsets[i]) <= max_len and keep(i)]
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
    attention_plot(line.phi, text, Path(att_path), f"{model.alignment} ({len(line.offsets)} steps)")


def can_prime(hw, style) -> bool:
    """Whether the model knows every character of a style's priming text (a model trained on
    other data than the built-in styles' may not)."""

    try:
        hw.primer(style)
    except HandsynthError:
        return False
    return True


def style_sheet(hw, text: str, path, bias: float = SamplingOptions.bias, seed: int = 0, width: int = 1400) -> Path:
    """Every built-in style (and the unprimed model) writing ``text``, one row each, labelled."""

    from .styles import builtin_styles

    from .sampling import Group, checked_groups

    styles = [None] + [st for st in builtin_styles() if can_prime(hw, st)]
    text = hw.alphabet.normalize(text)
    opts = SamplingOptions(bias=bias, seed=seed)
    groups = [Group([text], [0], opts, hw.primer(st)) for st in styles]   # as write samples, in one batch
    got = checked_groups(hw.model, hw.alphabet, hw.mean, hw.std, groups)
    rows = []
    for st, lines in zip(styles, got):
        if isinstance(lines, BaseException):
            raise lines
        rows.append(("(model's own hand)" if st is None else f"{st.id}: {st.name}", text, lines[0].offsets))
    return lines_sheet(rows, path, width=width)


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


# the measures of what a reader sees (issue 13) --------------------------------------------------
def read_cer(hyps: list[str], refs: list[str]) -> dict:
    """CER overall and charged to character classes (``measures.cer_by_class``)."""
    from .measures import cer, cer_by_class

    by_class = cer_by_class(hyps, refs)
    return {"cer": cer(hyps, refs), "by_class": {k: v["cer"] for k, v in by_class.items()},
            "chars_by_class": {k: v["chars"] for k, v in by_class.items()}}


def judge_lines(offsets: list) -> list[str]:
    """Tesseract's readings of lines of offsets, rendered plainly (``judge.render_offsets_png``)."""
    from . import judge

    return judge.read_lines([judge.render_offsets_png(o) for o in offsets])


def judge_fonts(texts: list[str]) -> dict:
    """Tesseract's CER on ``texts`` set in each installed handwriting font and the print font."""
    from . import judge

    out = {}
    for name, path in judge.find_fonts().items():
        hyps = judge.read_lines([judge.render_font_png(t, path) for t in texts])
        out[name] = read_cer(hyps, texts)
    return out


def word_baseline_spread(line) -> float:
    """Spread (standard deviation, x-heights) of the words' own baselines around the line's
    fitted baseline, before layout straightens the line; the words' spans come from the
    alignment (``line.phi``) as in ``sampling.word_widths``. NaN for fewer than two words."""
    if line.phi is None or not len(line.offsets):
        return float("nan")
    pts = np.cumsum(line.offsets[:, :2], 0)
    slope, icpt, _ = baseline(offsets_to_strokes(line.offsets))
    focus = line.phi[:, :len(line.text)].argmax(1)
    lows, start = [], 0
    for word in line.text.split(" "):
        span = np.flatnonzero((focus >= start) & (focus < start + len(word)))
        if len(span) >= 4:
            p = pts[span]
            lows.append(np.percentile(p[:, 1] - (slope * p[:, 0] + icpt), 10))
        start += len(word) + 1
    return float(np.std(lows)) if len(lows) >= 2 else float("nan")


def _median(values) -> float:
    v = np.asarray([x for x in values if x == x and np.isfinite(x)], np.float64)
    return float(np.median(v)) if len(v) else float("nan")


def drift_measures(by_style: dict, real: list) -> dict:
    """Size and baseline drift of generated lines (as the model wrote them, before layout) next
    to real lines: the median size ratio of a line's last third to its first
    (``measures.size_ratio_last_first``), the mean spread of body height between the lines of a
    page (``measures.page_line_height_spread``; generated: each style's lines in pages of 10 as
    written; real: the lines of one form, one writer) and the median per-word baseline spread.
    ``by_style`` maps a style to its generated lines, ``real`` holds the real lines by form."""
    from .measures import page_line_height_spread, size_ratio_last_first

    lines = [line for ls in by_style.values() for line in ls]
    offs = [[line.offsets for line in ls] for ls in by_style.values()]
    pages = [o[i:i + 10] for o in offs for i in range(0, len(o), 10) if len(o[i:i + 10]) >= 3]
    real_pages = [p for p in real if len(p) >= 3]
    return {"size_ratio_last_first": _median(size_ratio_last_first(line.offsets) for line in lines),
            "size_ratio_last_first_real": _median(size_ratio_last_first(o) for p in real for o in p),
            "page_line_height_spread": _median(page_line_height_spread(p) for p in pages),
            "page_line_height_spread_real": _median(page_line_height_spread(p) for p in real_pages),
            "word_baseline_spread_xheights": _median(word_baseline_spread(line) for line in lines)}


END_PUNCT = tuple('!?.,")')


def stray_measures(lines) -> dict:
    """Strokes after the last character (``measures.end_strays``) per 100 lines, overall and
    for texts ending in ``! ? . , " )`` on their own."""
    from .measures import end_strays

    counts = [end_strays(line.offsets, line.phi, line.text) for line in lines]
    punct = [c for c, line in zip(counts, lines) if line.text.endswith(END_PUNCT)]
    return {"end_strays_per_100_lines": 100 * float(np.mean(counts)) if counts else float("nan"),
            "end_strays_per_100_lines_punct": 100 * float(np.mean(punct)) if punct else float("nan"),
            "lines_ending_in_punct": len(punct)}, counts


def style_fidelity(hw, corpus, n_forms: int = 40, bias: float = SamplingOptions.bias, seed: int = 0,
                   encoder=None) -> dict:
    """Writer retrieval by the contrastive style encoder (``style_encoder``), the protocol other
    systems report as style score. For ``n_forms`` held-out test forms (three or more lines the
    model can write): prime with the form's first line, write the text of its second, and rank
    the forms by the mean similarity of the output to each form's remaining real lines (the
    gallery). Next to it, the same ranking of the real second line (the ceiling) and of the
    unprimed model writing the same text (the floor); chance is 1 / n_forms. And interpretable
    features (``measures.style_features``): their correlation between primer and output across
    forms, for the output, the real second line and the unprimed output."""
    from .measures import style_features
    from .sampling import Primer, sample_checked
    from .style_encoder import embed, retrieval

    by_form: dict = {}
    for i in corpus.indices("test"):
        if all(c in hw.alphabet for c in corpus.texts[i]):
            by_form.setdefault(corpus.form_ids[i], []).append(i)
    forms = sorted(f for f, idx in by_form.items() if len(idx) >= 3)
    forms = [forms[k] for k in sorted(np.random.default_rng(seed).permutation(len(forms))[:n_forms])]
    if len(forms) < 2:
        return {"n_forms": len(forms), "note": "fewer than two held-out forms with three writable lines"}
    seen = set(encoder.meta.get("train_forms", ())) & set(forms)
    if seen:
        raise HandsynthError(f"the style encoder was trained on {len(seen)} of the held-out test forms; "
                             "retrain it with `handsynth style-encoder`")
    opts = SamplingOptions(bias=bias, seed=seed)
    primers, targets, gallery, gallery_forms, primed = [], [], [], [], []
    for k, f in enumerate(forms):
        idx = sorted(by_form[f], key=lambda i: corpus.line_ids[i])
        primers.append(idx[0])
        targets.append(idx[1])
        gallery += [corpus.offsets[i] for i in idx[2:]]
        gallery_forms += [f] * (len(idx) - 2)
        primer = Primer(corpus.offsets[idx[0]], corpus.texts[idx[0]])
        primed.append(sample_checked(hw.model, hw.alphabet, hw.mean, hw.std, [corpus.texts[idx[1]]], [k], opts,
                                     primer)[0])
    texts = [corpus.texts[i] for i in targets]
    unprimed = sample_checked(hw.model, hw.alphabet, hw.mean, hw.std, texts, list(range(len(texts))), opts, None)
    g_emb = embed(encoder, gallery)
    out = {"n_forms": len(forms), "chance_top1": 1 / len(forms), "gallery_lines": len(gallery)}
    queries = {"": [line.offsets for line in primed], "real_": [corpus.offsets[i] for i in targets],
               "unprimed_": [line.offsets for line in unprimed]}
    for name, offs in queries.items():
        r = retrieval(embed(encoder, offs), forms, g_emb, gallery_forms)
        out[f"{name}top1"], out[f"{name}top5"] = r["top1"], r["top5"]
    feats = {"primer": [style_features(corpus.offsets[i], corpus.texts[i]) for i in primers],
             "output": [style_features(line.offsets, line.text) for line in primed],
             "real": [style_features(corpus.offsets[i], corpus.texts[i]) for i in targets],
             "unprimed": [style_features(line.offsets, line.text) for line in unprimed]}
    corr = {}
    for key in feats["primer"][0]:
        a = np.array([f[key] for f in feats["primer"]], np.float64)
        corr[key] = {}
        for name in ("output", "real", "unprimed"):
            b = np.array([f[key] for f in feats[name]], np.float64)
            ok = np.isfinite(a) & np.isfinite(b)
            corr[key][name] = float(np.corrcoef(a[ok], b[ok])[0, 1]) if ok.sum() >= 3 and np.std(b[ok]) > 0 else float("nan")
    out["feature_correlation"] = corr
    out["_lines"] = (primed, texts)
    return out


def lines_sheet(rows: list, path, title: str = "", width: int = 1400) -> Path:
    """Lines (``(label, text, offsets)``) one under another, each labelled, under an optional
    title: the style sheet, and the worst lines of a measure."""
    from .render import _figure, page_transform

    opts = PageOptions(width=width, margin=40, x_height=20, line_pitch=3.6)
    pages = place([r[1] for r in rows], [r[2] for r in rows], opts, tight=True)
    page = pages[0]
    ink = Ink(stroke_width=2.0)
    fig = _figure(page, ink)
    at = page_transform(fig, page)
    if title:
        fig.text(6, 4, title, fontsize=8, color="#333", va="top", transform=at)
    for j, row in enumerate(rows[:len(page.lines)]):
        y = opts.margin + opts.x_height * (1.6 + j * opts.line_pitch) - 2.4 * opts.x_height
        fig.text(6, y + opts.x_height * 0.2, row[0], fontsize=7, color="#a33", va="top", transform=at)
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ink.dpi)
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def find_recognizer(path=None) -> Path | None:
    """The recogniser to judge legibility with: ``path`` if given (it must exist), else the
    shipped ``handsynth/weights/recognizer.pt`` if there is one, else None."""
    from .recognizer import DEFAULT_RECOGNIZER

    if path:
        if not Path(path).exists():
            raise HandsynthError(f"{path}: no such recogniser file (train one with `handsynth recognizer`)")
        return Path(path)
    return DEFAULT_RECOGNIZER if DEFAULT_RECOGNIZER.exists() else None


def legibility(rec, generated: dict, real_offsets: list, real_texts: list) -> dict:
    """Character error rates of a recogniser: on the generated lines of each style (``generated``
    maps a style name to its lines) and overall, and on the real lines of the same texts."""
    from .measures import cer
    from .recognizer import recognize

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
            "examples_real": [{"text": r, "read": h} for h, r in list(zip(real_hyps, real_texts))[:5]],
            "_hyps": hyps}   # the readings, in the order of ``generated`` (popped by run_report)


QUICK = dict(texts=26, hard=13, forms=10, nll_lines=120)   # ``--quick``: a few minutes, for development


def _sample_sets(hw, styles, sets: dict, bias: float, seed: int, proofread: bool = True) -> dict:
    """Each text set's texts split round-robin over the styles and sampled as ``write`` samples
    them (implausible lines resampled, misread ones written again with ``proofread``): set ->
    style -> lines."""
    out = {}
    for name, texts in sets.items():
        out[name] = {}
        for k, st in enumerate(styles):
            mine = texts[k::len(styles)]
            lines = []
            for s in range(0, len(mine), 16):
                lines += hw.lines(mine[s:s + 16], style=st, options=SamplingOptions(bias=bias, seed=seed, proofread=proofread),
                                  line_seeds=list(range(s, s + len(mine[s:s + 16]))), return_phi=True, resample=True)
            if lines:
                out[name][st or "none"] = lines
    return out


def run_report(model=None, iam=None, out="eval", texts=200, bias=SamplingOptions.bias, seed=0, recognizer=None,
               progress=True, quick=False, hard=None, forms=40, judge=True, style_encoder=None,
               hard_alphabet: str | None = None, proofread: bool = True) -> dict:
    """The ``handsynth eval`` report (JSON + Markdown + sheets) in ``out``: on held-out IAM-OnDB
    texts and on the hard-text set (``measures.load_hard_texts``; ``hard`` of them, default all),
    never mixed: completion, pen lifts, CER overall and by character class by our recogniser and
    by Tesseract (``judge``) next to Tesseract on real lines, handwriting fonts and a print font,
    baseline and size drift, end-of-line strays, and writer retrieval over ``forms`` held-out
    forms (``style_fidelity``). ``quick``: the ``QUICK`` sizes. ``hard_alphabet``: only the hard
    texts these characters can write too (to compare a model with a larger alphabet on the texts
    another one writes). ``proofread``: as ``write`` writes by default, the recogniser reading
    each line and a misread one written again; our recogniser's CER then flatters (it chose),
    and Tesseract is the independent reader."""
    import handsynth
    from . import judge as tesseract
    from .data.corpus import load_corpus
    from .measures import load_hard_texts

    if quick:
        texts, hard, forms = min(texts, QUICK["texts"]), min(hard or QUICK["hard"], QUICK["hard"]), min(forms, QUICK["forms"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hw = handsynth.load_model(model)
    rec_path = find_recognizer(recognizer)
    t0 = time.time()
    report: dict = {"model": str(hw.path), "bias": bias, "seed": seed, "texts": texts, "quick": bool(quick),
                    "sampling": {"bias": bias, "seed": seed, "steps_per_char": SamplingOptions.steps_per_char,
                                 "finish_stroke": SamplingOptions.finish_stroke, "bf16": use_bf16(SamplingOptions.bf16),
                                 "resampled_like_write": True, "proofread": bool(proofread)},
                    "recognizer": str(rec_path) if rec_path else None}
    if iam is None:
        raise HandsynthError("eval needs --iam PATH (held-out texts and real lines come from IAM-OnDB)")
    corpus = load_corpus(iam, progress=progress)
    report["validation_nll_per_line"] = validation_nll(hw.model, corpus, hw.alphabet, hw.mean, hw.std,
                                                       max_lines=QUICK["nll_lines"] if quick else None)
    test = [i for i in corpus.indices("test") if all(c in hw.alphabet for c in corpus.texts[i])]
    pick = [test[k] for k in np.random.default_rng(seed).permutation(len(test))[:texts]]
    if not pick:
        raise HandsynthError(f"{iam}: no test-form lines the model can write; eval needs held-out test forms")
    chosen = [corpus.texts[i] for i in pick]
    chars = hw.alphabet.chars if hard_alphabet is None else "".join(set(hw.alphabet.chars) & set(hard_alphabet))
    hard_texts = load_hard_texts(chars)[:hard]
    report["hard_texts"] = len(hard_texts)
    rec = None
    if rec_path is not None:  # checked before the slow part
        from .recognizer import load_recognizer
        rec = load_recognizer(rec_path)
        seen = set(rec.meta.get("train_forms", ())) & {corpus.form_ids[i] for i in pick}
        if seen:
            raise HandsynthError(f"{rec_path}: the recogniser was trained on {len(seen)} of the held-out test "
                                 "forms, so its CER would flatter; retrain it with `handsynth recognizer`")
    encoder = None
    if forms:
        from .style_encoder import DEFAULT_STYLE_ENCODER, load_style_encoder
        enc_path = Path(style_encoder) if style_encoder else DEFAULT_STYLE_ENCODER
        encoder = load_style_encoder(enc_path) if style_encoder or enc_path.exists() else None
    styles = [None] + [s.id for s in handsynth.available_styles() if can_prime(hw, s)]
    report["styles_skipped"] = [s.id for s in handsynth.available_styles() if s.id not in styles]
    say = print if progress else (lambda *a, **k: None)
    say(f"eval: sampling {len(chosen)} held-out and {len(hard_texts)} hard texts over {len(styles)} styles")
    sampled = _sample_sets(hw, styles, {"iam": chosen, "hard": hard_texts}, bias, seed, proofread)
    style_lines = sampled["iam"]
    all_lines = [line for ls in style_lines.values() for line in ls]
    hard_lines = [line for ls in sampled["hard"].values() for line in ls]
    per_style = {name: {"texts": len(ls), "completion": float(np.mean([completed(line) for line in ls]))}
                 for name, ls in style_lines.items()}
    real_lifts = float(np.mean([pen_lifts_per_char(corpus.offsets[i], corpus.texts[i]) for i in pick]))
    report.update(completion=float(np.mean([completed(line) for line in all_lines])),
                  completion_hard=float(np.mean([completed(line) for line in hard_lines])) if hard_lines else float("nan"),
                  pen_lifts_per_char=float(np.mean([pen_lifts_per_char(line.offsets, line.text) for line in all_lines])),
                  pen_lifts_per_char_real=real_lifts, per_style=per_style, **drift_report(all_lines))
    real_drift = [abs(baseline_metrics(corpus.offsets[i])[0]) for i in pick]
    report["baseline_angle_real_deg"] = float(np.mean(real_drift))
    report["baseline_angle_before_layout_deg"] = report["baseline_angle_raw_deg"]
    report["baseline_angle_before_layout_real_deg"] = report["baseline_angle_real_deg"]
    # drift along a line and between the lines of a page, next to real lines (by form: one writer)
    real_by_form: dict = {}
    for i in pick:
        real_by_form.setdefault(corpus.form_ids[i], []).append(corpus.offsets[i])
    report.update(drift_measures(style_lines, list(real_by_form.values())))
    strays, stray_counts = stray_measures(all_lines)
    hard_strays, hard_counts = stray_measures(hard_lines) if hard_lines else ({}, [])
    report.update(strays)
    report["end_strays_hard"] = hard_strays
    # legibility: our recogniser, and Tesseract on the same lines next to its references
    cer_by_class: dict = {"iam": {}, "hard": {}}
    reads: dict = {}
    if rec is None:
        report["legibility"] = "no recogniser available"
    else:
        from .recognizer import recognize
        report["legibility"] = legibility(rec, {k: v for k, v in style_lines.items() if v},
                                          [corpus.offsets[i] for i in pick], chosen)
        report["legibility"]["recognizer_step"] = rec.meta.get("step")
        for name, c in report["legibility"]["cer_generated_per_style"].items():
            per_style[name]["cer"] = c
        reads["recognizer"] = {"iam": report["legibility"].pop("_hyps"),
                               "hard": recognize(rec, [line.offsets for line in hard_lines])}
        cer_by_class["iam"]["recognizer"] = read_cer(reads["recognizer"]["iam"], [line.text for line in all_lines])
        cer_by_class["hard"]["recognizer"] = read_cer(reads["recognizer"]["hard"], [line.text for line in hard_lines])
        report["legibility"]["cer_hard"] = cer_by_class["hard"]["recognizer"]["cer"]
    if judge and tesseract.available():
        say(f"eval: Tesseract reading {len(all_lines) + len(hard_lines) + len(pick)} lines and the fonts")
        reads["tesseract"] = {"iam": judge_lines([line.offsets for line in all_lines]),
                              "hard": judge_lines([line.offsets for line in hard_lines])}
        real_reads = judge_lines([corpus.offsets[i] for i in pick])
        for name in ("iam", "hard"):
            lines = all_lines if name == "iam" else hard_lines
            cer_by_class[name]["tesseract"] = read_cer(reads["tesseract"][name], [line.text for line in lines])
        cer_by_class["iam"]["tesseract_real"] = read_cer(real_reads, chosen)
        fonts = {"iam": judge_fonts(chosen), "hard": judge_fonts(hard_texts)}
        report["judge"] = {
            "reader": "tesseract --oem 1 --psm 7 -l eng", "generated": cer_by_class["iam"]["tesseract"]["cer"],
            "real": cer_by_class["iam"]["tesseract_real"]["cer"],
            "generated_hard": cer_by_class["hard"]["tesseract"]["cer"],
            "print": fonts["iam"].get(tesseract.PRINT_FONT, {}).get("cer"),
            "print_hard": fonts["hard"].get(tesseract.PRINT_FONT, {}).get("cer"),
            "fonts": {f: fonts["iam"][f]["cer"] for f in tesseract.HANDWRITING_FONTS if f in fonts["iam"]},
            "fonts_hard": {f: fonts["hard"][f]["cer"] for f in tesseract.HANDWRITING_FONTS if f in fonts["hard"]},
            "fonts_by_class": {s: {f: v["by_class"] for f, v in fonts[s].items()} for s in fonts}}
    else:
        report["judge"] = "Tesseract not available (install tesseract-ocr)" if judge else "not run"
    report["cer_by_class"] = cer_by_class
    fidelity = style_fidelity(hw, corpus, forms, bias, seed, encoder) if encoder is not None and forms else None
    if fidelity is not None:
        fidelity.pop("_lines", None)
    report["style_retrieval"] = fidelity if fidelity is not None else "no style encoder available"
    sheet_text = "The quick brown fox jumps over the lazy dog."
    if not all(c in hw.alphabet for c in sheet_text):  # a model trained on other data
        sheet_text = chosen[0]
    style_sheet(hw, sheet_text, out / "sheet.png", bias=bias, seed=seed)
    report["sheets"] = _worst_sheets(out, all_lines, hard_lines, reads, stray_counts, hard_counts)
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
    write_atomic(out / "report.md", _markdown(report, rec_path, len(chosen)).encode())
    return report


def _worst_sheets(out: Path, lines, hard_lines, reads: dict, strays, hard_strays, k: int = 8) -> dict:
    """Sheets of the worst lines for each measure (what the numbers point at), in ``out``."""
    from .measures import cer, size_ratio_last_first

    sheets = {}

    def sheet(name, scored, title):
        rows = [r for _, r in sorted(scored, key=lambda x: -x[0])[:k]]
        if rows:
            sheets[name] = lines_sheet(rows, out / f"worst-{name}.png", title).name

    for reader, by_set in reads.items():
        for set_name, hyps in by_set.items():
            ls = lines if set_name == "iam" else hard_lines
            sheet(f"{reader}-{set_name}", [(cer([h], [ln.text]), (f"read: {h!r}", ln.text, ln.offsets))
                                            for h, ln in zip(hyps, ls)],
                  f"worst CER by {reader}, {set_name} texts")
    sizes = [(size_ratio_last_first(ln.offsets), ln) for ln in lines]
    sheet("size", [(-r, (f"size last/first third {r:.2f}", ln.text, ln.offsets)) for r, ln in sizes if r == r],
          "smallest size ratio of the last third to the first")
    sheet("strays", [(c, (f"{c} stray stroke(s)", ln.text, ln.offsets)) for c, ln in
                     zip(list(strays) + list(hard_strays), list(lines) + list(hard_lines)) if c],
          "strokes after the last character")
    angles = [(abs(baseline_metrics(ln.offsets)[0]), ln) for ln in lines]
    sheet("baseline", [(a, (f"baseline {a:.1f} deg before layout", ln.text, ln.offsets)) for a, ln in angles],
          "steepest baselines before layout (pictures after layout)")
    return sheets


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


def _markdown(report: dict, rec_path, n_texts: int) -> str:
    """``report.md``: the report's tables."""
    r = report
    md = ["# handsynth evaluation", "", f"model `{r['model']}`, bias {r['bias']}, seed {r['seed']}, {n_texts} held-out "
          f"test-form texts and {r['hard_texts']} hard texts, each set split round-robin over the styles"
          + (" (quick run)" if r["quick"] else ""), "", "| metric | value |", "| --- | --- |"]
    md += [f"| {k} | {_fmt(v)} |" for k, v in r["headline"].items()]
    md += ["", "## Legibility by character class", "",
           "CER by reader and text set (errors charged to the reference character's class)."
           + (" The lines were proofread, as `write` writes them: our recogniser chose between two writings of "
              "each line it misread, so its CER flatters; Tesseract is the independent reader."
              if r["sampling"].get("proofread") else " Without the proofreading pass."), ""]
    classes = ["all", "lowercase", "capitals", "digits", "punctuation", "symbols"]
    md += ["| text set | reader | " + " | ".join(classes) + " |", "|" + " --- |" * (len(classes) + 2)]
    for set_name, readers in r["cer_by_class"].items():
        for reader, v in readers.items():
            md.append(f"| {set_name} | {reader} | {_fmt(v['cer'])} | "
                      + " | ".join(_fmt(v["by_class"].get(c)) for c in classes[1:]) + " |")
    j = r["judge"]
    md += ["", "## The independent judge (Tesseract)", ""]
    if isinstance(j, dict):
        md += ["| lines | held-out texts | hard texts |", "| --- | --- | --- |",
               f"| generated | {_fmt(j['generated'])} | {_fmt(j['generated_hard'])} |",
               f"| real held-out lines | {_fmt(j['real'])} | - |",
               f"| print font | {_fmt(j['print'])} | {_fmt(j['print_hard'])} |"]
        md += [f"| font {f} | {_fmt(v)} | {_fmt(j['fonts_hard'].get(f))} |" for f, v in j["fonts"].items()]
    else:
        md.append(str(j))
    md += ["", "## Drift and strays (before layout)", "", "| measure | generated | real lines |", "| --- | --- | --- |",
           f"| baseline angle, mean absolute (deg) | {_fmt(r['baseline_angle_before_layout_deg'])} | "
           f"{_fmt(r['baseline_angle_before_layout_real_deg'])} |",
           f"| per-word baseline spread, median (x-heights) | {_fmt(r['word_baseline_spread_xheights'])} | - |",
           f"| size ratio last / first third, median | {_fmt(r['size_ratio_last_first'])} | "
           f"{_fmt(r['size_ratio_last_first_real'])} |",
           f"| body-height spread between a page's lines (CV), median | {_fmt(r['page_line_height_spread'])} | "
           f"{_fmt(r['page_line_height_spread_real'])} |",
           f"| end-of-line strays per 100 lines | {_fmt(r['end_strays_per_100_lines'])} | - |",
           f"| ... texts ending in ! ? . , \" ) ({r['lines_ending_in_punct']} lines) | "
           f"{_fmt(r['end_strays_per_100_lines_punct'])} | - |",
           f"| ... hard texts | {_fmt(r['end_strays_hard'].get('end_strays_per_100_lines'))} | - |"]
    sr = r["style_retrieval"]
    md += ["", "## Style fidelity (writer retrieval)", ""]
    if isinstance(sr, dict) and "top1" in sr:
        md += [f"{sr['n_forms']} held-out forms (chance top-1 {sr['chance_top1']:.3f}); primed with a form's first "
               "line, writing its second line's text, ranked among the forms by their other real lines.", "",
               "| query | top-1 | top-5 |", "| --- | --- | --- |",
               f"| primed output | {_fmt(sr['top1'])} | {_fmt(sr['top5'])} |",
               f"| real second line (ceiling) | {_fmt(sr['real_top1'])} | {_fmt(sr['real_top5'])} |",
               f"| unprimed output (floor) | {_fmt(sr['unprimed_top1'])} | {_fmt(sr['unprimed_top5'])} |", "",
               "Correlation of style features between primer and line, across forms:", "",
               "| feature | primed output | real second line | unprimed |", "| --- | --- | --- | --- |"]
        md += [f"| {k} | {_fmt(v['output'])} | {_fmt(v['real'])} | {_fmt(v['unprimed'])} |"
               for k, v in sr["feature_correlation"].items()]
    else:
        md.append(str(sr))
    md += ["", "| style | texts | completion | legibility CER |", "| --- | --- | --- | --- |"]
    md += [f"| {k} | {v['texts']} | {v['completion']:.2f} | " + (f"{v['cer']:.3f} |" if "cer" in v else "- |")
           for k, v in r["per_style"].items()]
    md += ["", f"legibility judge: `{rec_path}`; CER is read by the recogniser on the generated lines and on the "
           "real test-form lines of the same texts" if rec_path else "legibility: no recogniser available"]
    if r["styles_skipped"]:
        md += ["", "styles skipped (the model cannot write their priming text): " + ", ".join(r["styles_skipped"])]
    md += ["", "![sample sheet](sheet.png)", ""]
    md += [f"![{name}]({f})" for name, f in r["sheets"].items()] + [""]
    return "\n".join(md)
