"""Styles as primers: a sample's one-point strokes (the web canvas makes them for i-dots and full
stops) are drawn as pens record dots, so a style ending in a full stop does not start every line
with a dot."""
from __future__ import annotations

import numpy as np

import json
from pathlib import Path

import pytest

from handsynth.errors import HandsynthError
from handsynth.sampling import primed_text
from handsynth.strokes import TRAIN_STEPS_PER_CHAR, Normalization, dots_as_strokes, normalize_line, normalize_sample, offsets_to_strokes
from handsynth.styles import Style, get_style, style_from_file, style_from_json

ONE_HAND = Path(__file__).parent / "fixtures" / "one_hand.json"   # one hand's sentences (make_one_hand.py)


def test_a_persons_sample_is_normalised_at_the_training_lines_density():
    """A sample sampled at half the density (the fixture: strokes the model wrote, already
    downsampled) keeps every point; one at twice it keeps every fourth; a sample within the
    training lines' range is normalised as the corpus's."""
    lo, mid, hi = TRAIN_STEPS_PER_CHAR
    doc = json.loads(ONE_HAND.read_text())["samples"][0]
    strokes = dots_as_strokes([np.asarray(s, np.float32) for s in doc["strokes"]])
    n = len(doc["text"])
    assert len(normalize_line(strokes)) / n < lo                       # as the corpus would: half the steps
    sparse = normalize_sample(strokes, n)
    np.testing.assert_array_equal(sparse, normalize_line(strokes, Normalization(downsample=1)))
    assert lo <= len(sparse) / n <= hi
    dense = [np.repeat(s, 4, axis=0) + np.linspace(0, 1e-3, 4 * len(s))[:, None] for s in strokes]   # 4x the points
    assert lo <= len(normalize_sample(dense, n)) / n <= hi and len(normalize_line(dense)) / n > hi
    bank = get_style("s05")
    assert not bank.custom and np.array_equal(bank.offsets(), normalize_line(dots_as_strokes(bank.strokes)))
    ok = dots_as_strokes(bank.strokes)
    np.testing.assert_array_equal(normalize_sample(ok, len(bank.text)), normalize_line(ok))


def test_a_style_of_several_sentences_primes_with_the_first_two_joined(hw, tmp_path):
    docs = json.loads(ONE_HAND.read_text())["samples"]
    st = style_from_file(ONE_HAND)                       # four sentences: the first two prime
    assert st.text == docs[0]["text"] and len(st.more) == 1 and st.more[0].text == docs[1]["text"]
    assert st.primer_text == primed_text(docs[0]["text"], docs[1]["text"])
    a, b = (normalize_sample(dots_as_strokes([np.asarray(s, np.float32) for s in d["strokes"]]), len(d["text"]))
            for d in docs[:2])
    off = st.offsets()
    assert off.shape == (len(a) + len(b), 3)
    np.testing.assert_array_equal(off[:len(a) - 1], a[:-1])
    np.testing.assert_array_equal(off[len(a) + 1:], b[1:])
    xs = np.cumsum(off[:, 0])
    assert xs[len(a):].min() > xs[:len(a)].max()        # the second sentence written right of the first
    p = hw.primer(st)
    assert p.text == st.primer_text and p.offsets.shape == off.shape
    assert hw.primer(docs[:2]).text == p.text            # the library takes the list of sample dicts too
    one = tmp_path / "one.json"
    one.write_text(json.dumps(docs[0]))
    assert style_from_file(one).more == () and hw.primer(Path(one)).text == docs[0]["text"]
    for bad, fragment in (([], "1 to 2 sentences"), (docs[:3], "1 to 2 sentences"),
                          ([docs[0], {**docs[1], "text": "hi"}], "style sample 1: the sample's text is too short")):
        with pytest.raises(HandsynthError, match=fragment):
            style_from_json(bad)
    (tmp_path / "none.json").write_text(json.dumps({"samples": [docs[0], {**docs[1], "strokes": []}]}))
    with pytest.raises(HandsynthError, match=r"none.json sample 1: 'strokes' must be"):
        style_from_file(tmp_path / "none.json")


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
