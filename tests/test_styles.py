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
