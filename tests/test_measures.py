"""Measures on inputs with known answers: CER by class, size drift, strays, style features."""
import numpy as np
import pytest

from handsynth import measures as m
from handsynth.strokes import offsets_to_strokes, strokes_to_offsets


def loops(x0, x1, height=lambda x: np.ones_like(x), period=0.6, step=0.05, y0=0.0):
    """One stroke of cursive-like loops from x0 to x1 sitting on y = y0, the height varying
    along x as ``height(x)``."""
    x = np.arange(x0, x1, step)
    return np.stack([x, y0 + height(x) * (1 - np.cos(2 * np.pi * (x - x0) / period)) / 2], 1)


def line_of_words(height=lambda x: np.ones_like(x), words=8, width=3.5, gap=0.7):
    return strokes_to_offsets([loops(i * (width + gap), i * (width + gap) + width, height)
                               for i in range(words)])


def square_wave(n, width=0.5, height=1.0, step=0.05, tall_every=0):
    """Upright stems joined along the top and bottom (an 'nnnn'), densely sampled; with
    ``tall_every``, every such up-stem rises to 2.5 x the height (an ascender)."""
    pts, x, y = [], 0.0, 0.0
    for k in range(n):
        top = 2.5 * height if tall_every and k % tall_every == 0 else height
        target = top if k % 2 == 0 else 0.0
        ys = np.arange(y, target, step if target > y else -step)
        pts.append(np.stack([np.full_like(ys, x), ys], 1))
        xs = np.arange(x, x + width, step)
        pts.append(np.stack([xs, np.full_like(xs, target)], 1))
        x, y = x + width, target
    return np.concatenate(pts)


def test_char_class():
    assert [m.char_class(c) for c in "aZ7 .&"] == ["lowercase", "capitals", "digits", "space",
                                                   "punctuation", "symbols"]
    assert {m.char_class(c) for c in ".,;:!?'\"()-"} == {"punctuation"}
    assert {m.char_class(c) for c in "$%&@#/=+*<>"} == {"symbols"}


def test_cer_and_by_class():
    assert m.cer(["QUCCC"], ["QUICK"]) == pytest.approx(2 / 5)
    assert m.cer(["abc", ""], ["abc", "de"]) == pytest.approx(2 / 5)
    by = m.cer_by_class(["1? lazyologs"], ["12 lazy dogs"])
    assert by["digits"] == {"cer": 0.5, "chars": 2, "errors": 1.0}
    assert by["space"]["errors"] == 1 and by["lowercase"]["errors"] == 1 and by["lowercase"]["chars"] == 8
    assert "capitals" not in by
    # "Maria!" -> "Maia!!": the dropped r is lowercase, the extra "!" punctuation
    by = m.cer_by_class(["Maia!!"], ["Maria!"])
    assert by["lowercase"]["errors"] == 1 and by["punctuation"] == {"cer": 1.0, "chars": 1, "errors": 1.0}
    assert by["capitals"]["errors"] == 0
    # the classes' errors add up to the edits cer counts
    hyps, refs = ["Tom & Jery, 5O% off", "at 7.45 PM"], ["Tom & Jerry, 50% off", "at 7:45 pm"]
    by = m.cer_by_class(hyps, refs)
    assert sum(v["errors"] for v in by.values()) == pytest.approx(m.cer(hyps, refs) * sum(map(len, refs)))
    assert by["symbols"]["chars"] == 2 and by["capitals"]["chars"] == 2


def test_hard_texts():
    texts = m.load_hard_texts()
    assert 60 <= len(texts) <= 80 and max(map(len, texts)) <= 60
    assert all(32 <= ord(c) < 127 for t in texts for c in t)
    classes = {m.char_class(c) for t in texts for c in t}
    assert classes == set(m.CLASSES)
    plain = m.load_hard_texts(alphabet="abcdefghijklmnopqrstuvwxyz")
    assert "uncharacteristically" in plain and all(t.islower() for t in plain)


def test_size_ratio():
    steady = line_of_words()
    assert m.size_ratio_last_first(steady) == pytest.approx(1.0, abs=0.03)
    # height falls linearly from 1 to 0.5 across the line: the thirds' middles are at 11/12
    # and 7/12 of the start size
    x_end = 8 * 4.2 - 0.7
    halving = line_of_words(lambda x: 1 - 0.5 * x / x_end)
    assert m.size_ratio_last_first(halving) == pytest.approx(7 / 11, abs=0.04)
    # a step: full size in the first third, half size in the last
    step = line_of_words(lambda x: np.where(x < x_end / 3, 1.0, np.where(x < 2 * x_end / 3, 0.75, 0.5)))
    assert m.size_ratio_last_first(step) == pytest.approx(0.5, abs=0.03)
    # a rotated line (baseline at 5 degrees) is measured the same
    a = np.radians(5)
    rot = strokes_to_offsets([s @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
                              for s in offsets_to_strokes(halving)])
    assert m.size_ratio_last_first(rot) == pytest.approx(7 / 11, abs=0.04)


