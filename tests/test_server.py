"""The HTTP API against the real server (uvicorn on a loopback port, in a thread): files decode,
styles, health, every limit and bad input answers its documented 4xx with a JSON error, a full
queue answers 503 and a slow request 504, and the server recovers from both."""
from __future__ import annotations

import io
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
from PIL import Image

import handsynth
from handsynth.server import create_app
from live_server import LiveServer, post_head_and_part
from handsynth.server.app import (DRAIN_BYTES, DRAIN_IDLE_S, MAX_BODY_BYTES, MAX_REQUEST_CHARS, MAX_SAMPLE_POINTS,
                                  MAX_WRITE_BODY_BYTES)


def style_sample(text: str = "hello there", n_strokes: int = 6, per_stroke: int = 24) -> dict:
    """A made-up handwriting sample in canvas coordinates (y down): loopy strokes along a line."""
    strokes = []
    for k in range(n_strokes):
        t = np.linspace(0, 2 * np.pi * 2, per_stroke)
        x = 40 + k * 70 + 8 * t + 6 * np.cos(t)
        y = 100 - 18 * np.abs(np.sin(t / 2)) + 4 * np.sin(t)
        strokes.append(np.round(np.column_stack([x, y]), 1).tolist())
    return {"text": text, "strokes": strokes, "y_axis": "down"}


@pytest.fixture(scope="module")
def hw():
    return handsynth.load_model()


