"""A fuzz corpus of bad inputs (issue 18) against the CLI, the Python API and the HTTP API.

Numbers (nan, inf, -0, 2**63, 2**70, floats beyond float32 in sample coordinates, negative and
zero sizes), wrong types for every ``write()`` argument, encodings (invalid UTF-8 on stdin and in
argv, surrogates), sizes (JSON nested 200,000 deep, files over the limits, /dev/zero, a
1,000,000-point sample), files (outputs into /proc, a folder, a missing folder, a file as a
folder; missing inputs) and model files (no alphabet, NaN weights, zero or NaN offset_std, a
wrong alphabet size, truncated, damaged, empty, random bytes, pickles that are no model).

What must hold, for every case:

- CLI: exit status 2, nothing on stdout (no LAPACK "DLASCL" lines), exactly one line on stderr
  starting ``handsynth: error:``, no traceback, no file (nor temporary file) left behind;
- Python API: a ``handsynth.HandsynthError`` with a one-line message, nothing printed, no warning;
- HTTP API (a real uvicorn server on a loopback port, as tests/test_server.py starts it): a 4xx
  answer (never 500) with a JSON body ``{"error": one line}``;
- memory: the process running every case peaks under ``MEMORY_BOUND_MB`` resident
  (``ru_maxrss``), and it runs under an address-space limit, so a runaway read fails instead
  of taking the machine.

Every case runs in ONE child process (this file run as a script, ``--fuzz-runner``), which
writes its fixtures, loads the shipped model once, runs the CLI cases through
``handsynth.cli.main`` with file descriptors 1 and 2 captured, the API cases, and then the HTTP
cases against a live server; the tests here read its report. A few real ``python -m handsynth``
processes (run at once) check what only a process shows: argv and stdin bytes, exit status.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
MEMORY_BOUND_MB = 1536               # resident peak of the process running every case
ADDRESS_SPACE_LIMIT = 8 * 2**30      # RLIMIT_AS of that process: a runaway allocation fails there
RUNNER_TIMEOUT_S = 240

# ----------------------------------------------------------------------------------- fixtures


def _sample(text="hello there", n_strokes=6, per_stroke=24, scale=1.0):
    """A made-up handwriting sample (canvas coordinates): loopy strokes along a line."""
    import numpy as np
    strokes = []
    for k in range(n_strokes):
        t = np.linspace(0, 4 * np.pi, per_stroke)
        x = 40 + k * 70 + 8 * t + 6 * np.cos(t)
        y = 100 - 18 * np.abs(np.sin(t / 2)) + 4 * np.sin(t)
        strokes.append((np.round(np.column_stack([x, y]), 1) * scale).tolist())
    return {"text": text, "strokes": strokes, "y_axis": "down"}


def _with_point(value, stroke=0, point=0, axis=0):
    s = _sample()
    s["strokes"][stroke][point][axis] = value
    return s


def _sample_text(first_value: str) -> str:
    """A sample's JSON with its first coordinate written as ``first_value`` (a literal)."""
    doc = json.dumps(_with_point(12345.5))
    assert doc.count("12345.5") == 1
    return doc.replace("12345.5", first_value)


