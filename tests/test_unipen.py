"""The UNIPEN reader on a tiny synthetic tree (archive and folder), and one slow check on the real one."""
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from handsynth.data.corpus import build_unipen, statistics
from handsynth.data.unipen import line_samples, numbered, parse_ink, parse_labels, read_unipen, select

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "unipen" / "unipen-train_r01_v07.tar.xz"

DOC = b".VERSION 1.0\n.X_POINTS_PER_INCH 254\n.Y_POINTS_PER_MM 10\n.POINTS_PER_SECOND 100\n.COORD X Y\n"
# three components: a rising stroke (y grows up), a short dot, an "X" made of two points
INK = (b".INCLUDE tst/tst.doc\n.WRITER_ID w1\n.STYLE PRINTED\n"
       b".PEN_DOWN\n0 0\n10 20\n20 40\n.PEN_UP\n"
       b".PEN_DOWN\n30 60\n31 61\n.PEN_UP\n"
       b".PEN_DOWN\n40 0\n60 40\n.PEN_UP\n")
FILES = {
    "t/include/tst/tst.doc": DOC,
    "t/include/tst/data/a.dat": INK,
    # category 6 and 7 label the same word: kept once, with both categories
    "t/data/6/tst/a.dat": b'.INCLUDE tst/data/a.dat\n.SEGMENT WORD 0-1 OK "li"\n',
    "t/data/7/tst/a.dat": b'.INCLUDE tst/data/a.dat\n.SEGMENT WORD 0-1 OK "li"\n.SEGMENT WORD 2 BAD "X"\n',
    "t/data/8/tst/a.dat": b'.INCLUDE tst/data/a.dat\n.SEGMENT TEXT 0-2 GOOD "li X"\n',
    "t/data/1b/tst/a.dat": b'.INCLUDE tst/data/a.dat\n.SEGMENT CHARACTER 2:0-2:1 ? "X"\n',
    "t/data/7/tst/broken.dat": b'.INCLUDE tst/data/a.dat\n.SEGMENT WORD 0-1 OK li-without-quotes\n',
    "t/data/7/tst/gone.dat": b'.INCLUDE tst/data/missing.dat\n.SEGMENT WORD 0 OK "a"\n',
}


@pytest.fixture(params=["archive", "folder"])
def tree(request, tmp_path):
    if request.param == "folder":
        for name, data in FILES.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
        return tmp_path / "t"
    path = tmp_path / "unipen-train_r01_v07.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read(tree):
    r = read_unipen(tree)
    by = {(s.categories, s.text): s for s in r.segments}
    assert sorted(by) == [(("1b",), "X"), (("6", "7"), "li"), (("7",), "X"), (("8",), "li X")]
    word = by[("6", "7"), "li"]
    assert (word.writer, word.contributor, word.quality, word.style) == ("tst/w1", "tst", "OK", "PRINTED")
    assert [len(s) for s in word.strokes] == [3, 2]
    # 254 points per inch = 10 per mm on both axes; y grows up (the first stroke rises)
    np.testing.assert_allclose(word.strokes[0], [[0, 0], [1, 2], [2, 4]])
    assert word.points_per_second == 100
    assert by[("1b",), "X"].isolated_character and not word.isolated_character
    assert [len(s) for s in by[("1b",), "X"].strokes] == [2]
    assert r.problems["malformed label file"] == 1
    assert r.problems["missing ink file"] == 1


def test_build_and_statistics(tree, monkeypatch):
    monkeypatch.setattr("handsynth.data.corpus.MIN_STEPS_PER_CHAR", 0.1)  # the synthetic ink is sparse
    corpus = build_unipen(tree)  # words and text; BAD dropped
    assert sorted(corpus.texts) == ["li", "li X"]
    assert set(corpus.form_ids) == {"unipen:tst/w1"}
    assert corpus.dropped["quality BAD"] == 1
    stats = statistics(corpus)
    assert stats["forms"] == 1 and stats["character_counts"]["X"] == 1


def test_label_escapes():
    assert parse_labels(b'.INCLUDE a/b.dat\n.SEGMENT TEXT 0-3 OK "say \\"hi\\" \\@ 5 \\\\"\n')[1] == \
        [("TEXT", "0-3", "OK", 'say "hi" @ 5 \\')]


