"""Editing one word (issue 17): a drawing knows which strokes write which word (from the sampler's
alignment); ``Handwriter.redo_word`` / ``write(..., redo=...)`` / ``handsynth write --redo-word``
write one word again and leave every other stroke as it was (the rest of its line moved along
only); the same request gives the same page. Also: importing the vpype plugin loads no torch."""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import handsynth
from handsynth import HandsynthError
from handsynth import writer as writer_module
from handsynth.cli import main as cli_main
from handsynth.drawing import Drawing
from handsynth.layout import PageOptions, WordSpan
from handsynth.sampling import Line, char_words, step_words, word_strokes, word_widths

TEXT = "Dear Ada,\nthank you for the tea\nsee you soon"
WORDS = TEXT.split()


@pytest.fixture(scope="module")
def page(hw):
    """A three-line page in a built-in style, written once for the module."""
    return hw.write(TEXT, style="s03", seed=2)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def line_strokes(drawing: Drawing, line: int) -> list:
    return drawing.pages[0].lines[line].strokes


# ---- which strokes write which word ------------------------------------------------------------

def _line(text: str, focus: list[int], ends: list[int], x: list[float] | None = None) -> Line:
    """A made-up sampled line: pen step t sits on character focus[t]; the pen lifts after the
    steps in ``ends``; each step moves right by one unit (or to ``x[t]``)."""
    n = len(focus)
    phi = np.zeros((n, len(text) + 1), np.float32)
    phi[np.arange(n), focus] = 1.0
    xs = np.arange(n, dtype=np.float32) if x is None else np.asarray(x, np.float32)
    off = np.zeros((n, 3), np.float32)
    off[:, 0] = np.diff(np.r_[0.0, xs])
    off[ends, 2] = 1.0
    return Line(text, off, False, phi)


def test_word_strokes_from_the_alignment():
    # "ab cd": chars a0 b1 _2 c3 d4. Strokes: [a a b] [b _] [_ _] [c d] [d]
    focus = [0, 0, 1, 1, 2, 2, 2, 3, 4, 4]
    line = _line("ab cd", focus, [2, 4, 6, 8, 9])
    assert list(char_words("ab cd")) == [0, 0, -1, 1, 1]
    assert list(step_words(line)) == [0, 0, 0, 0, -1, -1, -1, 1, 1, 1]
    # the all-space stroke [5, 6] sits next to "ab" (x 5-6, "ab" ends at 3, "cd" starts at 7: a tie
    # in distance would go to "ab"; here "ab" is 2 away and "cd" 1 away): it goes with "cd"
    assert word_strokes(line) == [("ab", 0, 2), ("cd", 2, 5)]
    # the same stroke drawn back under "ab" goes with "ab"
    near_ab = _line("ab cd", focus, [2, 4, 6, 8, 9], x=[0, 1, 2, 3, 4, 1.5, 2, 7, 8, 9])
    assert word_strokes(near_ab) == [("ab", 0, 3), ("cd", 3, 5)]


def test_a_words_last_stroke_stays_with_it_when_the_window_runs_ahead():
    # the window moves on to the space and to "cd" while the pen finishes "ab" with a kick
    # (x 3.2-3.6, right at the end of "ab", far from "cd" at x 6-9): the cut moves to the gap
    focus = [0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4]
    x = [0, 1, 2, 3, 3.2, 3.3, 3.4, 3.5, 3.6, 6, 7, 8, 9]
    line = _line("ab cd", focus, [3, 8, 12], x=x)
    assert list(step_words(line)[4:9]) == [-1, -1, -1, -1, 1]      # by votes alone the kick is "cd"'s
    assert word_strokes(line) == [("ab", 0, 2), ("cd", 2, 3)]


def test_word_strokes_keep_order_and_cover_every_stroke():
    # a late i-dot of the first word written after the second word started: the words keep their
    # order, so it goes with its neighbours; a word the window skipped gets an empty range
    text = "xi yy zz"
    focus = [0, 0, 1, 1, 3, 3, 3, 1, 4, 4, 4, 4]   # ... "y" strokes, then a dot on "i", then "y" again
    line = _line(text, focus, [3, 6, 7, 11])
    spans = word_strokes(line)
    assert [w for w, _, _ in spans] == ["xi", "yy", "zz"]
    assert spans[0][1] == 0 and spans[-1][2] == 4
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:]))      # ranges follow one another
    assert spans[2][1] == spans[2][2]                                  # "zz": never written, empty
    assert word_strokes(Line("ab", np.zeros((0, 3), np.float32), False, None)) == []


def test_word_widths_unchanged_by_the_shared_helper(page):
    def reference(line):   # word_widths as it was written before step_words was shared
        x = np.cumsum(line.offsets[:, 0])
        focus = line.phi[:, :len(line.text)].argmax(1)
        out, start = [], 0
        for word in line.text.split(" "):
            span = np.flatnonzero((focus >= start) & (focus < start + len(word)))
            out.append((word, float(np.ptp(x[span])) if len(span) else 0.0))
            start += len(word) + 1
        return out

    for line in page.lines:
        assert word_widths(line) == reference(line)


