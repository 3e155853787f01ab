"""Pen-plotter output on real writing from the shipped model: the plotter SVG read by the real
vpype, stroke ordering, simplification (against shapely), G-code parsed back, the vpype plugin."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import handsynth
from handsynth import HandsynthError, plotter
from handsynth.layout import Page, PlacedLine
from handsynth.plotter import (
    GcodeOptions,
    gcode,
    order_strokes,
    pen_up_travel,
    plot_pages,
    plotter_svg,
)
from handsynth.drawing import Drawing

VPYPE = Path(sys.executable).with_name("vpype")   # the console script pip installed with vpype
PX_PER_MM = 96 / 25.4                             # vpype's unit is the CSS pixel
SVG_NS = "{http://www.w3.org/2000/svg}"
INKSCAPE_NS = "{http://www.inkscape.org/namespaces/inkscape}"
TEXT = "Dear Ada,\nthis is a quick note.\nSee you in June!"


@pytest.fixture(scope="module")
def drawing(hw):
    return hw.write(TEXT, style="s03", seed=1)


@pytest.fixture(scope="module")
def dotted(drawing):
    """The drawing with a one-point stroke added (a dot, which plotter output must keep)."""
    page = drawing.pages[0]
    dot = PlacedLine(".", [np.array([[600.0, 20.0]], np.float32)])
    return Drawing([Page(page.width, page.height, [*page.lines, dot])], drawing.ink)


@pytest.fixture(scope="module")
def written(dotted):
    return plot_pages(dotted, order=False)[0]


@pytest.fixture(scope="module")
def ordered(dotted):
    return plot_pages(dotted)[0]


def length(strokes) -> float:
    return float(sum(np.hypot(*np.diff(s, axis=0).T).sum() for s in strokes))


def vpype_stat(*args, cwd=None) -> dict:
    """Run the real `vpype ... stat`; its figures per layer (1, 2, ...), "total" and "page"."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(VPYPE), *args, "stat"], check=False, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stderr
    out, block = {}, None
    for line in r.stdout.splitlines():
        if m := re.match(r"Current page size: \((\S+), (\S+)\)", line):
            out["page"] = (float(m[1]) / PX_PER_MM, float(m[2]) / PX_PER_MM)
        elif m := re.fullmatch(r"Layer (\d+)", line.strip()):
            block = out.setdefault(int(m[1]), {})
        elif line.strip() == "Totals":
            block = out.setdefault("total", {})
        elif block is not None and (m := re.match(r"\s+(Length|Pen-up length|Path count|vp_name): (.*)", line)):
            block.setdefault(m[1], m[2].strip("'") if m[1] == "vp_name" else float(m[2]))
    return out


def canonical(s: np.ndarray) -> bytes:
    """A stroke regardless of its direction."""
    a = np.round(s, 6)
    return min(a.tobytes(), a[::-1].copy().tobytes())


# ---- SVG, read by vpype ------------------------------------------------------------------------

def test_plotter_svg_is_polylines_in_an_inkscape_layer(dotted, ordered):
    drawing = dotted
    root = ET.fromstring(plotter_svg(ordered))
    assert root.get("width") == f"{ordered.width:.3f}mm" and root.get("height") == f"{ordered.height:.3f}mm"
    assert root.get("viewBox") == f"0 0 {ordered.width:.3f} {ordered.height:.3f}"
    layers = list(root)
    assert len(layers) == 1 and layers[0].tag == SVG_NS + "g"
    layer = layers[0]
    assert layer.get(INKSCAPE_NS + "groupmode") == "layer" and layer.get(INKSCAPE_NS + "label") == "1 ink"
    assert layer.get("id") == "layer1" and layer.get("fill") == "none" and layer.get("stroke") == drawing.ink.color
    paths = list(layer)
    assert len(paths) == len(drawing.strokes) and all(p.tag == SVG_NS + "path" for p in paths)
    number = r"-?\d+\.\d{3}"
    for p in paths:   # one open polyline: a move, then line-tos; no curves, no closing
        assert re.fullmatch(rf"M{number} {number}L{number} {number}( {number} {number})*", p.get("d"))
    assert "rect" not in plotter_svg(ordered)