def make_fixtures(d: Path) -> None:
    """Every input file the cases name, written into ``d``."""
    import pickle

    import numpy as np
    import torch

    def w(name, text):
        (d / name).write_text(text, encoding="utf-8")

    w("good.json", json.dumps(_sample()))
    for name, literal in [("coord_1e308", "1e308"), ("coord_1e39", "1e39"), ("coord_m1e39", "-1e39"),
                          ("coord_3.5e38", "3.5e38"), ("coord_2e70", str(2**70)), ("coord_2e63", str(2**63)),
                          ("coord_400digits", "9" * 400), ("coord_5000digits", "7" * 5000),
                          ("coord_1e999", "1e999"), ("coord_nan", "NaN"), ("coord_inf", "-Infinity"),
                          ("coord_string", '"12"'), ("coord_bool", "true"), ("coord_null", "null"),
                          ("coord_list", "[1, 2]"), ("coord_object", '{"x": 1}')]:
        w(f"{name}.json", _sample_text(literal))
    w("scaled_1e30.json", json.dumps(_sample(scale=1e30)))
    w("zero.json", json.dumps(_sample(scale=0.0)))
    w("negzero.json", json.dumps(_sample(scale=-0.0)))
    mixed = _sample()
    mixed["strokes"][1][3] = [1.0, 2.0, 3.0]
    w("mixed.json", json.dumps(mixed))
    w("deep.json", "[" * 200_000 + "]" * 200_000)
    w("deep_strokes.json", '{"text": "hello there", "strokes": ' + "[" * 200_000 + "]" * 200_000 + "}")
    w("huge.json", json.dumps(_sample()) + " " * (17 * 2**20))          # over the 16 MiB file limit
    pts = [[i % 500, i * 7 % 300] for i in range(1_000_000)]     # about 10 MB: under the file limit
    w("million.json", json.dumps({"text": "hello there", "strokes": [pts]}))
    w("empty.json", "")
    w("list.json", "[]")
    w("text_number.json", json.dumps({**_sample(), "text": 5}))
    w("strokes_number.json", json.dumps({**_sample(), "strokes": 5}))
    w("two.json", json.dumps({"samples": [_sample(), _sample("hi")]}))   # the second primes too: checked
    w("samples_empty.json", json.dumps({"samples": []}))
    w("y_axis.json", json.dumps({**_sample(), "y_axis": "sideways"}))
    (d / "latin1.json").write_bytes(json.dumps(_sample("caf\u00e9 au lait")).encode("utf-8").replace(b"\\u00e9", b"\xe9"))
    (d / "utf16.json").write_bytes(json.dumps(_sample()).encode("utf-16"))
    (d / "nosamples").mkdir()
    (d / "out").mkdir()

    # model files, from the shipped one
    from handsynth import DEFAULT_MODEL
    raw = DEFAULT_MODEL.read_bytes()
    ck = torch.load(DEFAULT_MODEL, map_location="cpu", weights_only=True)

    def model(name, **change):
        c = {**ck, "model": dict(ck["model"])}
        for k, v in change.items():
            if v is None:
                c.pop(k)
            else:
                c[k] = v
        torch.save(c, d / name)

    first = next(iter(ck["model"]))
    nan_w = ck["model"][first].clone()
    nan_w.view(-1)[5] = float("nan")
    inf_w = ck["model"][first].clone()
    inf_w.view(-1)[7] = float("inf")
    model("no_alphabet.pt", alphabet=None)
    model("alphabet_number.pt", alphabet=5)
    model("alphabet_short.pt", alphabet=ck["alphabet"][:-1])
    model("nan_weights.pt", model={**ck["model"], first: nan_w})
    model("inf_weights.pt", model={**ck["model"], first: inf_w})
    model("zero_std.pt", offset_std=[0.0, 0.0])
    model("negzero_std.pt", offset_std=[-0.0, 0.27])
    model("nan_std.pt", offset_std=[float("nan"), 0.27])
    model("inf_mean.pt", offset_mean=[float("inf"), 0.0])
    model("std_three.pt", offset_std=[0.3, 0.3, 0.3])
    model("std_text.pt", offset_std="wide")
    model("no_std.pt", offset_std=None)
    model("config_text.pt", config="big")
    model("no_weights.pt", model=None)
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "truncated_end.pt").write_bytes(raw[:-100])
    damaged = bytearray(raw)
    damaged[len(raw) // 2: len(raw) // 2 + 256] = bytes(256)
    (d / "damaged.pt").write_bytes(bytes(damaged))
    (d / "random.pt").write_bytes(np.random.default_rng(1).bytes(4096))
    (d / "empty.pt").write_bytes(b"")
    torch.save([1, 2, 3], d / "list.pt")
    (d / "pickle4.pt").write_bytes(pickle.dumps({"model": {}, "alphabet": "ab"}, protocol=4))
    (d / "pickle2_list.pt").write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    (d / "pickle_object.pt").write_bytes(pickle.dumps(Path("x"), protocol=2))
    (d / "text.pt").write_text("not a model")
    (d / "models").mkdir()


# ----------------------------------------------------------------------------------- the cases
# CLI: (name, argv, stdin bytes or None, a fragment the one-line message must hold). {d}: the
# fixtures; {o}: an empty folder that must stay empty.
W = ["write", "hello", "-o", "{o}/out.png"]

CLI_CASES = [
    # numbers
    ("seed 2**63", W + ["--seed", str(2**63)], None, "seed must be a whole number"),
    ("seed 2**70", W + ["--seed", str(2**70)], None, "seed must be a whole number"),
    ("seed -1", W + ["--seed", "-1"], None, "seed must be a whole number"),
    ("seed nan", W + ["--seed", "nan"], None, "--seed"),
    ("seed 1.5", W + ["--seed", "1.5"], None, "--seed"),
    ("seed empty", W + ["--seed", ""], None, "--seed"),
    ("width nan", W + ["--width", "nan"], None, "--width"),
    ("width -5", W + ["--width", "-5"], None, "width"),
    ("width 0", W + ["--width", "0"], None, "width"),
    ("width -0", W + ["--width", "-0"], None, "width"),
    ("width 2**70", W + ["--width", str(2**70)], None, "width"),
    ("bias nan", W + ["--bias", "nan"], None, "bias"),
    ("bias inf", W + ["--bias", "inf"], None, "bias"),
    ("bias -inf", W + ["--bias", "-inf"], None, "bias"),
    ("bias 1e309", W + ["--bias", "1e309"], None, "bias"),
    ("bias -1", W + ["--bias", "-1"], None, "bias"),
    ("stroke width nan", W + ["--stroke-width", "nan"], None, "stroke"),
    ("stroke width 0", W + ["--stroke-width", "0"], None, "stroke"),
    ("stroke width -1", W + ["--stroke-width", "-1"], None, "stroke"),
    ("stroke width 1e39", W + ["--stroke-width", "1e39"], None, "stroke"),
    ("dpi 0", W + ["--dpi", "0"], None, "dpi"),
    ("dpi -3", W + ["--dpi", "-3"], None, "dpi"),
    ("dpi 2**70", W + ["--dpi", str(2**70)], None, "dpi"),
    ("dpi nan", W + ["--dpi", "nan"], None, "--dpi"),
    ("margin nan", W + ["--paper", "a5", "--margin", "nan"], None, "margin"),
    ("margin -1", W + ["--paper", "a5", "--margin", "-1"], None, "margin"),
    ("x-height 0", W + ["--paper", "a5", "--x-height", "0"], None, "x-height"),
    ("x-height inf", W + ["--paper", "a5", "--x-height", "inf"], None, "x-height"),
    ("line spacing -1", W + ["--paper", "a5", "--line-spacing", "-1"], None, "spacing"),
    ("paper 0x0mm", W + ["--paper", "0x0mm"], None, "paper"),
    ("paper 1e39", W + ["--paper", "1e39x1e39mm"], None, "paper"),
    ("paper nan", W + ["--paper", "nanxnanmm"], None, "paper"),
    ("paper and width", W + ["--paper", "a5", "--width", "800"], None, "not both"),
    ("ink variation nan", W + ["--ink-variation", "nan"], None, "ink"),
    ("ink variation 2", W + ["--ink-variation", "2"], None, "ink"),
    ("simplify nan", ["write", "hello", "-o", "{o}/out.svg", "--plotter", "--simplify", "nan"], None, "simplify"),
    ("simplify -1", ["write", "hello", "-o", "{o}/out.svg", "--plotter", "--simplify", "-1"], None, "simplify"),
    ("gcode offset nan", ["write", "hello", "-o", "{o}/out.gcode", "--offset", "nan,nan"], None, "offset"),
    ("gcode offset text", ["write", "hello", "-o", "{o}/out.gcode", "--offset", "a,b"], None, "offset"),
    ("gcode feed inf", ["write", "hello", "-o", "{o}/out.gcode", "--feed", "inf"], None, "feed"),
    ("gcode servo 2**70", ["write", "hello", "-o", "{o}/out.gcode", "--servo-down", str(2**70)], None, "servo"),
    ("redo word 0", W + ["--redo-word", "0"], None, "redo-word"),
    ("redo word 2**70", W + ["--redo-word", str(2**70)], None, "redo-word"),
    ("redo seed 2**70", W + ["--redo-word", "1", "--redo-seed", str(2**70)], None, "seed"),
    ("redo seed -1", W + ["--redo-word", "1", "--redo-seed", "-1"], None, "redo-seed"),
    # types and choices
    ("pen unknown", W + ["--pen", "crayon"], None, "--pen"),
    ("align unknown", W + ["--align", "up"], None, "--align"),
    ("colour empty", W + ["--color", ""], None, "colour"),
    ("colour junk", W + ["--color", "#12345g"], None, "colour"),
    ("style unknown", W + ["--style", "5"], None, "unknown style"),
    ("style and style file", W + ["--style", "s01", "--style-file", "{d}/good.json"], None, "not both"),
    ("no output", ["write", "hello"], None, "-o/--output"),
    ("unknown option", W + ["--wobble"], None, "unrecognized"),
    ("unknown command", ["scribble"], None, "invalid choice"),
    # text and encodings
    ("empty text", ["write", "", "-o", "{o}/out.png"], None, "empty text"),
    ("blank text", ["write", " \n\t ", "-o", "{o}/out.png"], None, "empty text"),
    ("text over the limit", ["write", "x" * 3001, "-o", "{o}/out.png"], None, "limit is 3000"),
    ("text NUL", ["write", "hi\x00there", "-o", "{o}/out.png"], None, "cannot write"),
    ("text surrogate escape", ["write", "caf\udce9", "-o", "{o}/out.png"], None, "not UTF-8"),
    ("text lone surrogate", ["write", "hi \ud800", "-o", "{o}/out.png"], None, "cannot write"),
    ("text unknown characters", ["write", "\u20ac\u00b5\u4e2d", "-o", "{o}/out.png"], None, "cannot write"),
    ("stdin invalid UTF-8", ["write", "-", "-o", "{o}/out.png"], b"caf\xe9 au lait", "not UTF-8"),
    ("stdin UTF-16", ["write", "-", "-o", "{o}/out.png"], "hello".encode("utf-16"), "not UTF-8"),
    ("stdin empty", ["write", "-", "-o", "{o}/out.png"], b"", "empty text"),
    ("stdin over the limit", ["write", "-", "-o", "{o}/out.png"], b"a" * 20_000, "limit of 3000"),
    ("stdin NULs", ["write", "-", "-o", "{o}/out.png"], bytes(64), "cannot write"),
    # style files: numbers, sizes, encodings
    *[(f"style file {n}", W + ["--style-file", "{d}/" + n + ".json"], None, frag) for n, frag in [
        ("coord_1e308", "coordinate"), ("coord_1e39", "coordinate"), ("coord_m1e39", "coordinate"),
        ("coord_3.5e38", "coordinate"), ("coord_2e70", "coordinate"), ("coord_2e63", "coordinate"),
        ("coord_400digits", "too large"), ("coord_5000digits", "digits"), ("coord_1e999", "finite"),
        ("coord_nan", "finite"), ("coord_inf", "finite"), ("coord_string", "numeric"), ("coord_bool", "numeric"),
        ("coord_null", "numeric"), ("coord_list", "numeric"), ("coord_object", "numeric"),
        ("scaled_1e30", "coordinate"), ("zero", "do not look like"), ("negzero", "do not look like"),
        ("mixed", "same length"), ("deep", "nested too deeply"), ("deep_strokes", "nested too deeply"),
        ("huge", "MiB"), ("million", "limit of 20000"), ("empty", "not valid JSON"), ("list", "JSON object"),
        ("text_number", "'text'"), ("strokes_number", "'strokes'"), ("two", "sample 1: the sample's text is too short"),
        ("samples_empty", "non-empty list"), ("y_axis", "y_axis"), ("latin1", "not UTF-8"), ("utf16", "not UTF-8"),
        ("missing", "no such file")]],
    ("style file /dev/zero", W + ["--style-file", "/dev/zero"], None, "MiB"),
    ("style file folder", W + ["--style-file", "{d}/nosamples"], None, "no .json"),
    ("style file is a model", W + ["--style-file", "{d}/list.pt"], None, "not UTF-8"),
    # output files
    ("output /proc", ["write", "hello", "-o", "/proc/x.png"], None, "does not accept new files"),
    ("output /sys", ["write", "hello", "-o", "/sys/x.png"], None, "cannot write there"),
    ("output folder", ["write", "hello", "-o", "{o}"], None, "is a folder"),
    ("output missing folder", ["write", "hello", "-o", "{o}/nofolder/x.png"], None, "does not exist"),
    ("output under a file", ["write", "hello", "-o", "{d}/good.json/x.png"], None, "not a folder"),
    ("output empty name", ["write", "hello", "-o", ""], None, "file name"),
    ("output unknown format", ["write", "hello", "-o", "{o}/x.bmp"], None, "unknown output format"),
    ("output no extension", ["write", "hello", "-o", "{o}/x"], None, "unknown output format"),
    ("output NUL", ["write", "hello", "-o", "{o}/a\x00.png"], None, "file name"),
    # model files
    *[(f"model {n}", W + ["--model", "{d}/" + n], None, frag) for n, frag in [
        ("no_alphabet.pt", "no alphabet"), ("alphabet_number.pt", "alphabet"), ("alphabet_short.pt", "alphabet"),
        ("nan_weights.pt", "NaN"), ("inf_weights.pt", "NaN or infinite"), ("zero_std.pt", "offset_std"),
        ("negzero_std.pt", "offset_std"), ("nan_std.pt", "offset_std"), ("inf_mean.pt", "offset_mean"),
        ("std_three.pt", "offset_std"), ("std_text.pt", "offset_std"), ("no_std.pt", "offset_std"),
        ("config_text.pt", "not a handsynth model"), ("no_weights.pt", "not a handsynth model"),
        ("truncated.pt", "truncated"), ("truncated_end.pt", "truncated"), ("damaged.pt", "corrupt"),
        ("random.pt", "not a PyTorch file"), ("empty.pt", "empty"), ("list.pt", "not a handsynth model"),
        ("pickle4.pt", "not a PyTorch file"), ("pickle2_list.pt", "not a"), ("pickle_object.pt", "not a"),
        ("text.pt", "not a readable handsynth model file"), ("models", "is a folder"),
        ("missing.pt", "no such model file")]],
    ("model /dev/zero", W + ["--model", "/dev/zero"], None, "not a regular file"),
    ("model empty name", W + ["--model", " "], None, "shipped model"),
    # other commands
    ("serve port 99999", ["serve", "--port", "99999"], None, "port number"),
    ("serve port -1", ["serve", "--port", "-1"], None, "port number"),
    ("styles sheet into /proc", ["styles", "--sheet", "/proc/sheet.png"], None, "does not accept new files"),
    ("train samples /dev/zero", ["train", "--samples", "/dev/zero", "--out", "{d}/run", "--max-steps", "1"], None, "MiB"),
    ("corpus samples nested deep", ["corpus", "--samples", "{d}/deep.json", "-q"], None, "nested too deeply"),
]

# Python API: (name, code run with hw, d (a written drawing), D (the fixtures), O (an empty
# folder), sample (a good sample dict), Path, math and np in scope, a fragment of the message).
API_CASES = [
    ("text 123", "hw.write(123)", "text must be a string"),
    ("text None", "hw.write(None)", "text must be a string"),
    ("text bytes", "hw.write(b'hi')", "text must be a string"),
    ("text list", "hw.write(['hi'])", "text must be a string"),
    ("text empty", "hw.write('')", "empty text"),
    ("text over the limit", "hw.write('x' * 10**6)", "limit is 3000"),
    ("text lone surrogate", "hw.write('hi \\ud800')", "cannot write"),
    ("style 5", "hw.write('hi', style=5)", "style must be"),
    ("style list", "hw.write('hi', style=['s01'])", "style sample: expected a JSON object"),
    ("style float", "hw.write('hi', style=1.5)", "style must be"),
    ("style bytes", "hw.write('hi', style=b's01')", "style must be"),
    ("style unknown", "hw.write('hi', style='nope')", "unknown style"),
    ("style dict empty", "hw.write('hi', style={})", "'text'"),
    ("style /dev/zero", "hw.write('hi', style=Path('/dev/zero'))", "MiB"),
    ("style deep file", "hw.write('hi', style=D / 'deep.json')", "nested too deeply"),
    ("style NUL path", "hw.write('hi', style=Path('a\\x00b.json'))", "file name"),
    ("style coordinate 1e39", "hw.write('hi', style=_with_point(1e39))", "coordinate"),
    ("style coordinate 1e308", "hw.write('hi', style=_with_point(1e308))", "coordinate"),
    ("style coordinate -1e39 y", "hw.write('hi', style=_with_point(-1e39, 2, 5, 1))", "coordinate"),
    ("style coordinate 2**70", "hw.write('hi', style=_with_point(2**70))", "coordinate"),
    ("style coordinate 10**400", "hw.write('hi', style=_with_point(10**400))", "too large"),
    ("style coordinate nan", "hw.write('hi', style=_with_point(math.nan))", "finite"),
    ("style coordinate inf", "hw.write('hi', style=_with_point(math.inf))", "finite"),
    ("style coordinate string", "hw.write('hi', style=_with_point('12'))", "numeric"),
    ("style coordinate bool", "hw.write('hi', style=_with_point(True))", "numeric"),
    ("style coordinate None", "hw.write('hi', style=_with_point(None))", "numeric"),
    ("style numpy strings", "hw.write('hi', style={**sample, 'strokes': [np.array([['1', '2']] * 40)]})", "numeric"),
    ("style numpy float32 inf", "hw.write('hi', style={**sample, 'strokes': [np.full((40, 2), np.float32(np.inf))]})", "finite"),
    ("style scaled 1e30", "hw.write('hi', style=_sample(scale=1e30))", "coordinate"),
    ("style all zero", "hw.write('hi', style=_sample(scale=0.0))", "do not look like"),
    ("style million points", "hw.write('hi', style={'text': 'hello there', 'strokes': [[[1.0, 2.0]] * 1_000_000]})",
     "limit of 20000"),
    ("style nested points", "hw.write('hi', style={'text': 'hello there', 'strokes': [[[[1.0, 2.0]]] * 40]})", "numeric"),
    ("style deep object", "hw.write('hi', style=_deep(100_000))", "numeric"),
    ("width nan", "hw.write('hi', width=math.nan)", "width"),
    ("width inf", "hw.write('hi', width=math.inf)", "width"),
    ("width text", "hw.write('hi', width='wide')", "width"),
    ("width 1.5", "hw.write('hi', width=700.5)", "width"),
    ("width -5", "hw.write('hi', width=-5)", "width"),
    ("width -0", "hw.write('hi', width=-0)", "width"),
    ("width 2**70", "hw.write('hi', width=2**70)", "width"),
    ("width True", "hw.write('hi', width=True)", "width"),
    ("seed 2**70", "hw.write('hi', seed=2**70)", "seed"),
    ("seed 2**63", "hw.write('hi', seed=2**63)", "seed"),
    ("seed text", "hw.write('hi', seed='x')", "seed"),
    ("seed None", "hw.write('hi', seed=None)", "seed"),
    ("seed nan", "hw.write('hi', seed=math.nan)", "seed"),
    ("seed 1.5", "hw.write('hi', seed=1.5)", "seed"),
    ("seed -1", "hw.write('hi', seed=-1)", "seed"),
    ("seed True", "hw.write('hi', seed=True)", "seed"),
    ("bias text", "hw.write('hi', bias='2')", "bias must be a number"),
    ("bias None", "hw.write('hi', bias=None)", "bias must be a number"),
    ("bias nan", "hw.write('hi', bias=math.nan)", "bias"),
    ("bias inf", "hw.write('hi', bias=math.inf)", "bias"),
    ("bias 2**70", "hw.write('hi', bias=2**70)", "bias"),
    ("bias 10**400", "hw.write('hi', bias=10**400)", "bias"),
    ("bias True", "hw.write('hi', bias=True)", "bias must be a number"),
    ("skip_unknown yes", "hw.write('hi', skip_unknown='yes')", "skip_unknown"),
    ("skip_unknown 1", "hw.write('hi', skip_unknown=1)", "skip_unknown"),
    ("stroke_width text", "hw.write('hi', stroke_width='x')", "stroke_width"),
    ("stroke_width nan", "hw.write('hi', stroke_width=math.nan)", "stroke"),
    ("stroke_width 0", "hw.write('hi', stroke_width=0)", "stroke"),
    ("stroke_width 1e308", "hw.write('hi', stroke_width=1e308)", "stroke"),
    ("dpi nan", "hw.write('hi', dpi=math.nan)", "dpi"),
    ("dpi text", "hw.write('hi', dpi='x')", "dpi"),
    ("dpi 1.5", "hw.write('hi', dpi=1.5)", "dpi"),
    ("dpi 0", "hw.write('hi', dpi=0)", "dpi"),
    ("dpi 2**70", "hw.write('hi', dpi=2**70)", "dpi"),
    ("color 5", "hw.write('hi', color=5)", "colour"),
    ("background list", "hw.write('hi', background=[1])", "colour"),
    ("align 5", "hw.write('hi', align=5)", "alignment"),
    ("paper 5", "hw.write('hi', paper=5)", "paper"),
    ("paper 1e39", "hw.write('hi', paper='1e39x1e39mm')", "paper"),
    ("landscape yes", "hw.write('hi', paper='a5', landscape='yes')", "landscape"),
    ("margin nan", "hw.write('hi', paper='a5', margin_mm=math.nan)", "margin"),
    ("margin text", "hw.write('hi', paper='a5', margin_mm='x')", "margin"),
    ("line spacing inf", "hw.write('hi', paper='a5', line_spacing_mm=math.inf)", "spacing"),
    ("x-height -1", "hw.write('hi', paper='a5', x_height_mm=-1)", "x-height"),
    ("ruling 5", "hw.write('hi', ruling=5)", "ruling"),
    ("pen 5", "hw.write('hi', pen=5)", "pen"),
    ("ink_variation text", "hw.write('hi', ink_variation='x')", "ink_variation"),
    ("ink_variation nan", "hw.write('hi', ink_variation=math.nan)", "ink"),
    ("redo 5", "hw.write('hi', redo=5)", "redo"),
    ("redo seed 2**70", "hw.write('hi', redo={0: 2**70})", "seed"),
    ("redo word text", "hw.write('hi', redo={'x': 1})", "word number"),
    ("redo word -1", "hw.write('hi', redo={-1: 1})", "word number"),
    ("redo word 2**70", "hw.write('hi', redo={2**70: 1})", "does not exist"),
    ("progress 5", "hw.write('hi', progress=5)", "progress"),
    ("check 5", "hw.write('hi', check=5)", "check"),
    ("redo_word not a drawing", "hw.redo_word(5, 0, 1)", "drawing"),
    ("redo_word index text", "hw.redo_word(d, 'x', 1)", "word number"),
    ("redo_word index 2**70", "hw.redo_word(d, 2**70, 1)", "does not exist"),
    ("redo_word seed 2**70", "hw.redo_word(d, 0, 2**70)", "seed"),
    ("redo_word seed -1", "hw.redo_word(d, 0, -1)", "seed"),
    ("save None", "d.save(None)", "file name"),
    ("save 5", "d.save(5)", "file name"),
    ("save empty", "d.save('')", "file name"),
    ("save folder", "d.save(O)", "is a folder"),
    ("save /proc", "d.save('/proc/x.png')", "does not accept new files"),
    ("save missing folder", "d.save(O / 'no' / 'x.png')", "does not exist"),
    ("save under a file", "d.save(D / 'good.json' / 'x.png')", "not a folder"),
    ("save NUL", "d.save(str(O / 'a\\x00.png'))", "file name"),
    ("save bmp", "d.save(O / 'x.bmp')", "unknown output format"),
    ("save output 5", "d.save(O / 'x.png', 5)", "Output"),
    ("render bmp", "d.render('bmp')", "unknown format"),
    ("render 5", "d.render(5)", "unknown format"),
    ("render page 5", "d.render('png', page=5)", "page 5"),
    ("to_png 5", "d.to_png(5)", "page 5"),
    ("to_png text", "d.to_png('x')", "page"),
    ("to_png -1", "d.to_png(-1)", "page"),
    ("to_png 2**70", "d.to_png(2**70)", "page"),
    ("to_svg 5", "d.to_svg(5)", "page 5"),
    ("to_svg None", "d.to_svg(None)", "page"),
    ("word_strokes 99", "d.word_strokes(99)", "does not exist"),
    ("load_model 123", "load_model(123)", "model must be"),
    ("load_model list", "load_model([])", "model must be"),
    ("load_model None-like empty", "load_model('')", "shipped model"),
    ("load_model NUL", "load_model('a\\x00b')", "shipped model"),
    ("load_model folder", "load_model(D / 'models')", "is a folder"),
    ("load_model /dev/zero", "load_model('/dev/zero')", "not a regular file"),
    ("load_model truncated", "load_model(D / 'truncated.pt')", "truncated"),
    ("load_model NaN weights", "load_model(D / 'nan_weights.pt')", "NaN"),
    ("load_model zero offset_std", "load_model(D / 'zero_std.pt')", "offset_std"),
    ("load_model no alphabet", "load_model(D / 'no_alphabet.pt')", "no alphabet"),
    ("load_model random bytes", "load_model(D / 'random.pt')", "not a PyTorch file"),
    ("load_model list pickle", "load_model(D / 'list.pt')", "not a handsynth model"),
]

# HTTP: (name, path, JSON text of the body (or bytes), content type, a fragment of the error).
_S = json.dumps(_sample())


def _zip_bomb() -> str:
    """Base64 of a small zip whose one member unpacks to 200 MB (as a "tuned" file)."""
    import base64
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("archive/data.pkl", "w") as f:
            block = bytes(1 << 20)
            for _ in range(200):
                f.write(block)
    return base64.b64encode(buf.getvalue()).decode()


def _http_sample(literal: str) -> str:
    return _sample_text(literal)


HTTP_CASES = [
    *[(f"{route} coordinate {lit}", route, body(lit), "application/json", "coordinate")
      for route, body in (("/v1/write", lambda lit: '{"text": "hi", "style_sample": ' + _http_sample(lit) + "}"),
                          ("/v1/samples/check", _http_sample))
      for lit in ("1e39", "1e308", "-1e39", "3.5e38", str(2**70))],
    ("/v1/write coordinate 1e999", "/v1/write", '{"text": "hi", "style_sample": ' + _http_sample("1e999") + "}",
     "application/json", ""),
    ("/v1/write coordinate 400 digits", "/v1/write", '{"text": "hi", "style_sample": ' + _http_sample("9" * 400) + "}",
     "application/json", ""),
    ("/v1/samples/check coordinate NaN", "/v1/samples/check", _http_sample("NaN"), "application/json", ""),
    ("/v1/samples/check scaled 1e30", "/v1/samples/check", json.dumps(_sample(scale=1e30)), "application/json", "coordinate"),
    ("/v1/samples/check all zero", "/v1/samples/check", json.dumps(_sample(scale=0.0)), "application/json",
     "do not look like"),
    ("/v1/samples/check coordinate string", "/v1/samples/check", _http_sample('"x"'), "application/json", ""),
    ("write seed 2**63", "/v1/write", json.dumps({"text": "hi", "seed": 2**63}), "application/json", "seed"),
    ("write seed 2**70", "/v1/write", json.dumps({"text": "hi", "seed": 2**70}), "application/json", "seed"),
    ("write seed 1.5", "/v1/write", json.dumps({"text": "hi", "seed": 1.5}), "application/json", "seed"),
    ("write seed text", "/v1/write", json.dumps({"text": "hi", "seed": "x"}), "application/json", "seed"),
    ("write seed -1", "/v1/write", json.dumps({"text": "hi", "seed": -1}), "application/json", "seed"),
    ("write bias NaN", "/v1/write", '{"text": "hi", "bias": NaN}', "application/json", "bias"),
    ("write bias Infinity", "/v1/write", '{"text": "hi", "bias": Infinity}', "application/json", "bias"),
    ("write bias 1e308", "/v1/write", '{"text": "hi", "bias": 1e308}', "application/json", "bias"),
    ("write width NaN", "/v1/write", '{"text": "hi", "width": NaN}', "application/json", "width"),
    ("write width -0", "/v1/write", '{"text": "hi", "width": -0}', "application/json", "width"),
    ("write width 1e308", "/v1/write", '{"text": "hi", "width": 1e308}', "application/json", "width"),
    ("write width text", "/v1/write", '{"text": "hi", "width": "wide"}', "application/json", "width"),
    ("write dpi 2**70", "/v1/write", json.dumps({"text": "hi", "dpi": 2**70}), "application/json", "dpi"),
    ("write stroke width 0", "/v1/write", json.dumps({"text": "hi", "stroke_width": 0}), "application/json", "stroke"),
    ("write margin -1", "/v1/write", json.dumps({"text": "hi", "paper": "a5", "margin": -1}), "application/json", "margin"),
    ("write paper 1e39", "/v1/write", json.dumps({"text": "hi", "paper": "1e39x1e39mm"}), "application/json", "paper"),
    ("write page 0", "/v1/write", json.dumps({"text": "hi", "page": 0}), "application/json", "page"),
    ("write text number", "/v1/write", json.dumps({"text": 123}), "application/json", "text"),
    ("write text null", "/v1/write", json.dumps({"text": None}), "application/json", "text"),
    ("write text empty", "/v1/write", json.dumps({"text": ""}), "application/json", "empty text"),
    ("write text surrogate", "/v1/write", '{"text": "hi \\ud800"}', "application/json", ""),
    ("write text NUL", "/v1/write", '{"text": "hi\\u0000"}', "application/json", "cannot write"),
    ("write style 5", "/v1/write", json.dumps({"text": "hi", "style": 5}), "application/json", "style"),
    ("write style list", "/v1/write", json.dumps({"text": "hi", "style": ["s01"]}), "application/json", "style"),
    ("write redo huge", "/v1/write", '{"text": "hi", "redo": {"' + str(2**70) + '": 1}}', "application/json", "redo"),
    ("write redo seed huge", "/v1/write", '{"text": "hi", "redo": {"0": ' + str(2**70) + '}}', "application/json", "redo"),
    ("write invalid UTF-8", "/v1/write", b'{"text": "caf\xe9"}', "application/json", ""),
    ("write not JSON", "/v1/write", "{nope", "application/json", "not valid JSON"),
    ("write nested 100,000 deep", "/v1/write", '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", ""),
    ("write style_sample nested deep", "/v1/write",
     '{"text": "hi", "style_sample": {"text": "hello there", "strokes": ' + "[" * 60_000 + "]" * 60_000 + "}}",
     "application/json", ""),
    ("write nested 200,000 deep", "/v1/write", "[" * 200_000 + "]" * 200_000, "application/json", ""),
    ("write 1,000,000 points", "/v1/write",
     '{"text": "hi", "style_sample": {"text": "hello there", "strokes": [[' + ",".join(["[1,2]"] * 1_000_000) + "]]}}",
     "application/json", ""),
    ("write 6001 points", "/v1/write",
     json.dumps({"text": "hi", "style_sample": {"text": "hello there", "strokes": [[[i, i % 7] for i in range(6001)]]}}),
     "application/json", "limit is 6000"),
    ("write huge body", "/v1/write", '{"text": "' + "a" * (3 * 2**20) + '"}', "application/json", ""),
    ("write text/plain", "/v1/write", '{"text": "hi"}', "text/plain", "JSON"),
    ("write body a list", "/v1/write", "[1, 2]", "application/json", ""),
    ("write unknown field", "/v1/write", json.dumps({"text": "hi", "wobble": 1}), "application/json", "unknown field"),
    ("tune samples a number", "/v1/tune", '{"samples": 5}', "application/json", "samples"),
    ("tune 11 samples", "/v1/tune", json.dumps({"samples": [_sample()] * 11}), "application/json", "3 to 10"),
    ("tune nested 100,000 deep", "/v1/tune", '{"samples": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", ""),
    ("tune coordinate NaN", "/v1/tune", '{"samples": [' + ",".join([_http_sample("NaN")] * 3) + "]}", "application/json", ""),
    ("tune huge body", "/v1/tune", '{"samples": "' + "a" * (3 * 2**20) + '"}', "application/json", "larger than"),
    ("write tuned too long", "/v1/write", json.dumps({"text": "hi", "tuned": "A" * 900_000}), "application/json", "tuned"),
    ("write tuned not base64", "/v1/write", json.dumps({"text": "hi", "tuned": "%%%%"}), "application/json", "base64"),
    ("write tuned zip bomb", "/v1/write", json.dumps({"text": "hi", "tuned": _zip_bomb()}), "application/json",
     "not a readable"),
    ("check text number", "/v1/samples/check", json.dumps({**_sample(), "text": 5}), "application/json", "text"),
    ("check strokes empty", "/v1/samples/check", json.dumps({**_sample(), "strokes": []}), "application/json", ""),
    ("check empty stroke", "/v1/samples/check", json.dumps({**_sample(), "strokes": [[]] * 3}), "application/json", ""),
    ("check point of one number", "/v1/samples/check", json.dumps({**_sample(), "strokes": [[[1.0]] * 40]}),
     "application/json", ""),
    ("check point of four numbers", "/v1/samples/check", json.dumps({**_sample(), "strokes": [[[1.0, 2, 3, 4]] * 40]}),
     "application/json", ""),
]
GET_CASES = [("tune job NUL", "/v1/tune/%00"), ("tune job traversal", "/v1/tune/..%2f..%2fetc/model"),
             ("tune job long", "/v1/tune/" + "x" * 5000), ("preview NUL", "/v1/styles/%00/preview.png"), ("preview traversal", "/v1/styles/..%2f..%2fetc/preview.png"),
             ("no such route", "/v1/" + "x" * 5000)]


def _deep(n):
    """A style dict whose strokes nest ``n`` lists deep (built without recursion)."""
    inner = []
    for _ in range(n):
        inner = [inner]
    return {"text": "hello there", "strokes": inner}


# ----------------------------------------------------------------------------------- the child


def _run_captured(fn, show_traceback: bool):
    """Run ``fn()`` with file descriptors 1 and 2 going to files (C libraries' prints included);
    -> (its result or the exception, stdout, stderr). ``show_traceback``: an exception escaping
    ``fn`` is printed as Python would (for the CLI, where ``main`` must catch every error)."""
    import ctypes
    import tempfile
    import traceback

    libc = ctypes.CDLL(None)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()   # noqa: SIM115 (closed below)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    try:
        try:
            result = fn()
        except SystemExit as e:
            result = e
        except BaseException as e:   # noqa: BLE001 (what the fuzzing looks for)
            if show_traceback:
                traceback.print_exc()
            result = e
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        libc.fflush(None)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    with out, err:
        out.seek(0)
        err.seek(0)
        return result, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _runner(report_path: str, work: str) -> None:
    import io
    import math
    import shutil
    import warnings

    import httpx
    import numpy as np
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("always")
    sys.path.insert(0, str(HERE))
    t0 = time.monotonic()
    D, O = Path(work) / "fixtures", Path(work) / "out"
    D.mkdir()
    O.mkdir()
    make_fixtures(D)
    import handsynth
    from handsynth import cli, load_model

    hw = load_model()
    d = hw.write("hi there", seed=1)
    report = {"cli": {}, "api": {}, "http": {}, "setup_s": time.monotonic() - t0}

    progress = open(Path(work) / "progress.log", "w", buffering=1)   # noqa: SIM115 (the case running, if it dies)
    for name, argv, stdin, _ in CLI_CASES:
        progress.write(f"cli {name}\n")
        argv = [a.replace("{d}", str(D)).replace("{o}", str(O)) for a in argv]
        start = time.monotonic()

        def call(argv=argv, stdin=stdin):
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
            try:
                return cli.main(argv)
            finally:
                sys.stdin = sys.__stdin__

        result, out, err = _run_captured(call, show_traceback=True)
        rc = result.code if isinstance(result, SystemExit) else result if isinstance(result, int) else repr(result)
        left = sorted(p.name for p in O.iterdir())
        for p in O.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        report["cli"][name] = {"rc": rc, "stdout": out, "stderr": err, "left": left,
                               "s": round(time.monotonic() - start, 2), "rss_mb": _rss_mb()}

    scope = {"hw": hw, "d": d, "D": D, "O": O, "sample": _sample(), "Path": Path, "math": math, "np": np,
             "load_model": load_model, "_with_point": _with_point, "_sample": _sample, "_deep": _deep}
    for name, code, _ in API_CASES:
        progress.write(f"api {name}\n")
        start = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result, out, err = _run_captured(lambda code=code: eval(code, scope), show_traceback=False)
        exc = result if isinstance(result, BaseException) else None
        left = sorted(p.name for p in O.iterdir())
        report["api"][name] = {"exc": type(exc).__name__ if exc else None,
                               "handsynth_error": isinstance(exc, handsynth.HandsynthError),
                               "msg": str(exc) if exc else repr(result)[:200], "stdout": out, "stderr": err,
                               "warnings": [str(w.message)[:200] for w in caught], "left": left,
                               "s": round(time.monotonic() - start, 2), "rss_mb": _rss_mb()}

    from live_server import LiveServer, post_head_and_part

    from handsynth.server import create_app
    from handsynth.server.app import MAX_BODY_BYTES, MAX_TUNE_BODY_BYTES, MAX_WRITE_BODY_BYTES
    limit = {"/v1/write": MAX_WRITE_BODY_BYTES, "/v1/tune": MAX_TUNE_BODY_BYTES}
    with LiveServer(create_app(hw, max_concurrent=2, queue_size=4, timeout_s=60, warm_previews=False)) as server:
        cases = [(n, "POST", route, body, ctype) for n, route, body, ctype, _ in HTTP_CASES]
        cases += [(n, "GET", route, b"", "") for n, route in GET_CASES]
        for name, method, route, body, ctype in cases:
            progress.write(f"http {name}\n")
            start = time.monotonic()
            body = body if isinstance(body, bytes) else body.encode("utf-8")
            try:
                if len(body) > limit.get(route, MAX_BODY_BYTES):
                    status, rtype, text = post_head_and_part(server.url, route, body, ctype)
                else:   # a client per case: one case's broken connection is not the next one's
                    with httpx.Client(base_url=server.url, timeout=60) as client:
                        r = client.request(method, route, content=body or None,
                                           headers={"Content-Type": ctype} if ctype else {})
                    status, rtype, text = r.status_code, r.headers.get("content-type", ""), r.text
            except (httpx.TransportError, OSError) as e:
                status, rtype, text = 0, "", f"no answer: {e!r}"
            report["http"][name] = {"status": status, "ctype": rtype, "body": text[:4000],
                                    "s": round(time.monotonic() - start, 2), "rss_mb": _rss_mb()}
    progress.close()
    report["peak_mb"] = _rss_mb()
    report["total_s"] = time.monotonic() - t0
    Path(report_path).write_text(json.dumps(report))


def _limit_memory():
    """The address-space limit, set by a process on itself (no preexec_fn: pytest has threads)."""
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


# ``python -m handsynth`` under the address-space limit
_LIMITED_HANDSYNTH = ("import resource, runpy; "
                      f"resource.setrlimit(resource.RLIMIT_AS, ({ADDRESS_SPACE_LIMIT}, {ADDRESS_SPACE_LIMIT})); "
                      "runpy.run_module('handsynth', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    out = work / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "always"}
    r = subprocess.run([sys.executable, __file__, "--fuzz-runner", str(out), str(work)], capture_output=True,
                       text=True, timeout=RUNNER_TIMEOUT_S, env=env, check=False)
    last = (work / "progress.log").read_text().splitlines()[-1:] if (work / "progress.log").exists() else []
    assert r.returncode == 0 and out.exists(), \
        f"the fuzz runner failed (status {r.returncode}) in case {last}:\n{r.stderr[-4000:]}"
    rep = json.loads(out.read_text())
    rep["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return rep


def _one_line(text: str) -> bool:
    return text.endswith("\n") and text.count("\n") == 1


@pytest.mark.parametrize("name, fragment", [(c[0], c[3]) for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli(report, name, fragment):
    r = report["cli"][name]
    err = r["stderr"]
    assert "Traceback" not in err, err
    assert r["rc"] == 2, r
    assert r["stdout"] == "", r            # e.g. LAPACK's DLASCL lines
    assert _one_line(err) and err.startswith("handsynth: error: ") and len(err) < 400, err
    assert fragment.lower() in err.lower(), err
    assert not r["left"], f"left behind: {r['left']}"


@pytest.mark.parametrize("name, fragment", [(c[0], c[2]) for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api(report, name, fragment):
    r = report["api"][name]
    assert r["handsynth_error"], f"{r['exc']}: {r['msg']}\n{r['stderr']}"
    assert r["msg"] and "\n" not in r["msg"] and len(r["msg"]) < 400, r["msg"]
    assert fragment.lower() in r["msg"].lower(), r["msg"]
    assert r["stdout"] == "" and r["stderr"] == "" and not r["warnings"], r
    assert not r["left"], f"left behind: {r['left']}"


@pytest.mark.parametrize("name, fragment", [(c[0], c[4]) for c in HTTP_CASES] + [(g[0], "") for g in GET_CASES],
                         ids=[c[0] for c in HTTP_CASES] + [g[0] for g in GET_CASES])
def test_http(report, name, fragment):
    r = report["http"][name]
    assert 400 <= r["status"] < 500, r
    assert r["ctype"].startswith("application/json"), r
    message = json.loads(r["body"])["error"]
    assert isinstance(message, str) and message and "\n" not in message and len(message) < 400, message
    assert fragment.lower() in message.lower(), message


def test_memory_under_the_bound(report):
    """Every case ran in one process: its resident peak bounds each input's."""
    worst = max(({**r, "name": n} for part in ("cli", "api", "http") for n, r in report[part].items()),
                key=lambda r: r["rss_mb"])
    print(f"fuzz: {sum(len(report[p]) for p in ('cli', 'api', 'http'))} cases in {report['total_s']:.1f} s, "
          f"peak {report['peak_mb']:.0f} MB (first reached by {worst['name']!r}); bound {MEMORY_BOUND_MB} MB")
    assert report["peak_mb"] < MEMORY_BOUND_MB
    assert report["children_peak_mb"] < MEMORY_BOUND_MB


# ----------------------------------------------------------------------------------- real processes


def _handsynth(*args: bytes | str, stdin=None):
    """``python -m handsynth ARGS`` under the address-space limit (bytes args reach argv as
    they are), started at once."""
    return subprocess.Popen([sys.executable, "-c", _LIMITED_HANDSYNTH, *args],
                            stdin=stdin if stdin is not None else subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_real_processes(tmp_path):
    """What only a process shows: argv and stdin as bytes, the exit status, C libraries'
    output, and a valid -0 accepted. The processes run at once."""
    out = tmp_path / "out"
    out.mkdir()
    zero = open("/dev/zero", "rb")   # noqa: SIM115 (closed once the processes have it)
    procs = {
        "stdin invalid UTF-8": (_handsynth(b"write", b"-", b"-o", str(out / "a.png").encode()), b"caf\xe9 \xff\xfe au lait\n",
                                "standard input is not UTF-8"),
        "argv invalid UTF-8": (_handsynth(b"write", b"caf\xe9 au lait", b"-o", str(out / "b.png").encode()), b"",
                               "the text is not UTF-8"),
        "stdin /dev/zero": (_handsynth("write", "-", "-o", str(out / "c.png"), stdin=zero), None, "limit of 3000"),
    }
    ok = _handsynth("write", "hi", "-o", str(tmp_path / "ok.png"), "--bias", "-0", "--seed", "-0", "--margin", "-0",
                    "--paper", "a6", "-q")
    ok_out, ok_err = ok.communicate(b"", timeout=120)
    zero.close()
    for name, (p, stdin, fragment) in procs.items():
        stdout, stderr = p.communicate(stdin, timeout=120)
        err = stderr.decode("utf-8", "replace")
        assert p.returncode == 2, (name, p.returncode, err)
        assert stdout == b"", (name, stdout)
        assert _one_line(err) and err.startswith("handsynth: error: ") and fragment in err, (name, err)
        assert "\\udc" not in err, (name, err)     # no surrogate escapes shown
    assert not list(out.iterdir())
    assert ok.returncode == 0, ok_err.decode()
    assert ok_out == b"" and (tmp_path / "ok.png").read_bytes()[:4] == b"\x89PNG"
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak < MEMORY_BOUND_MB, peak


if __name__ == "__main__" and sys.argv[1:2] == ["--fuzz-runner"]:
    _limit_memory()
    _runner(sys.argv[2], sys.argv[3])