def test_size_trend():
    x_end = 8 * 4.2 - 0.7
    b, x0 = m.size_trend(line_of_words())
    assert abs(b) < 0.003
    # height falling from 1 to 0.5 across the line: log height falls by about log 2 over its width
    b, x0 = m.size_trend(line_of_words(lambda x: 2 ** (-x / x_end)))
    assert b * x_end == pytest.approx(-np.log(2), rel=0.1)
    assert x0 == pytest.approx(x_end / 2, rel=0.1)
    # ascender-like tall tops among the body's do not tilt it, and too little writing has no trend
    tall = square_wave(120, tall_every=5)
    assert abs(m.size_trend(strokes_to_offsets([tall]))[0]) < 0.003
    assert m.size_trend(line_of_words(words=1, width=1.0)) is None


def test_body_height_of_a_word_of_mostly_tall_letters():
    """A short line whose tops are mostly ascenders ("Elizabeth") has the x-height of a long
    line of the same letters: the ascenders' tops are set apart from the x-height's."""
    for n in (12, 16, 40):
        tall = strokes_to_offsets([square_wave(n, tall_every=4)])   # half the tops 2.5 x as high
        assert m.body_height(tall) == pytest.approx(1.0, abs=0.06), n
    mostly = strokes_to_offsets([np.concatenate([square_wave(4, height=2.5), square_wave(4) + [2.0, 0]])
                                 + [0.0, 0.0]])   # 2 tall tops of 2.5, 2 short
    assert m.body_height(mostly) < 1.2
    assert m.body_height(strokes_to_offsets([square_wave(12, height=2.5)])) == pytest.approx(2.5, abs=0.1)   # all capitals


def test_page_line_height_spread():
    lines = [line_of_words(lambda x, h=h: np.full_like(x, h)) for h in (0.5, 1.0, 1.5)]
    assert m.page_line_height_spread(lines) == pytest.approx(np.std([0.5, 1, 1.5]) / 1.0, rel=0.05)
    assert m.page_line_height_spread(lines[1:2] * 3) == pytest.approx(0.0, abs=1e-6)
    assert m.body_height(lines[2]) / m.body_height(lines[0]) == pytest.approx(3.0, rel=0.02)


def glyph_line(strokes, focus, text):
    """Offsets of the strokes and one-hot window weights over ``text`` (and "after the end")
    focused on ``focus[k]`` during stroke k."""
    off = strokes_to_offsets(strokes)
    idx = np.concatenate([[f] * len(s) for s, f in zip(strokes, focus)])
    phi = np.zeros((len(off), len(text) + 1), np.float32)
    phi[np.arange(len(off)), idx] = 1.0
    return m.end_strays(off, phi, text)


def test_end_strays():
    tea = [loops(0, 0.9), loops(1.2, 2.1), loops(2.4, 3.3)]         # t, e, a written apart
    assert glyph_line(tea, [0, 1, 2], "tea") == 0
    assert glyph_line(tea + [loops(3.8, 4.6)], [0, 1, 2, 3], "tea") == 1   # a stroke after the a
    assert glyph_line(tea + [loops(3.8, 4.6)], [0, 1, 2, 2], "tea") == 1   # ... window still on a
    # "hi" with the i's dot put on after the window passed the end: not a stray
    dot = np.array([[1.55, 1.5], [1.57, 1.52]])
    assert glyph_line([loops(0, 0.9), loops(1.3, 1.8), dot], [0, 1, 2], "hi") == 0
    # writing over the end after the window passed it: a tall stroke over the last letters is a
    # stray; a last letter the pen finishes to the right after the window passed the end is not
    over = np.stack([np.linspace(2.2, 2.9, 20), np.linspace(0.0, 1.5, 20)], 1)
    assert glyph_line(tea + [over], [0, 1, 2, 3], "tea") == 1
    late_s = np.stack([np.linspace(3.2, 3.9, 20), 0.9 * np.abs(np.sin(np.linspace(0, 3, 20)))], 1)
    assert glyph_line(tea + [late_s], [0, 1, 2, 3], "tea") == 0
    # "ab!" and "ab!!": a second exclamation mark while the window still sits on the "!"
    stem = lambda x: np.stack([np.full(20, x), np.linspace(1.8, 0.5, 20)], 1)
    bang = lambda x: [stem(x), np.array([[x, 0.05], [x + 0.02, 0.0]])]
    ab = loops(0, 2.0)
    assert glyph_line([ab, *bang(2.4)], [1, 2, 2], "ab!") == 0
    assert glyph_line([ab, *bang(2.4), *bang(2.8)], [1, 2, 2, 2, 3], "ab!") == 1
    # a closing '"' has two ticks side by side
    assert glyph_line([ab, stem(2.4)[:8], stem(2.6)[:8]], [1, 2, 2], 'ab"') == 0
    assert glyph_line([ab, stem(2.4)[:8], stem(2.6)[:8], stem(2.8)[:8]], [1, 2, 2, 2], 'ab"') == 1
    with pytest.raises(ValueError):
        m.end_strays(strokes_to_offsets([ab]), np.zeros((5, 3)), "ab")


