"""The independent reader: Tesseract on font-set and handwritten lines (skipped without it)."""
import io

import numpy as np
import pytest

from handsynth import judge
from handsynth.measures import cer
from handsynth.strokes import strokes_to_offsets
from handsynth.styles import builtin_styles

needs_tesseract = pytest.mark.skipif(
    not judge.available(),
    reason="Tesseract is not installed: apt-get install tesseract-ocr (Debian; .ci/run does it)")

SENTENCES = ["The quick brown fox jumps over 12 lazy dogs.", "Meet me at 7:45 pm by the north gate.",
             "He switched on the table lamp, then left."]


def size(png: bytes) -> tuple[int, int]:
    from PIL import Image
    return Image.open(io.BytesIO(png)).size


def test_find_fonts_and_render():
    fonts = judge.find_fonts()
    assert judge.PRINT_FONT in fonts             # DejaVu Sans, at least matplotlib's copy
    png = judge.render_font_png("xxxx", fonts[judge.PRINT_FONT], x_height=40)
    w, h = size(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and h == pytest.approx(40 + 2 * judge.MARGIN, abs=3)
    style = builtin_styles()[0]
    w, h = size(judge.render_offsets_png(style.offsets(), x_height=40))
    assert 2 * judge.MARGIN + 40 < h < 2 * judge.MARGIN + 6 * 40 and w > 20 * 40


@needs_tesseract
def test_print_font_reads_perfectly():
    pngs = [judge.render_font_png(t, judge.find_fonts()[judge.PRINT_FONT]) for t in SENTENCES]
    assert cer(judge.read_lines(pngs), SENTENCES) <= 0.02
    assert judge.read_lines([]) == []


@needs_tesseract
def test_handwriting_fonts_are_read():
    fonts = {k: v for k, v in judge.find_fonts().items() if k in judge.HANDWRITING_FONTS}
    if not fonts:
        pytest.skip("no handwriting fonts: apt-get install fonts-dkg-handwriting fonts-femkeklaver fonts-breip")
    for name, path in fonts.items():
        hyps = judge.read_lines([judge.render_font_png(t, path) for t in SENTENCES])
        assert cer(hyps, SENTENCES) < 0.4, (name, hyps)     # measured 0.16 to 0.23


@needs_tesseract
def test_real_handwriting_is_read_and_scribble_is_not():
    styles = builtin_styles()[:6]
    refs = [s.text for s in styles]
    hyps = judge.read_lines([judge.render_offsets_png(s.offsets()) for s in styles])
    assert cer(hyps, refs) < 0.6, hyps                      # measured 0.40 on these six
    # random pen movement of the same length reads as nothing like the text
    rng = np.random.default_rng(0)
    zigzag = np.stack([0.1 * np.arange(400), rng.uniform(0, 1.5, 400)], 1)
    scribble = judge.read_lines([judge.render_offsets_png(strokes_to_offsets(np.split(zigzag, 8)))])
    assert cer(scribble, refs[:1]) > 0.8, scribble


@needs_tesseract
def test_a_clean_line_its_line_finder_rejects_is_read_as_a_raw_line():
    """A real IAM-OnDB test line that Tesseract's text-line mode reads as nothing (measured: 3 of
    120 test lines) is read all the same, as a raw line."""
    from pathlib import Path

    from handsynth.data.corpus import load_corpus
    iam = Path(__file__).resolve().parents[2] / "shared" / "data" / "iam-ondb"
    if not iam.exists():
        pytest.skip(f"{iam} not found")
    corpus = load_corpus(iam, progress=False)
    text = "to much more radical schemes for transferring"
    i = corpus.texts.index(text)
    png = judge.render_offsets_png(corpus.offsets[i])
    assert judge._tesseract(png, 7) == ""          # what it read before: nothing, 100% CER
    hyp = judge.read_line(png)
    assert cer([hyp], [text]) < 0.7, hyp             # measured 0.44 ("math mere tcl. ehaasr for bousfariy")