def test_drawing_knows_its_words(page):
    words = page.words
    assert [w.text for w in words] == WORDS and [w.index for w in words] == list(range(len(WORDS)))
    assert [w.line for w in words] == [0, 0, 1, 1, 1, 1, 1, 2, 2, 2]
    for j, pl in enumerate(page.pages[0].lines):   # each line's strokes split into its words, in order
        assert [s.text for s in pl.words] == pl.text.split(" ")
        assert pl.words[0].start == 0 and pl.words[-1].stop == len(pl.strokes)
        assert all(a.stop == b.start for a, b in zip(pl.words, pl.words[1:]))
    flat = [s for w in words for s in page.word_strokes(w.index)]
    assert same(flat, page.strokes)
    for w in words:   # every word has strokes, and they sit left to right on their line
        assert w.stop > w.start and w.box[2] > w.box[0]
    for a, b in zip(words, words[1:]):
        if a.line == b.line:
            assert (a.box[0] + a.box[2]) / 2 < (b.box[0] + b.box[2]) / 2
    with pytest.raises(HandsynthError, match="word 10 does not exist: the drawing has 10 word"):
        page.word_strokes(10)


# ---- writing one word again ----------------------------------------------------------------------

def test_redo_keeps_every_other_stroke(hw, page):
    k = WORDS.index("you")                       # "you" on the second line, with two words after it
    new = hw.redo_word(page, k, seed=1)
    old_w, new_w = page.words[k], new.words[k]
    assert [w.text for w in new.words] == WORDS
    assert not same(page.word_strokes(k), new.word_strokes(k))            # the word is new
    assert same(line_strokes(page, 0), line_strokes(new, 0))             # other lines: untouched
    assert same(line_strokes(page, 2), line_strokes(new, 2))
    for i in range(len(WORDS)):
        if page.words[i].line == 1 and i != k:
            a, b = page.word_strokes(i), new.word_strokes(i)
            if i < k:                            # before it on its line: untouched
                assert same(a, b)
            else:                                # after it: moved along, by one distance, only in x
                dx = b[0][0, 0] - a[0][0, 0]
                np.testing.assert_allclose(np.concatenate(b), np.concatenate(a) + [dx, 0], atol=1e-3)
                assert dx == pytest.approx((new_w.box[2] - old_w.box[2]), abs=1e-3)
    # where the old word was, at its line's size: the same left edge, the body on the same band
    xh = page.source.page.x_height
    assert new_w.box[0] == pytest.approx(old_w.box[0], abs=1e-3)
    assert abs((new_w.box[1] + new_w.box[3]) / 2 - (old_w.box[1] + old_w.box[3]) / 2) < 0.8 * xh
    assert 0.6 < (new_w.box[3] - new_w.box[1]) / (old_w.box[3] - old_w.box[1]) < 1.6
    assert new.pages[0].height >= page.pages[0].height


def test_redo_is_deterministic_and_the_same_by_every_road(hw, page):
    k = WORDS.index("tea")                       # the last word of a line
    a = hw.redo_word(page, k, seed=4)
    b = hw.write(TEXT, style="s03", seed=2, redo={k: 4})
    assert same(a.strokes, b.strokes)
    c = hw.redo_word(page, k, seed=5)            # another seed: another writing
    assert not same(a.word_strokes(k), c.word_strokes(k))
    # the page is the same as without redo everywhere else: as a PNG, only the word's box changed
    before, after = (np.asarray(Image.open(io.BytesIO(d.to_png())).convert("L"), np.int16) for d in (page, a))
    h = min(len(before), len(after))
    ys, xs = np.nonzero(np.abs(before[:h] - after[:h]) > 8)
    assert len(ys)
    x0 = min(page.words[k].box[0], a.words[k].box[0]) - 6
    x1 = max(page.words[k].box[2], a.words[k].box[2]) + 6
    y0 = min(page.words[k].box[1], a.words[k].box[1]) - 6
    y1 = max(page.words[k].box[3], a.words[k].box[3]) + 6
    assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
    # several words at once: in word order, each as if rewritten one after the other
    both = hw.write(TEXT, style="s03", seed=2, redo={k: 4, 0: 3})
    assert same(both.strokes, hw.redo_word(hw.redo_word(page, 0, 3), k, 4).strokes)
    assert same(both.strokes, hw.redo_words(page, {k: 4, 0: 3}).strokes)


def test_redo_bad_requests(hw, page):
    with pytest.raises(HandsynthError, match="word 10 does not exist: the text has 10 word"):
        hw.redo_word(page, 10, 1)
    for bad in ({-1: 1}, {0: -2}, {True: 1}, {0: 1.5}, {"0": 1}):
        with pytest.raises(HandsynthError, match="redo: the"):
            hw.redo_words(page, bad)
    with pytest.raises(HandsynthError, match="redo must map word numbers to seeds"):
        hw.redo_words(page, [0, 1])
    with pytest.raises(HandsynthError, match="only a drawing from Handwriter.write"):
        hw.redo_word(Drawing(page.pages), 0, 1)
    with pytest.raises(HandsynthError, match="word 5 does not exist: the text has 1 word") as e:
        hw.write("hello", redo={5: 1})          # checked before anything is written
    assert e.value.words == 1