def test_ink_hover_numbering():
    # pen-up blocks with points (hover): the labels say how they count. Labels starting on
    # pen-down blocks when every block counts (ugi) -> every block numbers, pen-up ones never draw
    data = b".PEN_DOWN\n0 0\n1 1\n.PEN_UP\n5 5\n.PEN_DOWN\n2 2\n.PEN_UP\n.PEN_DOWN\n3 3\n.PEN_UP\n"
    ink = numbered(parse_ink(data), ["0-2", "4-4"])
    assert len(ink.components) == 6
    assert [len(s) for s in select(ink, "0-2")] == [2, 1]
    # every label starting on a pen-up block (the hover before each word, sta): every block too
    assert len(numbered(parse_ink(data), ["1-2", "3-4"]).components) == 6
    # labels starting on either kind, all within the pen-down blocks: pen-down numbering
    down = numbered(parse_ink(data), ["0", "1", "2"])
    assert len(down.components) == 3 and [s.tolist() for s in select(down, "1-2")] == [[[2, 2]], [[3, 3]]]
    # starting on either kind and reaching past the pen-down blocks: neither numbering fits
    assert numbered(parse_ink(data), ["0", "1", "2-5"]) is None
    flat = parse_ink(b".PEN_DOWN\n0 0\n.PEN_UP\n.PEN_DOWN\n2 2 7 1\n.PEN_UP\n")
    assert len(flat.components) == 2 and flat.components[1].tolist() == [[2, 2]]
    with pytest.raises(ValueError):
        parse_ink(b".PEN_DOWN\n0 zero\n")


@pytest.mark.slow
@pytest.mark.skipif(not REAL.exists(), reason="no UNIPEN archive")
def test_real_archive():
    corpus = build_unipen(REAL)
    chars = statistics(corpus)["character_counts"]
    assert len(set(corpus.form_ids)) > 500
    for c in "XQZ%$&":
        assert chars.get(c, 0) > 100, c
    assert all(chars.get(d, 0) > 1000 for d in "0123456789")


def _word(text, x0, y0, ink="c/ink.dat", comps="0-0", level="WORD", writer="c/w", quality="OK"):
    """A fake word: one zig-zag stroke per character, 1 unit tall, starting at (x0, y0)."""
    from handsynth.data.unipen import Segment
    pts = np.array([[x0 + 0.5 * i, y0 + (i % 2)] for i in range(2 * len(text))], np.float32)
    return Segment(text, level, ("7",), "c", writer, quality, ink, comps, [pts])


def test_line_samples_runs_stitching_and_cover():
    segs = [_word("one", 0, 0, comps="0-0"), _word("two", 4, 0.1, comps="1-1"),     # one written line
            _word("far", 50, -30, comps="2-2"), _word("away", 90, 12, comps="3-3"),  # scattered words
            _word("one two", 0, 0, comps="0-1", level="TEXT"),                      # the words cover it
            _word("u@ni", 0, 0, ink="c/other.dat")]                                 # a marker, not ink
    out, dropped = line_samples(segs)
    by_text = {o.text: o for o in out}
    assert set(by_text) == {"one two", "far away"}
    run = by_text["one two"]
    assert run.natural and run.words == 2
    np.testing.assert_array_equal(run.strokes[1][0], segs[1].strokes[0][0])  # kept where it was written
    st = by_text["far away"]
    assert not st.natural and st.words == 2
    a, b = st.strokes
    assert abs(np.percentile(a[:, 1], 20) - np.percentile(b[:, 1], 20)) < 1e-5  # one baseline
    gap = b[:, 0].min() - a[:, 0].max()
    assert 0.3 < gap < 2.0                                                     # a word space, not 40 units
    assert dropped["free text covered by its words"] == 1 and sum(v for k, v in dropped.items() if "@" in k) == 1


def test_thin_brings_an_ink_to_iam_density():
    from handsynth.data.unipen import POINTS_PER_CHAR, LineSample, thin
    dense = int(3 * POINTS_PER_CHAR) * 4                      # a 4-character word at 3x IAM's density
    pts = np.c_[np.linspace(0, 10, dense), np.sin(np.linspace(0, 20, dense))].astype(np.float32)
    sparse = np.c_[np.linspace(0, 10, 80), np.zeros(80)].astype(np.float32)
    out = thin([LineSample("abcd", [pts], "w", "a.dat", 1, True), LineSample("efgh", [sparse], "w", "b.dat", 1, True)])
    kept = out[0].strokes[0]
    assert abs(len(kept) / 4 - POINTS_PER_CHAR) < 2 and np.allclose(kept[[0, -1]], pts[[0, -1]])
    assert out[1].strokes[0] is sparse                         # already at IAM's density: untouched


