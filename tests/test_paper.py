"""Real paper, ruling and pen models, on real outputs of the shipped model: PDF MediaBoxes, SVG sizes
and layers, PNG pixels at a dpi, ink inside the margins, ruled lines under the baselines, pen
widths, and the default pen drawn exactly as before."""
import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from PIL import Image

import handsynth
from handsynth import HandsynthError
from handsynth.layout import PageOptions, place
from handsynth.paper import Paper, page_options, sheet_ink
from handsynth.drawing import Drawing
from handsynth.render import RULING_COLOR, Ink, bezier, pen_lines

SVG = "{http://www.w3.org/2000/svg}"
INKSCAPE = "{http://www.inkscape.org/namespaces/inkscape}"
TEXTS = ["Dear Ada,", "thank you for the tea and the cake!"]


@pytest.fixture(scope="module")
def hw():
    return handsynth.load_model()


@pytest.fixture(scope="module")
def note(hw):
    """One sampling for the whole file: a two-line note on ruled A5, through write()."""
    return hw.write("\n".join(TEXTS), seed=1, paper="a5", ruling="ruled")


def sheet(note, paper="a5", dpi=150, ruling=None, pen="uniform", **kw) -> Drawing:
    """The note's sampled lines laid out again on another sheet, as write() lays them out."""
    opts = page_options(None, "left", dpi, paper, ruling=ruling, **kw)
    ink = sheet_ink(Ink(dpi=dpi, pen=pen, seed=1))
    return Drawing(place(TEXTS, [ln.offsets for ln in note.lines], opts), ink, note.lines)


def mediaboxes(pdf: bytes) -> list:
    return [tuple(float(v) for v in m.split()) for m in re.findall(rb"/MediaBox \[ *([^\]]*?) *\]", pdf)]


def pdf_content(pdf: bytes) -> bytes:
    return b"".join(zlib.decompress(s) for s in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.DOTALL)
                    if s[:1] == b"x")


def png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


@pytest.mark.parametrize("paper, landscape, want", [
    ("a4", False, (595.28, 841.89)), ("a4", True, (841.89, 595.28)), ("letter", False, (612.0, 792.0)),
    ("148x105mm", False, (419.53, 297.64)),
])
def test_pdf_page_is_the_paper_in_points(note, paper, landscape, want):
    pdf = sheet(note, paper, landscape=landscape).to_pdf()
    (box,) = mediaboxes(pdf)
    assert box[:2] == (0, 0) and box[2:] == pytest.approx(want, abs=0.01)


def test_write_on_a4_through_the_api(hw):
    d = hw.write("on real paper", seed=2, paper="a4", x_height_mm=3, margin_mm=20)
    page = d.pages[0]
    assert (page.width, page.height) == pytest.approx((210 / 25.4 * 150, 297 / 25.4 * 150))  # kept whole
    assert mediaboxes(d.to_pdf()) == [pytest.approx((0, 0, 595.28, 841.89), abs=0.01)]
    svg = ET.fromstring(d.to_svg())
    assert (svg.get("width"), svg.get("height"), svg.get("viewBox")) == ("210.00mm", "297.00mm", "0 0 210.00 297.00")
    pts = np.concatenate(d.strokes)
    assert pts[:, 0].min() >= 20 / 25.4 * 150 - 1 and pts[:, 1].min() >= 20 / 25.4 * 150 - 1
    assert png(d.to_png()).shape == (1754, 1240, 3)
    # the writing's size: the line's body (10th-90th percentile of y) is the x-height asked for
    y = pts[:, 1] / 150 * 25.4
    assert np.percentile(y, 90) - np.percentile(y, 10) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize("paper, dpi, size", [
    ("a5", 150, (874, 1240)), ("a4", 300, (2480, 3508)), ("148x105mm", 100, (583, 413)), ("envelope-dl", 72, (312, 624)),
])
def test_png_pixels_at_the_dpi(note, paper, dpi, size):
    img = Image.open(io.BytesIO(sheet(note, paper, dpi).to_png()))
    assert img.size == size and img.info["dpi"] == pytest.approx((dpi, dpi), abs=0.05)   # PNG stores pixels per metre


def test_svg_in_millimetres(note):
    d = sheet(note, "a6", landscape=True)
    root = ET.fromstring(d.to_svg())
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("148.00mm", "105.00mm", "0 0 148.00 105.00")
    xs = [float(v) for p in root.iter(f"{SVG}path") for v in re.findall(r"-?\d+\.\d+", p.get("d"))[::2]]
    assert 15 - 0.5 < min(xs) and max(xs) < 148 - 15 + 0.5     # the ink in mm, inside the 15 mm margins


