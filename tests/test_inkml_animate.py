"""InkML and animation on real outputs of the shipped model: the InkML export read back equals the
drawing (strokes to rounding, texts), works as a style and as training samples; the W3C spec's
example and a file using the spec's compact trace syntax read as computed by hand; malformed and
hostile files give one-line errors; the animated SVG has one timed element per stroke, in order;
the GIF and WebP have frames that fill in to the static PNG; in a real Chromium (if there is one)
the animated SVG starts empty and ends with the ink."""
from __future__ import annotations

import io
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handsynth import inkml
from handsynth.animate import HOLD_MS, MAX_FRAMES, animated_svg, animation, frames, page_times
from handsynth.data.corpus import load_corpus
from handsynth.data.samples import load_samples
from handsynth.errors import HandsynthError
from handsynth.inkml import MAX_PEN_UP_MS, PEN_LIFT_MS, SAMPLE_MS, drawing_inkml, inkml_samples, pen_times
from handsynth.layout import Page
from handsynth.drawing import Drawing
from handsynth.styles import style_from_file

FIXTURES = Path(__file__).with_name("fixtures")
INK = "{http://www.w3.org/2003/InkML}"
SVG = "{http://www.w3.org/2000/svg}"
TEXT = "Dear Ada,\nthank you for the tea.\nSee you soon!"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def drawing(hw):
    return hw.write(TEXT, seed=3)


def dark(png_or_image, level: int = 128) -> int:
    im = png_or_image if isinstance(png_or_image, Image.Image) else Image.open(io.BytesIO(png_or_image))
    return int((np.asarray(im.convert("L")) < level).sum())


# ------------------------------------------------------------------------------------- pen timing

def test_pen_times_steps_and_pauses():
    assert SAMPLE_MS == 20.0       # IAM-OnDB's ~100 Hz, downsampled by 2 in training
    strokes = [np.array([[0, 0], [1, 0], [2, 0]]), np.array([[3, 0], [4, 0]]), np.array([[50, 0]]),
               np.array([[5000, 0], [5001, 0]])]
    t = pen_times(strokes)
    assert [len(x) for x in t] == [3, 2, 1, 2] and t[0][0] == 0
    assert all(np.allclose(np.diff(x), SAMPLE_MS) for x in t)
    gaps = [t[i + 1][0] - t[i][-1] for i in range(3)]
    assert PEN_LIFT_MS < gaps[0] < gaps[1] <= gaps[2] == MAX_PEN_UP_MS   # longer travel, longer pause


# ------------------------------------------------------------------------------------ InkML export

def test_inkml_round_trip(drawing, tmp_path):
    doc = drawing_inkml(drawing)
    root = ET.fromstring(doc)
    assert root.tag == INK + "ink"
    assert [c.get("name") for c in root.iter(INK + "channel")] == ["X", "Y", "T"]
    assert [c.get("units") for c in root.iter(INK + "channel")] == ["mm", "mm", "ms"]
    lines = [line for page in drawing.pages for line in page.lines]
    assert root.find(INK + "annotation").text == "\n".join(line.text for line in lines) == TEXT
    groups = root.findall(INK + "traceGroup")
    assert [g.find(INK + "annotation").text for g in groups] == [line.text for line in lines]
    assert [len(g.findall(INK + "trace")) for g in groups] == [len(line.strokes) for line in lines]
    # the pen's clock: SAMPLE_MS per point, pauses between strokes, never backwards
    t = [np.array([float(p.split()[2]) for p in tr.text.split(",")]) for tr in root.iter(INK + "trace")]
    assert all(np.allclose(np.diff(x), SAMPLE_MS) for x in t)
    assert all(b[0] - a[-1] >= PEN_LIFT_MS for a, b in zip(t, t[1:]))

    path = tmp_path / "note.inkml"
    path.write_text(doc, encoding="utf-8")
    back = load_samples(path)
    assert [s.text for s in back] == [line.text for line in lines]
    mm = 25.4 / drawing.ink.dpi
    for sample, line in zip(back, lines):
        assert len(sample.strokes) == len(line.strokes)
        for a, b in zip(sample.strokes, line.strokes):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b * np.array([mm, -mm]), atol=6e-4)   # 3 decimals in mm, y up