def test_style_features():
    line = strokes_to_offsets([square_wave(12), square_wave(12) + [6.6, 0]])
    f = m.style_features(line, "nnn nnn")
    assert f["slant_deg"] == pytest.approx(0.0, abs=0.5)
    assert f["width_per_char"] == pytest.approx((6.6 + 6.0 - 0.05) / 6, rel=0.01)
    assert f["pen_lifts_per_char"] == pytest.approx(2 / 6)
    down = 2 * (12 * 1.0 + 12 * 0.5)             # stems and joins, approximately (sampling step)
    assert f["connectedness"] == pytest.approx(down / (down + 1.1), rel=0.02)
    # sheared by 20 degrees: the stems lean 20 degrees right
    shear = np.array([[1, 0], [np.tan(np.radians(20)), 1]])
    sheared = strokes_to_offsets([s @ shear for s in offsets_to_strokes(line)])
    assert m.style_features(sheared, "nnn nnn")["slant_deg"] == pytest.approx(20.0, abs=0.5)
    # stretched 2x along x: twice the width per character
    wide = strokes_to_offsets([s * [2, 1] for s in offsets_to_strokes(line)])
    assert m.style_features(wide, "nnn nnn")["width_per_char"] == pytest.approx(2 * f["width_per_char"], rel=0.01)
    # a quarter of the tops are ascenders 2.5 times the body height
    tall = strokes_to_offsets([square_wave(24, tall_every=8)])
    assert m.style_features(tall, "nnnnnn")["ascender_ratio"] == pytest.approx(2.5, rel=0.05)
    assert f["ascender_ratio"] == pytest.approx(1.0, rel=0.03)
    assert m.body_height(tall) == pytest.approx(1.0, rel=0.03)


def test_wobble_is_zero_on_lines_and_circles_and_grows_with_noise():
    t = np.linspace(0, 2 * np.pi, 80)
    circle = np.c_[np.cos(t), np.sin(t)]
    line = np.c_[np.linspace(0, 3, 40), np.zeros(40)]
    assert m.wobble_deg(strokes_to_offsets([line])) == pytest.approx(0, abs=1e-6)
    assert m.wobble_deg(strokes_to_offsets([circle])) == pytest.approx(0, abs=1e-3)
    rng = np.random.default_rng(0)
    shaky = [m.wobble_deg(strokes_to_offsets([circle + rng.normal(0, sd, circle.shape)])) for sd in (0.005, 0.02)]
    assert 0 < shaky[0] < shaky[1]
    assert np.isnan(m.wobble_deg(strokes_to_offsets([line[:3]])))   # two moves: no change of turn


def test_a_line_of_capitals_or_digits_keeps_its_size_on_the_page():
    """layout.line_scales brings each line's body height to the page's; a heading in capitals
    or a line of digits shows no x-height, so its measured "body" is its capitals' height and it
    would be drawn at the others' x-height. Given the texts, such a line keeps its size."""
    from handsynth.layout import body_measurable, line_scales
    assert body_measurable("Dear members, the spring sale") and body_measurable(None)
    assert not body_measurable("GARDEN CLUB NOTICE") and not body_measurable("0161 496 0732")
    assert not body_measurable("Tel. 01865 557204") and not body_measurable("ok")
    prose = [strokes_to_offsets([square_wave(40)]) for _ in range(3)]
    heading = strokes_to_offsets([square_wave(40, height=1.8)])     # capitals 1.8 x the x-height
    lines = prose[:1] + [heading] + prose[1:]
    texts = ["see you soon now", "GARDEN CLUB NOTICE", "on a warm summer", "evening, as ever"]
    blind, told = line_scales(lines), line_scales(lines, texts)
    assert blind[1] < 0.6 * blind[0]                                 # measured as a body: shrunk to the others'
    assert told[1] == pytest.approx(told[0]) and told[0] == pytest.approx(blind[0])   # kept, the others as before