@pytest.mark.parametrize("paper, kw, size", [
    ("a5", {}, (148, 210)), ("a4", {"landscape": True}, (297, 210)),
    ("60x90mm", {"margin_mm": 8}, (60, 90)),                 # 44 mm across: the long line shrinks to fit
    ("postcard", {"margin_mm": 10, "x_height_mm": 4}, (105, 148)),
])
def test_ink_stays_inside_the_margins(note, paper, kw, size):
    d = sheet(note, paper, **kw)
    page, px = d.pages[0], 150 / 25.4
    assert len(d.pages) == 1 and (page.width, page.height) == pytest.approx((size[0] * px, size[1] * px))
    margin = kw.get("margin_mm", 15) * px
    pts = np.concatenate(d.strokes)   # the pen's path: its ink reaches half a pen width further
    assert pts[:, 0].min() >= margin - 1e-3 and pts[:, 0].max() <= page.width - margin + 1e-3
    assert pts[:, 1].min() >= margin and pts[:, 1].max() <= page.height - margin
    if size[0] == 60:
        assert pts[:, 0].max() == pytest.approx(page.width - margin, abs=0.01)   # shrunk to fit exactly


def _bottoms(strokes) -> np.ndarray:
    """The y of the lowest points of the letters' strokes (page pixels, y down): where the pen turns
    from going down to going up."""
    out = []
    for s in strokes:
        y = s[:, 1]
        i = np.flatnonzero((y[1:-1] > y[:-2]) & (y[1:-1] >= y[2:])) + 1
        out += list(y[i])
    return np.array(out)


def test_ruled_lines_sit_on_the_baselines(note):
    page = note.pages[0]
    segments, dots = page.ruling.geometry(page.width, page.height)
    ys = segments[:, 0, 1]
    px = 150 / 25.4
    assert len(dots) == 0 and np.all(segments[:, 0, 0] == 0) and np.all(segments[:, 1, 0] == page.width)
    assert np.diff(ys) == pytest.approx(8.0 * px)                                      # 8 mm apart
    assert ys.min() >= 15 * px and ys.max() <= page.height - 15 * px                   # within the margins
    xh = Paper.of("a5").x_height * px
    for line in page.lines:
        bottoms = _bottoms(line.strokes)
        body = bottoms[np.abs(bottoms - np.median(bottoms)) < 0.6 * xh]                # not the descenders
        nearest = ys[np.abs(ys - np.median(body)).argmin()]
        assert abs(np.median(body) - nearest) < 0.15 * xh, (line.text, np.median(body), nearest)


def test_ruling_is_a_layer_of_its_own_in_svg(note):
    root = ET.fromstring(note.to_svg())
    layers = root.findall(f"{SVG}g")
    assert [g.get(f"{INKSCAPE}groupmode") for g in layers] == ["layer", "layer"]
    ruling, ink = layers
    assert (ruling.get(f"{INKSCAPE}label"), ink.get(f"{INKSCAPE}label")) == ("ruling", "ink")
    assert not ruling.findall(f".//{SVG}path") and len(ruling.findall(f"{SVG}line")) == 23     # A5, 8 mm
    assert len(ink.findall(f"{SVG}path")) == len(note.strokes) and not ink.findall(f".//{SVG}line")
    assert ruling.get("stroke") == RULING_COLOR and ink.get("stroke") == note.ink.color
    dotted = ET.fromstring(sheet(note, ruling="dotted").to_svg())
    grid, ink = dotted.findall(f"{SVG}g")
    assert len(grid.findall(f"{SVG}circle")) > 500 and not grid.findall(f".//{SVG}path")
    # no ruling: the SVG as before, one plain group
    plain = ET.fromstring(sheet(note).to_svg())
    assert [g.get(f"{INKSCAPE}groupmode") for g in plain.findall(f"{SVG}g")] == [None]