def test_redo_on_a_centred_line_keeps_it_centred(hw):
    d = hw.write("a centred line", seed=3, align="center", width=800)
    new = hw.redo_word(d, 1, 2)
    for drawing in (d, new):
        pts = np.concatenate(drawing.strokes)
        assert (pts[:, 0].min() + pts[:, 0].max()) / 2 == pytest.approx(400, abs=0.5)
    for i in (0, 2):   # the other words: moved along the line only
        a, b = np.concatenate(d.word_strokes(i)), np.concatenate(new.word_strokes(i))
        np.testing.assert_allclose(b, a + [b[0, 0] - a[0, 0], 0], atol=1e-3)


def test_a_word_too_wide_for_its_line_is_kept_on_the_page(hw, page, monkeypatch):
    """Every writing tried is far too wide: the narrowest is shrunk into the writing area."""
    real = writer_module.sample_checked

    def wide(*args, **kwargs):
        lines = real(*args, **kwargs)
        for line in lines:
            line.offsets = line.offsets * np.array([12.0, 1.0, 1.0], np.float32)
        return lines

    monkeypatch.setattr(writer_module, "sample_checked", wide)
    k = WORDS.index("thank")
    new = hw.redo_word(page, k, 1)
    line = np.concatenate(line_strokes(new, 1))
    opts = page.source.page
    assert line[:, 0].max() <= opts.width - opts.margin + 0.5 and line[:, 0].min() >= opts.margin - 0.5
    assert same(line_strokes(page, 0), line_strokes(new, 0))


def test_redo_on_paper_keeps_the_ruling_and_the_baseline(hw):
    d = hw.write("ruled paper, one line", paper="a6", ruling="ruled", seed=1)
    new = hw.redo_word(d, 1, 1)
    assert new.pages[0].ruling == d.pages[0].ruling and new.pages[0].height == d.pages[0].height
    frame = d.source.frames[0]
    b = new.words[1].box
    assert b[1] < frame.baseline < b[3]          # the word straddles its line's baseline
    assert same(new.word_strokes(0), d.word_strokes(0))


# ---- the command line --------------------------------------------------------------------------

def test_cli_redo_word(hw, page, tmp_path, capsys):
    out = tmp_path / "again.svg"
    k = WORDS.index("tea")
    assert cli_main(["write", TEXT, "--style", "s03", "--seed", "2", "-o", str(out), "-q",
                     "--redo-word", str(k + 1), "--redo-seed", "4"]) == 0
    assert out.read_text() == hw.redo_word(page, k, 4).to_svg()
    assert cli_main(["write", "hello", "-o", str(out), "--redo-word", "2"]) == 2
    assert "--redo-word 2: the text has 1 word(s), counted from 1" in capsys.readouterr().err
    assert cli_main(["write", "hello", "-o", str(out), "--redo-word", "0"]) == 2
    assert "counts the words from 1" in capsys.readouterr().err
    assert cli_main(["write", "hello", "-o", str(out), "--redo-seed", "3"]) == 2
    assert "--redo-seed needs --redo-word" in capsys.readouterr().err


def test_cli_redo_word_default_seed_is_1(hw, tmp_path):
    out = tmp_path / "a.svg"
    assert cli_main(["write", "hello there", "--seed", "5", "-o", str(out), "-q", "--redo-word", "2"]) == 0
    assert out.read_text() == hw.write("hello there", seed=5, redo={1: 1}).to_svg()


# ---- vpype start-up: the plugin imports no torch -------------------------------------------------

def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_importing_the_plugin_or_the_index_loads_no_torch():
    r = _fresh("""
        import sys
        import handsynth.vpype_plugin
        assert "torch" not in sys.modules, "the vpype plugin imported torch"
        import handsynth
        assert [m.name for m in handsynth.available_models()][:1] == ["lstm"] and "lstm" in handsynth.MODELS
        assert handsynth.model_file("lstm")[1] == "lstm"
        assert "torch" not in sys.modules, "the index imported torch"
        from click.testing import CliRunner
        import vpype_cli
        r = CliRunner().invoke(vpype_cli.cli, ["--help"])
        assert r.exit_code == 0 and "handsynth" in r.output, r.output
        assert "torch" not in sys.modules, "vpype's start-up imported torch"
        assert handsynth.SamplingOptions.bias > 0 and "torch" in sys.modules   # the heavy names, on demand
        assert handsynth.Handwriter.__name__ == "Handwriter" and callable(handsynth.load_model)
        assert set(handsynth.__all__) <= set(dir(handsynth))
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = handsynth.nothing_here
    assert handsynth.PageOptions is PageOptions and handsynth.styles.builtin_styles
    assert WordSpan("a", 0, 1).stop == 1