def test_vpype_reads_the_plotter_svg(tmp_path, drawing, dotted, written, ordered):
    def dots(page):
        return [s for s in page.strokes if len(s) == 2 and np.hypot(*(s[1] - s[0])) == pytest.approx(plotter.DOT_MM)]
    # the added dot is kept as a short segment (readers drop zero-length paths), beside any
    # one-point strokes of the writing's own
    assert len(dots(ordered)) == len(dots(plot_pages(drawing)[0])) + 1
    drawing = dotted
    (tmp_path / "ordered.svg").write_text(plotter_svg(ordered))
    stat = vpype_stat("read", "ordered.svg", cwd=tmp_path)
    assert set(stat) == {"page", 1, "total"}
    assert stat[1]["vp_name"] == "1 ink"
    assert stat[1]["Path count"] == len(ordered.strokes) == len(drawing.strokes)
    assert stat[1]["Length"] / PX_PER_MM == pytest.approx(length(ordered.strokes), rel=1e-4)
    assert stat[1]["Pen-up length"] / PX_PER_MM == pytest.approx(ordered.travel_after, rel=1e-4)
    np.testing.assert_allclose(stat["page"], (ordered.width, ordered.height), atol=1e-3)


def test_ordering_does_as_well_as_vpype_linesort(tmp_path, written, ordered):
    import vpype_cli

    (tmp_path / "written.svg").write_text(plotter_svg(written))
    doc = vpype_cli.execute(f"read {tmp_path / 'written.svg'} linesort")
    assert len(doc.layers[1]) == len(written.strokes)
    assert ordered.travel_after <= doc.layers[1].pen_up_length()[0] / PX_PER_MM + 1e-3


def test_a_layer_per_ink_colour(tmp_path, drawing):
    import vpype_cli

    colors = ["navy" if k % 3 else "#c00000" for k in range(len(drawing.strokes))]
    page = plot_pages(drawing, colors=colors)[0]
    assert [layer.color for layer in page.layers] == ["#c00000", "navy"]   # in order of first use
    (tmp_path / "two.svg").write_text(plotter_svg(page))
    doc = vpype_cli.execute(f"read {tmp_path / 'two.svg'}")
    assert sorted(doc.layers) == [1, 2]
    assert [doc.layers[k].property("vp_name") for k in (1, 2)] == ["1 ink #c00000", "2 ink navy"]
    assert [len(doc.layers[k]) for k in (1, 2)] == [colors.count("#c00000"), colors.count("navy")]
    assert str(doc.layers[2].property("vp_color")) == "#000080"
    text = gcode(page)
    assert text.count("M0 ") == 1 and "M0 (change the pen: layer 2, navy)" in text


# ---- ordering and simplification ---------------------------------------------------------------

def test_ordering_cuts_pen_up_travel_and_keeps_every_stroke(written, ordered):
    assert ordered.travel_before == pytest.approx(written.travel_after) == pytest.approx(pen_up_travel(written.strokes))
    assert ordered.travel_after == pytest.approx(pen_up_travel(ordered.strokes))
    assert ordered.travel_after < 0.8 * ordered.travel_before
    assert sorted(map(canonical, ordered.strokes)) == sorted(map(canonical, written.strokes))
    as_written = {np.round(s, 6).tobytes() for s in written.strokes}
    assert any(np.round(s, 6).tobytes() not in as_written for s in ordered.strokes)   # some drawn backwards
    summary = plotter.travel_summary([ordered])
    assert summary.startswith(f"pen-up travel {ordered.travel_before:.1f} mm -> {ordered.travel_after:.1f} mm (")


def test_ordering_writes_lines_back_and_forth():
    # three lines written left to right: drawing every other one backwards removes the returns
    rows = [np.array([[0.0, y], [100.0, y]]) for y in (0.0, 10.0, 20.0)]
    assert pen_up_travel(rows) == pytest.approx(2 * np.hypot(100, 10))
    out = order_strokes(rows)
    assert pen_up_travel(out) == pytest.approx(20.0)
    assert order_strokes([]) == [] and len(order_strokes(rows[:1])) == 1


