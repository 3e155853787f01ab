"""The web page in a real Chromium (Debian's chromium, driven by Playwright): type a text, pick a
style, write it and see the image (the writing played as it appears); draw a sample on the canvas
with the mouse, use it as the style and write with it; it survives a reload; empty/short samples
and bad text get messages in the page; click a word to write it again (its strokes change, no
other does); paper, ruling and pen choices and the downloads of every format. Screenshots are
saved and checked to show the result."""
from __future__ import annotations

import io
import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

import handsynth
from handsynth.server import create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

from live_server import LiveServer  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM),
                                reason=f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server():
    with LiveServer(create_app(handsynth.load_model(), max_concurrent=2, queue_size=4, timeout_s=60)) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    console_errors = []
    pg.on("pageerror", lambda e: console_errors.append(str(e)))
    pg.goto(server.url + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=15000)
    yield pg
    context.close()
    assert not console_errors, console_errors


def wait_for_result(pg, previous_src: str | None = None, timeout: float = 60000):
    """Wait until the result <img> shows a (new) image; fail with the page's error if one appears."""
    pg.wait_for_function(
        """(prev) => {
            const img = document.getElementById('result'), err = document.getElementById('error');
            if (!err.hidden) return true;
            return !img.hidden && img.complete && img.naturalWidth > 0 && img.src !== prev;
        }""", arg=previous_src or "", timeout=timeout)
    error = pg.locator("#error")
    assert error.is_hidden(), f"the page shows an error: {error.text_content()}"
    return pg.eval_on_selector("#result", "img => ({src: img.src, w: img.naturalWidth, h: img.naturalHeight})")


def set_range(pg, selector: str, value: float):
    pg.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input')); }", value)


def assert_screenshot_shows_result(pg, path):
    """Save a screenshot of the page and check that the result image's region holds ink (once the
    writing has played)."""
    pg.wait_for_selector("img#play", state="hidden", timeout=30000)
    pg.locator("#result").scroll_into_view_if_needed()
    pg.screenshot(path=str(path))
    box = pg.locator("#result").bounding_box()
    shot = Image.open(path).convert("L")
    assert shot.size == (1280, 1000)
    region = np.asarray(shot.crop((int(box["x"]), int(box["y"]),
                                   int(box["x"] + box["width"]), int(box["y"] + box["height"]))))
    assert region.size > 0 and box["width"] > 100 and box["height"] > 20, box
    dark = (region < 128).sum()  # (the untrained placeholder model may write as little as a dot)
    assert dark >= 4, f"the result region of the screenshot is blank ({dark} dark pixels)"
    assert (region > 230).mean() > 0.5  # ink on paper, not a dark or broken box


