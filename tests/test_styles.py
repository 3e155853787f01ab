"""Styles as primers: a sample's one-point strokes (the web canvas makes them for i-dots and full
stops) are drawn as pens record dots, so a style ending in a full stop does not start every line
with a dot."""
from __future__ import annotations

import numpy as np

from handsynth.strokes import dots_as_strokes, offsets_to_strokes
from handsynth.styles import Style, get_style


def test_dots_as_strokes_only_touches_one_point_strokes():
    a = np.array([[0, 0], [1, 2], [2, 0]], np.float32)
    dot = np.array([[5, 3]], np.float32)
    out = dots_as_strokes([a, dot])
    np.testing.assert_array_equal(out[0], a)
    assert out[1].shape == (3, 2) and np.allclose(out[1][0], dot[0])
    assert 0 < np.ptp(out[1][:, 1]) <= 0.1 * 2.0      # a dot: a small fraction of the line's height


def test_a_style_ending_in_a_canvas_dot_does_not_start_lines_with_a_dot(hw):
    st = get_style("s01")
    last = st.strokes[-1]
    full_stop = last[-1:] + np.array([[0.3 * np.ptp(last[:, 0]) + 5, -0.3 * np.ptp(last[:, 1])]], np.float32)
    style = Style("c", "c", st.text.rstrip(".") + ".", tuple(st.strokes) + (full_stop,))
    lines = hw.lines(["Meet me at the station", "with a bit of time", "all is well"], style=style, resample=True)
    for line in lines:
        first = offsets_to_strokes(line.offsets)[0]
        # the first stroke is a letter's, not a dot's (without the fix: 12-point strokes 0.1 tall)
        assert len(first) >= 14 and np.ptp(first, 0).max() > 0.4, (line.text, len(first), np.ptp(first, 0))


def test_the_bank_has_range_names_that_tell_hands_apart_and_attribution(hw):
    """24 or more hands of held-out writers, chosen to spread (scripts/build_style_bank.py): every
    name unique and made of measured traits, print and cursive, left-leaning and slanted among
    them, each sample writable by the shipped model, each source naming its held-out corpus line."""
    import re

    from handsynth.styles import builtin_styles
    bank = builtin_styles()
    assert len(bank) >= 24
    assert len({s.id for s in bank}) == len({s.name for s in bank}) == len(bank)
    names = " ".join(s.name for s in bank)
    for trait in ("print", "semi-joined", "cursive", "left-leaning", "upright", "right-slanted", "narrow", "wide",
                  "round", "angular"):
        assert trait in names, trait
    for s in bank:
        assert re.fullmatch(r"((round|angular) )?(print|semi-joined|cursive), (left-leaning|upright|right-slanted|"
                            r"strongly slanted)(, (narrow|wide))?( \d+)?", s.name), s.name
        assert re.search(r"(IAM-OnDB line \S+|UNIPEN train_r01_v07 writer \S+) \(test split;", s.source), s.source
        hw.alphabet.normalize(s.text, False)
        assert len(s.offsets()) > 3 * len(s.text)
    assert sum("UNIPEN" in s.source for s in bank) >= 1 and sum("IAM-OnDB" in s.source for s in bank) >= 12