def test_inkml_several_pages_and_independent_reader(drawing):
    two = Drawing(drawing.pages * 2, drawing.ink)
    root = ET.fromstring(drawing_inkml(two))
    pages = root.findall(INK + "traceGroup")
    assert [g.find(INK + "annotation").get("type") for g in pages] == ["page", "page"]
    assert len(inkml_samples(drawing_inkml(two).encode())) == 2 * len(drawing.pages[0].lines)
    # Wacom's universal-ink-library reads InkML independently of us; it is not a dependency
    # (it pins an old python-dateutil), so this part runs only where it is installed
    try:
        from uim.codec.parser.inkml import InkMLParser
    except ImportError:
        return
    parser = InkMLParser()
    parser.default_namespace = INK[1:-1]
    parser.register_value("truth", "hasContent")
    model = parser.parse(drawing_inkml(drawing).encode())
    assert len(model.strokes) == len(drawing.strokes)


def test_inkml_as_style_and_for_training(hw, drawing, tmp_path):
    line = drawing.pages[0].lines[1]
    one = Drawing([Page(drawing.pages[0].width, drawing.pages[0].height, [line])], drawing.ink)
    path = tmp_path / "my-hand.inkml"
    path.write_text(drawing_inkml(one), encoding="utf-8")
    style = style_from_file(path)
    assert style.text == line.text and len(style.strokes) == len(line.strokes)
    written = hw.write("a short note", style=path, seed=2)
    assert written.strokes and written.pages[0].lines[0].text == "a short note"
    assert dark(written.to_png()) > 200

    corpus = load_corpus(samples=[path, FIXTURES / "w3c_hello.inkml"], cache_dir=tmp_path, progress=False)
    assert corpus.texts == [line.text, "hello"] and list(corpus.split) == [0, 0]

    several = tmp_path / "three.inkml"
    several.write_text(drawing_inkml(drawing), encoding="utf-8")
    lines = drawing.pages[0].lines   # a file of several lines primes with the first two, joined
    st = style_from_file(several)
    assert st.text == lines[0].text and [m.text for m in st.more] == [lines[1].text]
    assert st.primer_text == f"{lines[0].text} {lines[1].text}"


# ------------------------------------------------------------------------------------ InkML import

def test_w3c_spec_example(tmp_path):
    (sample,) = load_samples(FIXTURES / "w3c_hello.inkml")
    assert sample.text == "hello" and [len(s) for s in sample.strokes] == [27, 20, 12, 13, 16]
    np.testing.assert_array_equal(sample.strokes[0][:2], [[10, 0], [9, -14]])    # y flipped to grow upwards
    np.testing.assert_array_equal(sample.strokes[4][-1], [365, -150])
    # a folder of samples reads .inkml beside .json
    shutil.copy(FIXTURES / "w3c_hello.inkml", tmp_path / "a.inkml")
    shutil.copy(FIXTURES / "inkml_features.inkml", tmp_path / "b.INKML")
    assert [s.text for s in load_samples(tmp_path)] == ["hello", "first sample", "second sample"]


def test_trace_syntax_of_the_spec():
    """Hand-computed: channel order T, Y (-ve), X; ' and " differences, sticky per channel; values
    run together; hex, * and ?; traceViews into <definitions>; a CROHME "Segmentation" wrapper."""
    first, second = load_samples(FIXTURES / "inkml_features.inkml")
    assert (first.text, first.writer) == ("first sample", "tester")
    # (X, Y-down) per point; Y's channel points up, so Y-down = -value, and samples store y up
    np.testing.assert_array_equal(first.strokes[0], [[100, -10], [105, -8], [110, -6], [114, -3]])
    np.testing.assert_array_equal(first.strokes[1], [[120, -3], [125, -3], [130, -4]])
    assert len(first.strokes) == 2                                       # the pen-up trace is not ink
    assert second.text == "second sample" and second.writer == ""
    np.testing.assert_array_equal(second.strokes[0], [[1125, -18432], [1148, -18475], [1178, -18510], [1211, -18540]])
    np.testing.assert_array_equal(second.strokes[1], [[10, -11], [10, -12]])   # '?' points dropped