def draw_sample(pg):
    """Write loopy 'words' on the pad with the mouse: several strokes, hundreds of points."""
    pad = pg.locator("#pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x0, base = box["x"] + 20, box["y"] + box["height"] * 0.62
    step = (box["width"] - 40) / 7
    for word in range(7):
        pts = []
        for i in range(60):
            t = i / 59 * 4 * math.pi
            pts.append((x0 + word * step + step * 0.2 * t / math.pi + 7 * math.cos(t),
                        base - 26 * abs(math.sin(t / 2)) - 5 * math.sin(t)))
        pg.mouse.move(*pts[0])
        pg.mouse.down()
        for p in pts[1:]:
            pg.mouse.move(*p)
        pg.mouse.up()


def test_type_pick_style_generate_and_download(page, tmp_path):
    pg = page
    pg.fill("#text", "hello")
    set_range(pg, "#stroke", 8)
    styles = pg.locator("#styles input[value^='builtin:']")
    if styles.count():
        pg.locator(".style-card:has(input[value^='builtin:'])").first.click()
        assert styles.first.is_checked()
        pg.wait_for_function("() => [...document.querySelectorAll('#styles img')]"
                             ".every(i => i.complete && i.naturalWidth > 0)", timeout=30000)
    else:  # a bank-less install: the model's own hand is the only choice
        assert pg.locator("#styles input[value='']").is_checked()
    pg.click("#generate")
    pg.wait_for_selector("#progress", state="visible", timeout=5000)
    result = wait_for_result(pg)
    assert result["w"] == 1200 and result["h"] > 50
    pg.wait_for_selector("#progress", state="hidden", timeout=5000)
    assert pg.get_attribute("#download-png", "href").startswith("blob:")
    assert_screenshot_shows_result(pg, tmp_path / "typed.png")

    with pg.expect_download(timeout=60000) as dl:
        pg.click("#download-svg")
    svg = tmp_path / "dl.svg"
    dl.value.save_as(svg)
    assert dl.value.suggested_filename == "handwriting.svg"
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def test_errors_are_shown_in_the_page(page):
    pg = page
    pg.fill("#text", "   ")
    pg.click("#generate")
    assert "Type a text" in pg.locator("#error").text_content()
    pg.fill("#text", "hi \u4e2d")
    pg.click("#generate")
    pg.wait_for_function("() => !document.getElementById('error').hidden && "
                         "document.getElementById('error').textContent.includes('cannot write')", timeout=15000)
    assert pg.locator("#generate").is_enabled()


def test_write_in_my_hand(page, tmp_path):
    pg = page
    # empty and too short samples are refused with a message
    pg.click("#use-sample")
    assert "empty" in pg.locator("#sample-msg").text_content()
    box = pg.locator("#pad").bounding_box()
    pg.mouse.click(box["x"] + 50, box["y"] + 50)
    pg.click("#use-sample")
    assert "too short" in pg.locator("#sample-msg").text_content()
    pg.click("#clear")
    assert pg.locator("#pad-count").text_content() == ""

    draw_sample(pg)
    assert "7 strokes" in pg.locator("#pad-count").text_content()
    pg.click("#use-sample")
    pg.wait_for_selector("#sample-msg.good", timeout=15000)
    assert pg.locator("#style-custom input").is_checked()
    stored = pg.evaluate("() => JSON.parse(localStorage.getItem('handsynth.sample'))")
    assert stored["text"] == pg.input_value("#prompt") and len(stored["strokes"]) == 7
    assert sum(len(s) for s in stored["strokes"]) > 300

    pg.fill("#text", "hello")
    set_range(pg, "#stroke", 8)
    pg.click("#generate")
    result = wait_for_result(pg)
    assert result["w"] == 1200
    assert_screenshot_shows_result(pg, tmp_path / "my-hand.png")

    # the sample survives a reload and is still the chosen style
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    mine = pg.locator("#style-custom input")
    assert mine.is_enabled() and mine.is_checked()
    pg.fill("#text", "hello")
    pg.click("#generate")
    wait_for_result(pg)  # (the same request: answered from the server's cache, so quickly)
    # and can be forgotten
    pg.click("#forget-sample")
    pg.wait_for_function("() => document.querySelector('#style-custom input')?.disabled === true")
    assert pg.evaluate("() => localStorage.getItem('handsynth.sample')") is None


# ---- playing the writing, a word written again, paper and pens (issue 17) --------------------

SVG = "{http://www.w3.org/2000/svg}"
TEXT = "Dear Ada,\nthank you for the tea\nsee you soon"


def fetch_text(pg, body: dict) -> tuple[str, list]:
    """POST /v1/write from the page (its own origin): (the answer as text, its words)."""
    return tuple(pg.evaluate("""async (body) => {
        const r = await fetch('/v1/write', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                            body: JSON.stringify(body)});
        return [await r.text(), JSON.parse(r.headers.get('X-Handsynth-Words'))];
    }""", body))


def shown_png(pg) -> np.ndarray:
    data = pg.evaluate("""async () => {
        const b = await (await fetch(document.getElementById('result').src)).arrayBuffer();
        return Array.from(new Uint8Array(b));
    }""")
    return np.asarray(Image.open(io.BytesIO(bytes(data))).convert("L"), np.int16)


def test_plays_the_writing_and_rewrites_a_clicked_word(page, tmp_path):
    pg = page
    pg.fill("#text", TEXT)
    assert pg.locator("#animate").is_checked()
    with pg.expect_request(lambda r: r.url.endswith("/v1/write") and r.post_data_json["format"] == "png") as req:
        pg.click("#generate")
    body = req.value.post_data_json
    wait_for_result(pg)
    # the writing plays: an animated SVG over the page, one timed element per stroke, then the PNG
    pg.wait_for_selector("img#play", state="visible", timeout=10000)
    svg, _ = fetch_text(pg, {**body, "format": "svg"})
    n_strokes = len(list(ET.fromstring(svg).iter(f"{SVG}path")))
    played = pg.evaluate("async () => await (await fetch(document.getElementById('play').src)).text()")
    assert len(list(ET.fromstring(played).iter(f"{SVG}animate"))) == n_strokes
    pg.screenshot(path=str(tmp_path / "playing.png"))             # (the page scrolls the result into sight)
    box = pg.locator("#result-box").bounding_box()
    assert box["y"] >= -1 and box["y"] + box["height"] <= 1001
    pg.wait_for_selector("img#play", state="hidden", timeout=30000)

    # one button per word, over the word
    buttons = pg.locator("#words .word")
    assert buttons.count() == len(TEXT.split())
    assert [buttons.nth(i).get_attribute("data-text") for i in range(buttons.count())] == TEXT.split()
    before_png = shown_png(pg)
    before_svg, before_words = fetch_text(pg, {**body, "format": "svg"})
    k = TEXT.split().index("tea")               # the last word of its line: no other stroke moves
    tea = buttons.nth(k)
    assert tea.get_attribute("title") == "write “tea” again"
    box, img = tea.bounding_box(), pg.locator("#result").bounding_box()
    cx = (box["x"] + box["width"] / 2 - img["x"]) / img["width"]
    assert before_words[k][2] < cx < before_words[k][4]
    with pg.expect_request(lambda r: r.url.endswith("/v1/write") and "redo" in (r.post_data_json or {})) as req:
        tea.click()
    assert req.value.post_data_json["redo"] == {str(k): 1}
    pg.wait_for_function(f"() => !state.busy && state.redo[{k}] === 1", timeout=60000)
    assert pg.locator("#error").is_hidden()
    after_png = shown_png(pg)
    assert_screenshot_shows_result(pg, tmp_path / "redone.png")

    # the word's strokes changed, and no other stroke did
    after_svg, after_words = fetch_text(pg, {**body, "format": "svg", "redo": {str(k): 1}})
    old = [p.get("d") for p in ET.fromstring(before_svg).iter(f"{SVG}path")]
    new = [p.get("d") for p in ET.fromstring(after_svg).iter(f"{SVG}path")]
    assert [w for w in after_words if w[0] != k] == [w for w in before_words if w[0] != k]
    head = next(i for i, (a, b) in enumerate(zip(old, new)) if a != b)
    tail = next(i for i, (a, b) in enumerate(zip(old[::-1], new[::-1])) if a != b)
    assert old[:head] == new[:head] and old[len(old) - tail:] == new[len(new) - tail:]
    assert head + tail < min(len(old), len(new))                # ... and those in between are the word's
    changed = old[head:len(old) - tail]
    assert 0 < len(changed) <= 8
    # on the page shown: pixels changed only around the word
    h, w = min(len(before_png), len(after_png)), before_png.shape[1]
    ys, xs = np.nonzero(np.abs(before_png[:h] - after_png[:h]) > 8)
    assert len(xs)
    lo = min(before_words[k][2], after_words[k][2]) * w - 6
    hi = max(before_words[k][4], after_words[k][4]) * w + 6
    assert lo <= xs.min() and xs.max() <= hi

    # clicking again: the next seed; the download carries the rewritten word
    with pg.expect_request(lambda r: r.url.endswith("/v1/write") and "redo" in (r.post_data_json or {})) as req:
        pg.locator("#words .word").nth(k).click()
    assert req.value.post_data_json["redo"] == {str(k): 2}
    pg.wait_for_function(f"() => !state.busy && state.redo[{k}] === 2", timeout=60000)
    with pg.expect_download(timeout=60000) as dl:
        pg.click("#download-svg")
    again, _ = fetch_text(pg, {**body, "format": "svg", "redo": {str(k): 2}})
    assert dl.value.path().read_text(encoding="utf-8") == again != after_svg
    # writing again starts afresh
    pg.fill("#text", "hello")
    pg.click("#generate")
    pg.wait_for_function("() => !state.busy && Object.keys(state.redo).length === 0 && state.words.length === 1",
                         timeout=60000)


def test_paper_ruling_pen_and_every_download(page, tmp_path):
    pg = page
    pg.fill("#text", "hello")
    pg.uncheck("#animate")
    pg.select_option("#paper", "a6")
    assert pg.locator("#landscape").is_enabled()
    pg.check("#landscape")
    pg.select_option("#ruling", "squared")
    assert "fountain" in [o.get_attribute("value") for o in pg.locator("#pen option").all()]
    pg.select_option("#pen", "fountain")
    with pg.expect_request(lambda r: r.url.endswith("/v1/write")) as req:
        pg.click("#generate")
    assert {k: req.value.post_data_json.get(k) for k in ("paper", "landscape", "ruling", "pen", "width")} == \
        {"paper": "a6", "landscape": True, "ruling": "squared", "pen": "fountain", "width": None}
    result = wait_for_result(pg)
    assert (result["w"], result["h"]) == (874, 620)             # A6 across at 150 dpi
    assert pg.locator("img#play").is_hidden()
    assert_screenshot_shows_result(pg, tmp_path / "a6.png")
    checks = {
        "plotter": lambda b: "pen-up travel" in b.decode() and b"inkscape:groupmode=\"layer\"" in b,
        "gcode": lambda b: b.decode().splitlines()[1] == "G21 (millimetres)",
        "inkml": lambda b: ET.fromstring(b).tag.endswith("}ink"),
        "gif": lambda b: Image.open(io.BytesIO(b)).n_frames > 2,
        "webp": lambda b: Image.open(io.BytesIO(b)).n_frames > 2,
        "pdf": lambda b: b.startswith(b"%PDF-"),
    }
    names = {"plotter": "handwriting-plotter.svg"}
    for what, ok in checks.items():
        with pg.expect_download(timeout=60000) as dl:
            pg.click(f"#download-{what}")
        assert dl.value.suggested_filename == names.get(what, f"handwriting.{what}")
        data = dl.value.path().read_bytes()
        assert ok(data), what
    assert pg.locator("#error").is_hidden()