def test_ruling_beneath_the_ink_in_png_and_pdf(note):
    page = note.pages[0]
    img = png(note.to_png())
    plain = png(sheet(note).to_png())
    ys = page.ruling.geometry(page.width, page.height)[0][:, 0, 1]
    row = int(np.rint(ys[-1]))                                # the last ruled line: no ink near it
    rule = img[row - 1:row + 2, 10:-10].min(0)
    assert np.all(rule[:, 2] > rule[:, 0]) and np.all(rule.sum(1) > 3 * 150)   # light blue, whole width
    assert np.all(plain[row - 1:row + 2] == 255)
    # ink is drawn over the ruling: where strokes cross a ruled line the pixels are the ink's
    pts = np.concatenate(page.strokes)
    near = pts[np.abs(pts[:, 1] - ys[[np.abs(ys - y).argmin() for y in pts[:, 1]]]) < 0.3]
    assert len(near) > 5
    r, c = np.round(near[:, 1]).astype(int), np.round(near[:, 0]).astype(int)
    # each point's darkest pixel within one pixel (the stroke's core: a point rounded to the
    # stroke's edge sits on pixels that blend with the line beneath); a ruling drawn over the
    # ink would change nearly all of them
    def core(a):
        win = np.stack([a[r + dr, c + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)], 1).astype(int)
        return win[np.arange(len(r)), win.sum(2).argmin(1)]
    same = np.abs(core(img) - core(plain)).max(1) < 20
    assert same.mean() > 0.8 and core(img)[same].sum(1).mean() < 3 * 100, (same.mean(), core(img))
    # the PDF draws the ruling colour, and only with a ruling
    rgb = np.array([int(RULING_COLOR[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    strokes = lambda pdf: np.array(re.findall(rb"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+RG", pdf_content(pdf)), float)
    assert np.abs(strokes(note.to_pdf()) - rgb).max(1).min() < 1e-6
    assert np.abs(strokes(sheet(note).to_pdf()) - rgb).max(1).min() > 0.1


def test_squared_grid_through_baselines_and_margin(note):
    page = sheet(note, ruling="squared").pages[0]
    segments, _ = page.ruling.geometry(page.width, page.height)
    rows = segments[segments[:, 0, 1] == segments[:, 1, 1]][:, 0, 1]
    cols = segments[segments[:, 0, 0] == segments[:, 1, 0]][:, 0, 0]
    step = 4.0 * 150 / 25.4
    assert np.diff(rows) == pytest.approx(step) and np.diff(cols) == pytest.approx(step)
    assert np.abs(rows - page.ruling.first).min() < 1e-6 and np.abs(cols - page.ruling.margin).min() < 1e-6
    assert rows.min() < step and rows.max() > page.height - step                        # edge to edge


def test_a_ruled_pixel_page(note):
    """--ruling without --paper: the pixel page, cut to its content, ruled through its baselines."""
    pages = place(TEXTS, [ln.offsets for ln in note.lines], PageOptions(ruling="ruled"))
    page = pages[0]
    ys = page.ruling.geometry(page.width, page.height)[0][:, 0, 1]
    assert len(ys) == 2 and np.diff(ys) == pytest.approx(PageOptions.line_pitch * PageOptions.x_height, rel=0.01)


def test_pen_models_change_the_widths(note):
    d = sheet(note, dpi=300)
    strokes = d.pages[0].strokes
    inked, coverage, moved = {}, {}, {}
    for pen in ("uniform", "ballpoint", "fineliner", "fountain"):
        ink = Ink(stroke_width=4.4, dpi=300, pen=pen, ink_variation=0)
        inked[pen] = png(Drawing(d.pages, ink).to_png()).sum(2) < 3 * 160
        coverage[pen] = inked[pen].sum()
        moved[pen] = (inked[pen] ^ inked["uniform"]).sum() / coverage["uniform"]   # pixels gained or lost
        if pen == "uniform":
            continue
        segs, widths, _ = pen_lines(strokes, ink, np.zeros((len(strokes), 4)))
        step = np.linalg.norm(segs[:, 1] - segs[:, 0], axis=1)
        fast, slow = step > np.percentile(step, 80), step < np.percentile(step, 20)
        if pen == "fineliner":
            assert widths.std() / widths.mean() < 0.05
            continue
        assert widths[fast].mean() < 0.85 * widths[slow].mean()                        # faster is thinner
        if pen == "fountain":   # a broad nib at 40 degrees: hairlines along it, full width across it
            theta = np.degrees(np.arctan2(-(segs[:, 1, 1] - segs[:, 0, 1]), segs[:, 1, 0] - segs[:, 0, 0])) % 180
            along, across = np.abs(theta - 40) < 15, np.abs(theta - 130) < 15
            assert widths[along].mean() < 0.5 * widths[across].mean()
    assert coverage["fineliner"] == pytest.approx(coverage["uniform"], rel=0.08) and moved["fineliner"] < 0.1
    assert coverage["ballpoint"] < 0.92 * coverage["uniform"]          # a ballpoint's line is finer
    assert moved["fountain"] > 0.25, moved                             # thick and thin strokes
    # the PDF holds the varying widths (as line widths in points)
    widths = set(re.findall(rb"([\d.]+) w\b", pdf_content(Drawing(d.pages, Ink(dpi=300, pen="fountain")).to_pdf())))
    assert len(widths) > 100


def test_ink_variation_is_seeded_per_stroke(note):
    page = note.pages[0]
    draw = lambda **kw: png(Drawing([page], Ink(**kw)).to_png())
    a, b, c, plain = draw(ink_variation=1.0, seed=1), draw(ink_variation=1.0, seed=1), draw(ink_variation=1.0, seed=2), draw()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # stroke by stroke the shade differs: the darkest pixel on each (not tiny) stroke's path
    strokes = [np.round(s).astype(int) for s in page.strokes if len(s) >= 10]
    shade = lambda img: [img[s[:, 1], s[:, 0]].sum(1).min() for s in strokes]
    assert np.ptp(shade(a)) > 30 and np.ptp(shade(plain)) == 0


def _reference_png(page, ink) -> bytes:
    """Today's uniform pen, spelled out: one Bezier PathPatch per stroke (as before pen models)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath
    fig = Figure(figsize=(page.width / ink.dpi, page.height / ink.dpi), dpi=ink.dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, page.width)
    ax.set_ylim(page.height, 0)
    ax.axis("off")
    fig.patch.set_facecolor(ink.background)
    for s in page.strokes:
        verts = np.vstack([s[:1], bezier(s).reshape(-1, 2)])
        ax.add_patch(PathPatch(MPath(verts, [MPath.MOVETO] + [MPath.CURVE4] * (len(verts) - 1)), fill=False,
                               edgecolor=ink.color, linewidth=ink.stroke_width * 72 / ink.dpi,
                               capstyle="round", joinstyle="round"))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=ink.dpi)
    return buf.getvalue()


def test_default_output_is_unchanged(note):
    pages = place(TEXTS, [ln.offsets for ln in note.lines], PageOptions())
    page = pages[0]
    assert page.ruling is None and page.width == 1200 and page.height < 1200 * 2 ** 0.5 / 2   # cut to content
    d = Drawing(pages, Ink())
    assert d.to_png() == _reference_png(page, Ink())
    assert d.to_png() == Drawing(pages, Ink(pen="uniform", ink_variation=0.0, seed=9)).to_png()
    assert "inkscape" not in d.to_svg()


@pytest.mark.parametrize("kw, msg", [
    ({"paper": "b9"}, "unknown paper 'b9': use a4, a5, a6, letter, postcard, envelope-dl or WIDTHxHEIGHTmm"),
    ({"paper": "a4", "margin_mm": -3}, "margin -3 mm is negative"),
    ({"paper": "a6", "margin_mm": 60}, "margins of 60 mm leave no room to write on a6 (105 x 148 mm) paper"),
    ({"paper": "10x400mm"}, "paper 10 x 400 mm is out of range"),
    ({"paper": "a4", "x_height_mm": 4, "line_spacing_mm": 5}, "the lines would overlap"),
    ({"paper": "a4", "x_height_mm": 0}, "the x-height (mm) must be a finite number above 0"),
    ({"paper": "a4", "margin_mm": "wide"}, "the margin must be a number of millimetres"),
    ({"paper": "a4", "dpi": 1200}, "a4 (210 x 297 mm) paper at 1200 dpi is 9921 x 14031 px"),
    ({"paper": "a4", "width": 800}, "either a page width in pixels (--width) or a paper size"),
    ({"margin_mm": 10}, "a margin in mm needs a paper size"),
    ({"landscape": True}, "landscape needs a paper size"),
    ({"ruling": "lined"}, "unknown ruling 'lined': use ruled, squared or dotted"),
    ({"pen": "quill"}, "unknown pen 'quill': use uniform, ballpoint, fineliner, fountain"),
    ({"ink_variation": 1.5}, "ink variation 1.5 is out of range (0 to 1)"),
])
def test_bad_paper_and_pen_options(hw, kw, msg):
    with pytest.raises(HandsynthError, match=re.escape(msg)) as e:
        hw.write("hi", **kw)
    assert "\n" not in str(e.value)


def test_cli_paper_ruling_and_pen(tmp_path):
    out = tmp_path / "note.pdf"
    run = lambda *a: subprocess.run([sys.executable, "-m", "handsynth", "write", *a], capture_output=True, text=True, check=False)
    r = run("hi Ada", "-o", str(out), "--paper", "a5", "--landscape", "--ruling", "dotted", "--pen", "fountain",
            "--margin", "12", "--x-height", "3", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert mediaboxes(out.read_bytes()) == [pytest.approx((0, 0, 595.28, 419.53), abs=0.01)]
    r = run("hi", "-o", str(tmp_path / "x.png"), "--paper", "b9")
    assert r.returncode == 2 and r.stderr.startswith("handsynth: error: unknown paper 'b9'")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "x.png").exists()