def test_simplify_matches_shapely_and_keeps_the_strokes(dotted, written):
    import shapely  # comes with vpype (the test and plotter extras)

    compared = 0
    for tol in (0.02, 0.1, 0.4):
        for s in written.strokes:
            ours = plotter.simplify(s, tol)
            theirs = np.asarray(shapely.simplify(shapely.LineString(s), tol, preserve_topology=False).coords)
            np.testing.assert_allclose(ours, theirs)
            compared += len(s) > 2
    assert compared > 50
    fine = plot_pages(dotted, order=False, tolerance=0.05)[0]
    assert len(fine.strokes) == len(written.strokes)
    assert sum(map(len, fine.strokes)) < 0.95 * sum(map(len, written.strokes))
    assert length(fine.strokes) == pytest.approx(length(written.strokes), rel=0.02)


# ---- G-code --------------------------------------------------------------------------------------

def parse_gcode(text: str, opts: GcodeOptions):
    """A tiny G-code reader: the polylines drawn with the pen down (machine mm), checking on the
    way that units and positioning are set first, that pen moves are the configured commands,
    that drawing moves are G1 at the drawing feed, and travel G0 (or G1 at the travel feed)."""
    down, up = opts.pen_down_command, opts.pen_up_command
    pen, pos, feed, modes, drawn, seen = None, [None, None], None, set(), [], set()
    lines = [re.sub(r"\(.*?\)|;.*", "", raw).strip() for raw in text.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if line in (down, up):
            assert {"G21", "G90"} <= modes and (line == up or pen is False)
            pen = line == down
            if pen:
                drawn.append([tuple(pos)])
            seen.add(line)
            continue
        words = {w[0]: w[1:] for w in line.split()}
        assert len(words) == len(line.split()), line
        code = line.split()[0]
        if code in ("G21", "G90"):
            modes.add(code)
        if "F" in words:
            feed = float(words["F"])
        if "X" in words or "Y" in words:
            assert {"G21", "G90"} <= modes and pen is not None, "a move before units and pen state"
            assert "Z" not in words
            pos = [float(words.get("X", pos[0])), float(words.get("Y", pos[1]))]
            if pen:
                assert code == "G1" and feed == opts.feed, line
                drawn[-1].append(tuple(pos))
            elif opts.travel_feed is None:
                assert code == "G0", line
            else:
                assert code == "G1" and feed == opts.travel_feed, line
        elif code not in ("G21", "G90", "G4", "M0", "M2"):
            raise AssertionError(f"unexpected line {line!r}")
    assert pen is False and lines[-1] == "M2" and seen == {down, up}
    return [np.array(p) for p in drawn], pos


@pytest.mark.parametrize("kw, down, up", [
    ({}, "M3 S1000", "M5"),
    ({"servo_down": 30, "servo_up": 90, "dwell": 0.15, "offset": (12.5, -4)}, "M3 S30", "M3 S90"),
    ({"pen": "z", "z_down": -1, "z_up": 4, "z_feed": 500, "travel_feed": 6000, "feed": 1500,
      "origin": "writing", "flip_y": False, "offset": (5, 5)}, "G1 Z-1.000 F500.000", "G0 Z4.000"),
    ({"pen": "custom", "pen_down": "M280 P0 S40", "pen_up": "M280 P0 S90", "decimals": 2, "home": False},
     "M280 P0 S40", "M280 P0 S90"),
])
def test_gcode_pen_down_segments_reproduce_the_strokes(ordered, kw, down, up):
    opts = GcodeOptions(**kw)
    assert (opts.pen_down_command, opts.pen_up_command) == (down, up)
    text = gcode(ordered, opts)
    drawn, last = parse_gcode(text, opts)
    assert len(drawn) == len(ordered.strokes)
    assert text.count("G4 P") == (2 * len(drawn) + 1 if opts.dwell else 0)
    ox, oy = opts.offset
    pts = np.concatenate(ordered.strokes)
    x0 = pts[:, 0].min() if opts.origin == "writing" else 0.0
    y0 = pts[:, 1].min() if opts.origin == "writing" else 0.0
    tol = 0.5 * 10 ** -opts.decimals + 1e-9
    for machine, stroke in zip(drawn, ordered.strokes):
        x = machine[:, 0] - ox + x0
        y = (ordered.height - (machine[:, 1] - oy)) if opts.flip_y else machine[:, 1] - oy + y0
        assert machine.shape == stroke.shape
        assert np.abs(np.stack([x, y], 1) - stroke).max() <= tol
    if opts.home:
        assert last == [ox, oy]


# ---- the vpype plugin --------------------------------------------------------------------------

def test_vpype_plugin_writes_a_layer(hw):
    stat = vpype_stat("handsynth", "--style", "s03", "-l", "2", "hello")
    mine = plot_pages(hw.write("hello", style="s03"), order=False)[0]
    assert set(stat) == {2, "total"}
    assert stat[2]["Path count"] == len(mine.strokes) > 0
    assert stat[2]["Length"] / PX_PER_MM == pytest.approx(length(mine.strokes), rel=1e-3)


def test_vpype_plugin_errors_and_registration():
    from importlib.metadata import entry_points

    import click
    import vpype_cli

    from handsynth.vpype_plugin import handsynth as command
    assert [e.load() for e in entry_points().select(group="vpype.plugins", name="handsynth")] == [command]
    with pytest.raises(click.ClickException, match="bias 99.0 is out of range"):
        vpype_cli.execute("handsynth --bias 99 hello")
    with pytest.raises(click.ClickException, match="unknown style 'nope'"):
        vpype_cli.execute("handsynth --style nope hello")


def test_only_the_plugin_imports_vpype():
    root = Path(handsynth.__file__).parent
    for path in root.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.add((node.module or "").split(".")[0])
        if path.name != "vpype_plugin.py":
            assert not names & {"vpype", "vpype_cli", "shapely"}, path


# ---- bad options ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    ({"pen": "laser"}, "unknown pen 'laser': use servo, z or custom"),
    ({"origin": "centre"}, "unknown origin 'centre'"),
    ({"feed": 0}, r"feed 0 is out of range \(1 to 100000 mm/min\)"),
    ({"feed": "fast"}, "feed must be a number"),
    ({"travel_feed": -5}, "travel feed -5 is out of range"),
    ({"servo_down": 2.5}, "servo down must be a whole number"),
    ({"pen": "z", "z_up": 0, "z_down": 1}, r"z up \(0 mm\) must be above z down \(1 mm\)"),
    ({"pen": "custom", "pen_down": "M3\nM5", "pen_up": "M5"}, "pen down command must be one line of G-code"),
    ({"pen": "custom", "pen_up": "M5"}, "pen down command must be one line"),
    ({"pen_down": "M3 S5"}, "pen down/up commands are for pen=custom"),
    ({"offset": (1,)}, "offset must be two numbers"),
    ({"offset": (0, float("nan"))}, "offset y nan is out of range"),
    ({"dwell": 60}, "dwell 60 is out of range"),
    ({"decimals": 9}, "decimals must be a whole number from 0 to 6"),
])
def test_bad_gcode_options(kw, message):
    with pytest.raises(HandsynthError, match=message) as e:
        GcodeOptions(**kw)
    assert "\n" not in str(e.value)


def test_bad_plot_options(drawing):
    with pytest.raises(HandsynthError, match=r"simplify tolerance -1 is out of range \(0 to 5 mm\)"):
        plot_pages(drawing, tolerance=-1)
    with pytest.raises(HandsynthError, match="simplify tolerance must be a number"):
        plot_pages(drawing, tolerance="fine")
    with pytest.raises(HandsynthError, match="2 colours for .* strokes: give one colour per stroke"):
        plot_pages(drawing, colors=["red", "blue"])
    with pytest.raises(HandsynthError, match="'rouge' is not a colour"):
        plot_pages(drawing, colors=["rouge"] * len(drawing.strokes))


def test_gcode_numbers_given_as_text_become_floats():
    opts = GcodeOptions(feed="1500", offset=("10", 2), pen="z", z_up="2.5")
    assert (opts.feed, opts.offset, opts.z_up) == (1500.0, (10.0, 2.0), 2.5)
    assert opts.pen_up_command == "G0 Z2.500"