T = '<annotation type="truth">hello there</annotation>'
HOSTILE = {
    "entity bomb": ('<?xml version="1.0"?><!DOCTYPE ink [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;'
                    '&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><ink><annotation '
                    'type="truth">&c;</annotation><trace>1 2, 3 4</trace></ink>', "entities"),
    "external entity": ('<?xml version="1.0"?><!DOCTYPE ink [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                        '<ink><annotation type="truth">&x;</annotation><trace>1 2</trace></ink>', "entities"),
    "not XML": ("<ink><trace>1 2</ink>", "not valid XML"),
    "not InkML": ("<svg/>", "not InkML"),
    "no text": ("<ink><trace>1 2, 3 4</trace></ink>", "no text"),
    "junk in a trace": (f"<ink>{T}<trace>1 2, x 4</trace></ink>", "unexpected 'x'"),
    "short point": (f"<ink>{T}<trace>1 2, 3</trace></ink>", "a point has 1 value"),
    "long point": (f"<ink>{T}<trace>1 2, 3 4 5</trace></ink>", "more values"),
    "prefix alone": (f"<ink>{T}<trace>1 2, 3 '</trace></ink>", "with no value"),
    "no X, Y": (f'<ink>{T}<context><traceFormat><channel name="A"/></traceFormat></context>'
                "<trace>1 2</trace></ink>", "no X and Y"),
    "too many points": (f"<ink>{T}<trace>" + ", ".join(f"{i} {i}" for i in range(20001)) + "</trace></ink>",
                        "more than the limit"),
    "dangling reference": (f'<ink><traceGroup>{T}<traceView traceDataRef="#zz"/></traceGroup></ink>',
                           "names no element"),
    "reference loop": (f'<ink><traceGroup xml:id="A">{T}<traceView traceDataRef="#B"/></traceGroup>'
                       '<traceGroup xml:id="B"><traceView traceDataRef="#A"/></traceGroup></ink>', "loop"),
    "reference bomb": (f'<ink><traceGroup>{T}<traceView traceDataRef="#g0"/></traceGroup><definitions>'
                       + "".join(f'<traceGroup xml:id="g{i}"><traceView traceDataRef="#g{i + 1}"/>'
                                 f'<traceView traceDataRef="#g{i + 1}"/></traceGroup>' for i in range(40))
                       + '<trace xml:id="g40">1 2</trace></definitions></ink>', "too deeply or too many"),
    "deep groups": ("<ink>" + "<traceGroup>" * 100 + T + "<trace>1 2</trace>" + "</traceGroup>" * 100 + "</ink>",
                    "nested deeper"),
    "group without ink": (f"<ink><traceGroup>{T}</traceGroup></ink>", "has no ink"),
    "infinite value": (f"<ink>{T}<trace>1 2, inf 3</trace></ink>", "finite"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_malformed_and_hostile_inkml(name, tmp_path):
    doc, msg = HOSTILE[name]
    path = tmp_path / "bad.inkml"
    path.write_text(doc, encoding="utf-8")
    t0 = time.perf_counter()
    with pytest.raises(HandsynthError, match=msg) as e:
        load_samples(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    assert time.perf_counter() - t0 < 5


def test_file_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "big.inkml"
    path.write_bytes(b"<ink>" + b" " * 5000 + b"</ink>")
    monkeypatch.setattr(inkml, "MAX_INKML_BYTES", 4096)
    with pytest.raises(HandsynthError, match="larger than"):
        load_samples(path)
    with pytest.raises(HandsynthError, match="larger than"):
        inkml_samples(path.read_bytes(), "upload")
    with pytest.raises(HandsynthError, match="no such file"):
        load_samples(tmp_path / "none.inkml")


# -------------------------------------------------------------------------------------- animation

def svg_animations(doc: str):
    root = ET.fromstring(doc)
    paths = list(root.iter(SVG + "path"))
    return root, paths, [p.findall(SVG + "animate") for p in paths]


def seconds(v: str) -> float:
    assert v.endswith("s")
    return float(v[:-1])


def test_animated_svg_one_timed_element_per_stroke(drawing):
    doc = animated_svg(drawing)
    root, paths, anims = svg_animations(doc)
    static = ET.fromstring(drawing.to_svg())
    assert root.get("viewBox") == static.get("viewBox") and root.get("width") == static.get("width")
    strokes = drawing.pages[0].strokes
    assert len(paths) == len(strokes) and all(len(a) == 1 for a in anims)
    assert [p.get("d") for p in paths] == [p.get("d") for p in static.iter(SVG + "path")]
    begin = np.array([seconds(a[0].get("begin")) for a in anims])
    dur = np.array([seconds(a[0].get("dur")) for a in anims])
    assert begin[0] == 0 and np.all(np.diff(begin) > 0)
    assert np.all(begin[1:] >= begin[:-1] + dur[:-1] - 1e-3)            # one stroke after the other
    times = page_times(drawing)
    np.testing.assert_allclose(begin + dur, [max(t[-1], t[0] + SAMPLE_MS) / 1000 for t in times], atol=2e-3)
    for p, (a,), s in zip(paths, anims, strokes):
        assert p.get("pathLength") == "1" and a.get("attributeName") == "stroke-dashoffset"
        values = [float(v) for v in a.get("values").split(";")]
        assert values[0] == 1 and values[-1] == 0 and np.all(np.diff(values) <= 0)
        assert len(values) == max(len(s), 2) and a.get("fill") == "freeze"
    fast = svg_animations(animated_svg(drawing, speed=2))[2]
    np.testing.assert_allclose([seconds(a[0].get("begin")) for a in fast], begin / 2, atol=1e-3)
    with pytest.raises(HandsynthError, match="page 2"):
        animated_svg(drawing, page=1)


def test_gif_and_webp_fill_in_to_the_static_png(drawing):
    static = dark(drawing.to_png())
    for fmt in ("gif", "webp"):
        data = animation(drawing, fmt)
        im = Image.open(io.BytesIO(data))
        assert im.format == fmt.upper() and im.size == Image.open(io.BytesIO(drawing.to_png())).size
        n = im.n_frames
        assert 20 <= n <= MAX_FRAMES
        ink = []
        for k in (0, n // 4, n // 2, 3 * n // 4, n - 1):
            im.seek(k)
            ink.append(dark(im))
        assert ink[0] == 0 and ink == sorted(ink) and ink[2] < 0.8 * static
        assert abs(ink[-1] - static) <= 0.02 * static
        assert im.info.get("duration") == HOLD_MS
    short = Image.open(io.BytesIO(animation(drawing, "gif", max_frames=10)))
    assert short.n_frames <= 10
    images, durations = frames(drawing, fps=10)
    assert len(images) == len(durations) and durations[0] == 100 and durations[-1] == HOLD_MS
    with pytest.raises(HandsynthError, match="gif or webp"):
        animation(drawing, "mp4")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed")
def test_animated_svg_plays_in_chromium(drawing, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    total = max(float(t[-1]) for t in page_times(drawing)) / 1000
    speed = total / 4.0                                                  # the whole page in 4 s
    path = tmp_path / "note.svg"
    path.write_text(animated_svg(drawing, speed=speed), encoding="utf-8")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 260})
            page.goto(path.as_uri())
            first = dark(page.screenshot())
            page.wait_for_timeout(5000)
            after = dark(page.screenshot())
            # the SVG's own clock, stopped at the middle of the writing
            page.evaluate(f"document.documentElement.pauseAnimations();"
                          f"document.documentElement.setCurrentTime({total / speed / 2})")
            middle = dark(page.screenshot())
        finally:
            browser.close()
    assert after > 500 and first < 0.5 * after and 0.1 * after < middle < 0.9 * after