def test_recogniser_trains_on_the_mix(tiny_iam, tmp_path, monkeypatch):
    """`handsynth recognizer --unipen --init shipped`: UNIPEN's training writers join IAM-OnDB's
    training forms, warm-started from the shipped recogniser, through the real command and its
    corpus cache (words of letters the tiny IAM-OnDB has)."""
    import torch

    from handsynth.cli import main
    from handsynth.recognizer import DEFAULT_RECOGNIZER
    monkeypatch.setattr("handsynth.data.corpus.MIN_STEPS_PER_CHAR", 0.1)  # the synthetic ink is sparse
    for name, data in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data.replace(b'"li', b'"at'))
    out = tmp_path / "rec"
    main(["recognizer", "--iam", str(tiny_iam), "--unipen", str(tmp_path / "t"), "--config", "tiny",
          "--max-steps", "2", "--eval-every", "2", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "-q",
          "--init", "shipped"])
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    shipped = torch.load(DEFAULT_RECOGNIZER, weights_only=True)
    assert set(shipped["alphabet"]) <= set(ck["alphabet"]) and ck["config"]["hidden"] == shipped["config"]["hidden"]
    assert "unipen:tst/w1" in ck["train_forms"]
    assert any(not f.startswith("unipen:") for f in ck["train_forms"])
    assert (out / "recognizer.pt").exists()


def test_isolated_characters_are_set_side_by_side_on_one_baseline():
    """Digits written one to a box (scattered, in two sizes) -> lines of groups: each character
    scaled to the ink's median height, standing on one baseline, left to right in component order;
    a writer change starts a new line and a short leftover is left out."""
    from handsynth.data import unipen
    digits = [_word(str(i % 10), 40 * (i % 3), -20 * i, comps=f"{i}-{i}", level="CHARACTER")
              for i in range(30)]
    for i, d in enumerate(digits):
        d.categories = ("1a",)
        d.strokes = [d.strokes[0] * np.float32(2.0 if i % 2 else 1.0)]   # every other box twice as tall
    digits.append(_word("7", 0, 0, comps="30-30", level="CHARACTER", writer="c/other"))
    digits[-1].categories = ("1a",)
    out, _ = unipen.line_samples(digits, seed=0)
    lines = [o for o in out if o.writer == "c/w"]
    assert lines and all(o.writer != "c/other" for o in out)        # one character alone: left out
    assert "".join(o.text.replace(" ", "") for o in lines) == "".join(str(i % 10) for i in range(30))
    for o in lines:
        assert unipen.CHARACTER_LINE_MIN <= len(o.text) and not o.natural
        assert all(1 <= len(g) <= 5 for g in o.text.split(" "))
        lows = [s[:, 1].min() for s in o.strokes]
        highs = [s[:, 1].max() for s in o.strokes]
        np.testing.assert_allclose(lows, 0, atol=1e-5)                 # one baseline
        np.testing.assert_allclose(highs, highs[0], rtol=1e-5)         # one height
        xs = [(s[:, 0].min(), s[:, 0].max()) for s in o.strokes]
        assert all(b[0] > a[1] for a, b in zip(xs, xs[1:]))            # left to right, never overlapping


def test_unipen_characters_join_the_corpus_and_bad_ones_are_refused(tree, tmp_path, monkeypatch):
    from handsynth.data.corpus import load_corpus
    from handsynth.errors import HandsynthError
    monkeypatch.setattr("handsynth.data.corpus.MIN_STEPS_PER_CHAR", 0.1)
    monkeypatch.setattr("handsynth.data.unipen.CHARACTER_LINE_MIN", 1)   # the tree has one isolated "X"
    plain = load_corpus(unipen=tree, cache_dir=tmp_path, progress=False)
    more = load_corpus(unipen=tree, cache_dir=tmp_path, progress=False, unipen_characters=("1b",))
    assert "X" not in plain.texts and "X" in more.texts and len(more.texts) == len(plain.texts) + 1
    with pytest.raises(HandsynthError, match="unknown UNIPEN character category '1d'"):
        load_corpus(unipen=tree, cache_dir=tmp_path, progress=False, unipen_characters=("1d",))