@pytest.fixture(scope="module")
def server(hw):
    with LiveServer(create_app(hw, max_concurrent=2, queue_size=4, timeout_s=60)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def assert_error(r: httpx.Response, status: int, fragment: str = ""):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    message = r.json()["error"]
    assert isinstance(message, str) and message and "\n" not in message
    assert fragment.lower() in message.lower(), message


# ----------------------------------------------------------------------------- service

def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok" and h["running"] == 0 and h["waiting"] == 0
    assert h["max_concurrent"] == 2 and h["queue_size"] == 4
    assert "/" not in h["model"]  # no server paths


def test_page_docs_and_info(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Write in my hand" in r.text and "/static/app.js" in r.text
    for path, ctype in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        r = client.get(path)
        assert r.status_code == 200 and ctype in r.headers["content-type"]
    spec = client.get("/openapi.json").json()
    assert {"/v1/write", "/v1/styles", "/healthz"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    info = client.get("/v1/info").json()
    assert info["limits"]["max_text_chars"] == MAX_REQUEST_CHARS
    assert info["limits"]["max_sample_points"] == MAX_SAMPLE_POINTS
    assert info["prompts"] and all(8 <= len(p) <= 120 for p in info["prompts"])


# ----------------------------------------------------------------------------- writing

def test_write_png(client):
    r = client.post("/v1/write", json={"text": "hi", "seed": 3, "color": "#aa0000", "stroke_width": 3})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-handsynth-pages"] == "1"
    img = Image.open(io.BytesIO(r.content))
    img.load()
    assert img.format == "PNG" and img.width == 1200 and img.height > 50
    px = np.asarray(img.convert("RGB")).astype(int)
    inked = (px[..., 0] > 120) & (px[..., 1] < 100) & (px[..., 2] < 100)  # the red ink is there
    assert inked.sum() > 20


def test_write_svg_and_pdf(client):
    body = {"text": "hi", "seed": 3, "width": 800, "align": "center"}
    r = client.post("/v1/write", json={**body, "format": "svg"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    paths = root.findall(".//{http://www.w3.org/2000/svg}path")
    assert paths and all(p.get("d", "").startswith("M") for p in paths)

    r = client.post("/v1/write", json={**body, "format": "pdf"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF-") and r.content.rstrip().endswith(b"%%EOF")
    assert r.content.count(b"/Type /Page\n") + r.content.count(b"/Type /Page ") + \
        r.content.count(b"/Type /Page>") == 1


def test_same_request_same_drawing(client):
    body = {"text": "hi", "seed": 11, "format": "svg"}
    a, b = client.post("/v1/write", json=body), client.post("/v1/write", json=body)
    assert a.status_code == b.status_code == 200 and a.content == b.content


def test_write_with_own_sample(client):
    r = client.post("/v1/samples/check", json=style_sample())
    assert r.status_code == 200, r.text
    assert r.json()["ok"] is True and r.json()["points"] == 6 * 24
    r = client.post("/v1/write", json={"text": "hi", "style_sample": style_sample(), "format": "png"})
    assert r.status_code == 200, r.text
    assert Image.open(io.BytesIO(r.content)).width == 1200


def test_styles(client):
    r = client.get("/v1/styles")
    assert r.status_code == 200
    styles = r.json()["styles"]
    assert isinstance(styles, list)
    for s in styles:
        assert {"id", "name", "text", "preview_url"} <= set(s)
        p = client.get(s["preview_url"])
        assert p.status_code == 200 and p.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(p.content)).width == 600
    assert_error(client.get("/v1/styles/no-such-style/preview.png"), 404, "no built-in style")
    if styles:
        r = client.post("/v1/write", json={"text": "hi", "style": styles[0]["id"]})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


# ----------------------------------------------------------------------------- limits and bad input

def _many_points(n: int) -> dict:
    s = style_sample()
    s["strokes"] = [[[float(i % 500), float(i // 500)] for i in range(n)]]
    return s


BAD = [
    ({"text": ""}, "empty text"),
    ({"text": "   \n "}, "empty text"),
    ({"text": "x" * (MAX_REQUEST_CHARS + 1)}, f"limit is {MAX_REQUEST_CHARS}"),
    ({"text": "h\u00e9llo \u4e2d"}, "cannot write these characters"),
    ({"bias": 10.5}, "bias"),
    ({"bias": -1}, "bias"),
    ({"bias": "neat"}, "bias"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**31}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"format": "jpeg"}, "format"),
    ({"width": 100}, "width"),
    ({"width": 100000}, "width"),
    ({"stroke_width": 0}, "stroke_width"),
    ({"stroke_width": 100}, "stroke_width"),
    ({"color": "rgb(1,2,3)"}, "color"),
    ({"color": "notacolour"}, "not a colour"),
    ({"background": "url(x)"}, "background"),
    ({"align": "justify"}, "align"),
    ({"page": 0}, "page"),
    ({"text": None}, "text"),
    ({"text": 12}, "text"),
    ({"style": "no-such-style"}, "unknown style"),
    ({"style": "../../../etc/passwd"}, "unknown style"),
    ({"style": "x" * 65}, "style"),
    ({"path": "/etc/passwd"}, "path: unknown field"),
    ({"model": "/tmp/evil.pt"}, "unknown model '/tmp/evil.pt': this server writes with lstm"),   # names only, never a path
    ({"style_sample": {"text": "short", "strokes": style_sample()["strokes"]}}, "too short"),
    ({"style_sample": style_sample(n_strokes=1, per_stroke=10)}, "only 10 points"),
    ({"style_sample": _many_points(MAX_SAMPLE_POINTS + 1)}, f"limit is {MAX_SAMPLE_POINTS}"),
    ({"style_sample": {**style_sample(), "y_axis": "sideways"}}, "y_axis"),
    ({"style_sample": {**style_sample(), "strokes": [[["a", "b"]]]}}, "strokes"),
    ({"style_sample": {**style_sample(), "strokes": []}}, "strokes"),
    ({"style_sample": {**style_sample(), "file": "/etc/passwd"}}, "unknown field"),
    ({"style_sample": {**style_sample(), "text": "hello \u4e2d\u6587 there"}}, "cannot write"),
    ({"style": "s01", "style_sample": style_sample()}, "not both"),
    # outputs, paper and pens (issue 17)
    ({"format": "png", "animate": True}, "'animate' is for format svg"),
    ({"format": "gif", "animate": True}, "'animate' is for format svg"),
    ({"format": "svg", "animate": True, "plotter": True}, "not both"),
    ({"plotter": True}, "'plotter' is for format svg"),
    ({"simplify": 0.5}, "'simplify' and 'order' are for plotter output"),
    ({"format": "svg", "order": False}, "plotter output"),
    ({"format": "gcode", "simplify": 99}, "simplify"),
    ({"format": "gcode", "simplify": -1}, "simplify"),
    ({"gcode": {"feed": 500}}, "'gcode' settings are for format gcode"),
    ({"format": "gcode", "gcode": {"pen": "laser"}}, "gcode.pen"),
    ({"format": "gcode", "gcode": {"pen": "custom"}}, "pen down command must be one line"),
    ({"format": "gcode", "gcode": {"pen": "custom", "pen_down": "M3\nM5", "pen_up": "M5"}}, "one line"),
    ({"format": "gcode", "gcode": {"pen": "servo", "pen_down": "M3"}}, "are for pen=custom"),
    ({"format": "gcode", "gcode": {"pen": "z", "z_down": 5, "z_up": 1}}, "must be above z down"),
    ({"format": "gcode", "gcode": {"feed": 0}}, "gcode.feed"),
    ({"format": "gcode", "gcode": {"offset": [1]}}, "gcode.offset"),
    ({"format": "gcode", "gcode": {"file": "/etc/passwd"}}, "unknown field"),
    ({"paper": "a9"}, "unknown paper 'a9'"),
    ({"paper": "1x1mm"}, "out of range"),
    ({"paper": "x" * 41}, "paper"),
    ({"paper": "a4", "width": 800}, "not both"),
    ({"landscape": True}, "send 'paper' too"),
    ({"margin": 10}, "send 'paper' too"),
    ({"paper": "a6", "margin": 60}, "no room to write"),
    ({"paper": "a6", "margin": -1}, "margin"),
    ({"paper": "a4", "x_height": 0}, "x_height"),
    ({"paper": "a4", "x_height": 60}, "x-height 60 mm is out of range"),
    ({"paper": "a4", "line_spacing": 3, "x_height": 4}, "the lines would overlap"),
    ({"paper": "a4", "margin": "wide"}, "margin"),
    ({"ruling": "lined"}, "ruling"),
    ({"pen": "quill"}, "pen"),
    ({"ink_variation": 1.5}, "ink_variation"),
    ({"dpi": 10}, "dpi"),
    ({"dpi": 301}, "dpi"),
    ({"redo": {"x": 1}}, "redo"),
    ({"redo": {"0": -1}}, "redo"),
    ({"redo": {"-1": 1}}, "redo"),
    ({"redo": {"0": 2**31}}, "redo"),
    ({"redo": [0, 1]}, "redo"),
    ({"redo": {"0": "one"}}, "redo"),
    ({"redo": {str(i): 1 for i in range(201)}}, "redo"),
    ({"redo": {"5": 1}}, "word 5 does not exist: the text has 1 word(s), numbered from 0"),
]


@pytest.mark.parametrize("patch,fragment", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_values_are_400(client, patch, fragment):
    body = {"text": "hi", **patch}
    if patch.get("text", "") is None:
        del body["text"]
    assert_error(client.post("/v1/write", json=body), 400, fragment)


def test_page_out_of_range(client):
    assert_error(client.post("/v1/write", json={"text": "hi", "page": 3}), 400, "has 1 page")


def test_bad_bodies(client, server):
    ok_headers = {"content-type": "application/json"}
    assert_error(client.post("/v1/write", content=b'{"text": "hi"', headers=ok_headers), 400, "not valid JSON")
    assert_error(client.post("/v1/write", content=b"", headers=ok_headers), 400)
    assert_error(client.post("/v1/write", content=b'["hi"]', headers=ok_headers), 400)
    assert_error(client.post("/v1/write", content=b'{"text": "hi", "bias": NaN}', headers=ok_headers), 400, "bias")
    assert_error(client.post("/v1/write", data={"text": "hi"}), 415, "JSON")
    assert_error(client.post("/v1/write", content=b"text=hi", headers={"content-type": "text/plain"}), 415)
    assert_error(client.get("/v1/write"), 405)
    assert_error(client.get("/v1/nothing-here"), 404)
    assert_error(client.post("/v1/samples/check", json={"text": "hello there", "strokes": [[[0, 0]]]}), 400, "points")


def test_body_size_limit(server):
    big = b'{"text": "' + b"a" * MAX_WRITE_BODY_BYTES + b'"}'   # (a write may carry a tuned file)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert_error(c.post("/v1/write", content=big, headers={"content-type": "application/json"}),
                     413, f"larger than the limit of {MAX_WRITE_BODY_BYTES // 1024} KiB")
        sample = b'{"text": "' + b"a" * MAX_BODY_BYTES + b'"}'     # every other path: the general limit
        assert_error(c.post("/v1/samples/check", content=sample, headers={"content-type": "application/json"}),
                     413, f"larger than the limit of {MAX_BODY_BYTES // 1024} KiB")
    with httpx.Client(base_url=server.url, timeout=30) as c:  # chunked: no Content-Length
        chunks = iter([big[i:i + 65536] for i in range(0, len(big), 65536)])
        assert_error(c.post("/v1/write", content=chunks, headers={"content-type": "application/json"}), 413)
    for body in (big, big + b" " * DRAIN_BYTES):   # a client that sends a part and waits: answered
        t0 = time.monotonic()                      # after a second's silence, not the body's 20 s
        status, ctype, text = post_head_and_part(server.url, "/v1/write", body, "application/json")
        assert status == 413 and "larger than the limit" in text and ctype.startswith("application/json")
        assert time.monotonic() - t0 < DRAIN_IDLE_S + 3
    with httpx.Client(base_url=server.url, timeout=30) as c:  # still serving
        assert c.get("/healthz").status_code == 200


# ----------------------------------------------------------------------------- overload and time limit

@dataclass
class GatedHandwriter(handsynth.Handwriter):
    """The real model, but ``write`` first waits until the test opens the gate."""
    gate: threading.Event = field(default_factory=threading.Event)

    def write(self, *args, **kwargs):
        assert self.gate.wait(30), "the test never opened the gate"
        return super().write(*args, **kwargs)


def _wait_for(c: httpx.Client, cond, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = c.get("/healthz").json()
        if cond(h):
            return h
        assert time.monotonic() < deadline, f"server state never reached: {h}"
        time.sleep(0.02)


def test_busy_503_then_recovers(hw):
    gated = GatedHandwriter(hw.model, hw.alphabet, hw.mean, hw.std, hw.path)
    with LiveServer(create_app(gated, max_concurrent=1, queue_size=1, timeout_s=60)) as s, \
            httpx.Client(base_url=s.url, timeout=60) as c:
        results = {}

        def post(i):
            with httpx.Client(base_url=s.url, timeout=60) as own:
                results[i] = own.post("/v1/write", json={"text": "hi", "seed": i})

        threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        h = _wait_for(c, lambda h: h["running"] == 1 and h["waiting"] == 1)
        assert time.monotonic() - t0 < 5  # the event loop answers while a worker is busy
        r = c.post("/v1/write", json={"text": "hi", "seed": 7})
        assert_error(r, 503, "busy")
        assert r.headers.get("retry-after") == "5"
        gated.gate.set()
        for t in threads:
            t.join(60)
        assert [results[i].status_code for i in range(2)] == [200, 200]
        h = _wait_for(c, lambda h: h["running"] == 0 and h["waiting"] == 0)
        assert h["rejected"] == 1 and h["served"] == 2
        r = c.post("/v1/write", json={"text": "hi", "seed": 7})  # recovered
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


class SlowHandwriter(handsynth.Handwriter):
    """The real model, but each pen step takes ``delay`` seconds longer while ``slow`` is set
    (through ``write``'s per-pen-step ``check``, which the server passes its time limit in)."""

    def __init__(self, hw, delay: float):
        super().__init__(hw.model, hw.alphabet, hw.mean, hw.std, hw.path)
        self.delay, self.slow = delay, threading.Event()
        self.slow.set()

    def write(self, *args, check=None, **kwargs):
        def slow_check():
            if self.slow.is_set():
                time.sleep(self.delay)
            if check is not None:
                check()
        return super().write(*args, check=slow_check, **kwargs)


def test_time_limit_504_then_recovers(hw):
    slow = slow_hw = SlowHandwriter(hw, delay=0.2)  # a primed line takes 60+ steps: over 12 s
    with LiveServer(create_app(slow_hw, max_concurrent=1, queue_size=2, timeout_s=3)) as s, \
            httpx.Client(base_url=s.url, timeout=60) as c:
        t0 = time.monotonic()
        r = c.post("/v1/write", json={"text": "hi", "style_sample": style_sample(), "seed": 1})
        took = time.monotonic() - t0
        assert_error(r, 504, "longer than this server's limit of 3 s")
        assert 2.9 < took < 6, took
        # the worker stops at its next sampling step, not at the end of the line
        _wait_for(c, lambda h: h["running"] == 0 and h["waiting"] == 0, timeout=1.5)
        assert c.get("/healthz").json()["timed_out"] == 1
        slow.slow.clear()
        r = c.post("/v1/write", json={"text": "hi", "seed": 2})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text


def test_client_going_away_frees_the_worker(hw):
    slow = slow_hw = SlowHandwriter(hw, delay=0.2)
    with LiveServer(create_app(slow_hw, max_concurrent=1, queue_size=0, timeout_s=60, warm_previews=False)) as s, \
            httpx.Client(base_url=s.url, timeout=10) as c:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/v1/write", json={"text": "hi", "style_sample": style_sample()}, timeout=1.0)
        h = _wait_for(c, lambda h: h["running"] == 0, timeout=2)
        assert h["abandoned"] == 1 and h["timed_out"] == 0
        slow.slow.clear()
        assert c.post("/v1/write", json={"text": "hi", "seed": 4}).status_code == 200


# ----------------------------------------------------------------------------- every format, paper, a word again

TEXT = "Dear Ada,\nthank you for the tea\nsee you soon"
SVG = "{http://www.w3.org/2000/svg}"


def words_of(r: httpx.Response) -> list:
    import json
    return json.loads(r.headers["x-handsynth-words"])


def svg_paths(content: bytes) -> list[str]:
    return [p.get("d") for p in ET.fromstring(content).iter(f"{SVG}path")]


def test_every_format(client, hw):
    body = {"text": "hi there", "seed": 5}
    r = client.post("/v1/write", json={**body, "format": "svg", "animate": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    paths = list(root.iter(f"{SVG}path"))
    drawing = hw.write("hi there", seed=5)
    assert len(paths) == len(drawing.strokes) and all(len(p.findall(f"{SVG}animate")) == 1 for p in paths)

    r = client.post("/v1/write", json={**body, "format": "svg", "plotter": True, "simplify": 0.05})
    assert r.status_code == 200, r.text
    plotted = svg_paths(r.content)                                    # one open polyline per stroke
    assert len(plotted) == len(drawing.strokes) and all("C" not in d and "Z" not in d for d in plotted)
    assert b"pen-up travel" in r.content

    r = client.post("/v1/write", json={**body, "format": "gcode",
                                       "gcode": {"pen": "z", "z_down": 0, "z_up": 3, "feed": 1500, "offset": [10, 20]}})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-disposition"].endswith('filename="handwriting.gcode"')
    g = r.text.splitlines()
    assert g[0].startswith(f"(handsynth: {len(drawing.strokes)} strokes") and "G21 (millimetres)" in g
    assert g.count("G1 Z0 F1000.000") == len(drawing.strokes) and "F1500.000" in r.text

    r = client.post("/v1/write", json={**body, "format": "inkml"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/inkml+xml", r.text
    traces = [e for e in ET.fromstring(r.content).iter() if e.tag.endswith("}trace")]
    assert len(traces) == len(drawing.strokes)

    for fmt in ("gif", "webp"):
        r = client.post("/v1/write", json={**body, "format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == f"image/{fmt}", r.text
        img = Image.open(io.BytesIO(r.content))
        assert img.format == fmt.upper() and img.n_frames > 2 and img.width == 1200


def test_paper_ruling_and_pen(client):
    body = {"text": "hi there", "seed": 5, "paper": "a6", "ruling": "ruled", "pen": "fountain"}
    r = client.post("/v1/write", json=body)
    assert r.status_code == 200, r.text
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (620, 874)                                   # A6 at 150 dpi
    r = client.post("/v1/write", json={**body, "landscape": True, "dpi": 100})
    assert Image.open(io.BytesIO(r.content)).size == (583, 413)    # A6 across, at 100 dpi
    r = client.post("/v1/write", json={**body, "format": "pdf"})
    box = [float(v) for v in r.content.split(b"/MediaBox [")[1].split(b"]")[0].split()]
    assert box[2:] == pytest.approx([105 / 25.4 * 72, 148 / 25.4 * 72], abs=0.01)
    r = client.post("/v1/write", json={**body, "format": "svg"})
    root = ET.fromstring(r.content)
    assert root.get("width") == "105.00mm" and root.get("height") == "148.00mm"
    labels = [g.get("{http://www.inkscape.org/namespaces/inkscape}label") for g in root.iter(f"{SVG}g")]
    assert labels == ["ruling", "ink"]
    info = client.get("/v1/info").json()
    assert "a5" in info["papers"] and "fountain" in info["pens"] and "gif" in info["formats"]


def test_words_header(client):
    r = client.post("/v1/write", json={"text": TEXT, "seed": 2, "style": "s03", "format": "svg"})
    assert r.status_code == 200, r.text
    words = words_of(r)
    assert [w[1] for w in words] == TEXT.split() and [w[0] for w in words] == list(range(10))
    for _, _, x0, y0, x1, y1 in words:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1


def test_redo_word_over_http(client, hw):
    """A word written again: its paths change, every other path stays (the word is the last of its
    line, so nothing moves along), and the file is the one the library and the CLI make."""
    base = {"text": TEXT, "seed": 2, "style": "s03", "format": "svg"}
    before = client.post("/v1/write", json=base)
    after = client.post("/v1/write", json={**base, "redo": {"6": 4}})
    assert after.status_code == 200, after.text
    old, new = svg_paths(before.content), svg_paths(after.content)
    wb, wa = words_of(before), words_of(after)
    assert [w[1] for w in wa] == [w[1] for w in wb]
    assert [w for w in wa if w[0] != 6] == [w for w in wb if w[0] != 6]     # the other words' boxes
    assert wa[6] != wb[6]
    n_before = sum(1 for w in hw.write(TEXT, seed=2, style="s03").words[:6] for _ in range(w.stop - w.start))
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    assert head == n_before                                           # every stroke before the word
    assert tail == sum(1 for w in hw.write(TEXT, seed=2, style="s03").words[7:] for _ in range(w.stop - w.start))
    assert after.content == hw.write(TEXT, seed=2, style="s03", redo={6: 4}).to_svg().encode()
    again = client.post("/v1/write", json={**base, "redo": {"6": 4}})
    assert again.content == after.content                             # the same request: the same page
    other = client.post("/v1/write", json={**base, "redo": {"6": 5}})
    assert other.content != after.content                             # another seed: another writing
    # as PNG: the pixels differ only around the word
    png = [np.asarray(Image.open(io.BytesIO(client.post("/v1/write", json={**base, "format": "png", **extra})
                                            .content)).convert("L"), np.int16) for extra in ({}, {"redo": {"6": 4}})]
    h, w = min(png[0].shape[0], png[1].shape[0]), png[0].shape[1]
    ys, xs = np.nonzero(np.abs(png[0][:h] - png[1][:h]) > 8)
    x0 = min(wb[6][2], wa[6][2]) * w - 6
    x1 = max(wb[6][4], wa[6][4]) * w + 6
    assert len(xs) and x0 <= xs.min() and xs.max() <= x1


# ----------------------------------------------------------------------------- slow clients

def _raw(url: str):
    import socket
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def _closed_within(sock, seconds: float, drip: bytes = b"") -> tuple[float, bytes]:
    """Send ``drip`` a byte every 0.2 s until the server closes the connection: (seconds taken,
    what it answered)."""
    t0, got = time.monotonic(), b""
    sock.settimeout(0.2)
    for i in range(int(seconds / 0.2)):
        try:
            if drip:
                sock.sendall(drip[i % len(drip):i % len(drip) + 1])
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic() - t0, got
            got += chunk
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0, got
    return float("inf"), got


def test_slow_clients_are_timed_out_and_others_served(hw):
    from handsynth.server.connections import GuardedH11

    class Quick(GuardedH11):
        head_timeout = 1.0

    app = create_app(hw, body_timeout_s=1.0, warm_previews=False)
    with LiveServer(app, http=Quick) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        silent, slow_head, slow_body = _raw(s.url), _raw(s.url), _raw(s.url)
        slow_head.sendall(b"POST /v1/write HTTP/1.1\r\nHost: x\r\n")
        slow_body.sendall(b"POST /v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"text\": ")
        assert c.post("/v1/write", json={"text": "hi", "seed": 1}).status_code == 200   # served meanwhile
        took, _ = _closed_within(silent, 5)
        assert took < 5
        took, _ = _closed_within(slow_head, 5, drip=b"X-Slow: abcdefghij\r\n")
        assert took < 5
        took, answer = _closed_within(slow_body, 5, drip=b"\"aaaaaaaaaa")
        assert took < 5 and answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"did not arrive within 1 s" in answer
        for sock in (silent, slow_head, slow_body):
            sock.close()
        assert Quick.closed_slow >= 2
        r = c.post("/v1/write", json={"text": "still here", "seed": 2})   # a keep-alive client is untouched
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


# ----------------------------------------------------------------------------- several models

def test_a_server_with_two_models_writes_with_the_one_a_request_names(hw, tiny_model):
    """The shipped LSTM (the default) and a model file trained by `handsynth train`: listed by
    GET /v1/models, picked by name, each writing its own drawing; an unknown name and a tuned
    file for the other model get one clear line."""
    from handsynth.server.app import serve
    tiny = handsynth.load_model(tiny_model)
    text = "".join(c for c in "hello there" if c in tiny.alphabet.chars) or tiny.alphabet.chars[1:6]
    with LiveServer(create_app(hw, models={"mine": tiny}, max_concurrent=2, queue_size=4, timeout_s=60,
                               warm_previews=False)) as s, httpx.Client(base_url=s.url, timeout=60) as c:
        listed = c.get("/v1/models").json()["models"]
        assert [(m["name"], m["arch"], m["default"]) for m in listed] == [("lstm", "graves", True),
                                                                        ("mine", "graves", False)]
        assert "IAM-OnDB" in listed[0]["description"] and tiny_model.name in listed[1]["description"]
        assert c.get("/healthz").json()["models"] == ["lstm", "mine"]
        body = {"text": text, "seed": 3, "format": "svg"}
        default = c.post("/v1/write", json=body)
        named_default = c.post("/v1/write", json={**body, "model": "lstm"})
        mine = c.post("/v1/write", json={**body, "model": "mine"})
        assert default.status_code == named_default.status_code == mine.status_code == 200
        assert default.content == named_default.content
        assert mine.content != default.content        # another network wrote it
        assert mine.content == tiny.write(text, seed=3).render("svg")[0]   # ... the file's, as the library writes it
        assert_error(c.post("/v1/write", json={**body, "model": "gpt"}), 400, "unknown model 'gpt'")
        r = c.post("/v1/write", json={**body, "model": "gpt"})
        assert "lstm, mine" in r.json()["error"]
        assert_error(c.post("/v1/write", json={**body, "model": "mine", "tuned": "bm90IGEgZmlsZQ=="}), 400,
                     "change to this server's default model (lstm)")
    with pytest.raises(handsynth.HandsynthError, match="two models are named 'lstm'"):
        serve(model=["lstm", "lstm"])
