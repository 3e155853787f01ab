"""The web page in a real Chromium (Debian's chromium, driven by Playwright): type a text, pick a
style, write it and see the image (the writing played as it appears); draw a sample on the canvas
with the mouse, use it as the style and write with it; it survives a reload; empty/short samples
and bad text get messages in the page; click a word to write it again (its strokes change, no
other does); paper, ruling and pen choices and the downloads of every format. Screenshots are
saved and checked to show the result. At a desktop (1280x900) and a phone (390x844, touch) size:
the text, the styles and the "Write it" button in view without scrolling, the result in view after
writing and fitting the width (or panned inside its own box at full size), the pad in view and tall
enough, its sentence never cut off and written over two lines on the phone, no sideways scrolling
of the page. Unknown characters get a message naming them and a checkbox that leaves them out; the
API docs (/docs) render with every request to another host blocked, and no page links to one.
Screenshots go to tmp_path, or to $HANDSYNTH_WEBSHOTS (e.g. /tmp/webshots) to look at them."""
from __future__ import annotations

import io
import math
import os
import re
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

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
    with LiveServer(create_app(handsynth.load_model(), max_concurrent=2, queue_size=4, timeout_s=60,
                               tune_steps=6)) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def watch_errors(pg, errors=None) -> list:
    """The page's script errors and Content-Security-Policy refusals, collected into a list."""
    errors = [] if errors is None else errors
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
    return errors


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    console_errors = watch_errors(pg)
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


def assert_screenshot_shows_result(pg, path, scale: float = 1):
    """Save a screenshot of the page and check that the result image's region holds ink (once the
    writing has played). ``scale``: the device pixels per CSS pixel."""
    pg.wait_for_selector("img#play", state="hidden", timeout=30000)
    pg.locator("#result").scroll_into_view_if_needed()
    pg.screenshot(path=str(path))
    box = {k: v * scale for k, v in pg.locator("#result").bounding_box().items()}
    shot = Image.open(path).convert("L")
    assert shot.size == (round(pg.viewport_size["width"] * scale), round(pg.viewport_size["height"] * scale))
    region = np.asarray(shot.crop((int(box["x"]), int(box["y"]),
                                   int(box["x"] + box["width"]), int(box["y"] + box["height"]))))
    assert region.size > 0 and box["width"] > 100 * scale and box["height"] > 20 * scale, box
    dark = (region < 128).sum()  # (the untrained placeholder model may write as little as a dot)
    assert dark >= 4, f"the result region of the screenshot is blank ({dark} dark pixels)"
    assert (region > 230).mean() > 0.5  # ink on paper, not a dark or broken box


def draw_sample(pg, points: int = 60):
    """Write loopy 'words' on the pad with the mouse: 7 strokes of ``points`` points each."""
    pad = pg.locator("#pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x0, base = box["x"] + 20, box["y"] + box["height"] * 0.62
    step = (box["width"] - 40) / 7
    for word in range(7):
        pts = []
        for i in range(points):
            t = i / (points - 1) * 4 * math.pi
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
    pg.fill("#text", "hi \u4e2d\nand \u4e2d again")
    pg.click("#generate")
    pg.wait_for_function("() => !document.getElementById('error').hidden && "
                         "document.getElementById('error').textContent.includes('cannot write')", timeout=15000)
    assert pg.locator("#generate").is_enabled()
    # a message for the page, not for the API: the character named, where it is, and a checkbox
    message = pg.locator("#error-text").text_content()
    assert "\u201c\u4e2d\u201d (U+4E2D)" in message and "2 times" in message and "lines 1, 2" in message
    assert "skip_unknown" not in pg.locator("#error").text_content()
    offer = pg.locator("#error-skip-box")
    assert offer.is_visible() and not offer.is_checked()
    assert "leave out characters the model cannot write" in pg.locator("#error-skip").text_content()
    with pg.expect_request(lambda r: r.url.endswith("/v1/write") and r.post_data_json["format"] == "png") as req:
        offer.check()
    assert req.value.post_data_json["skip_unknown"] is True
    wait_for_result(pg)
    assert pg.locator("#skip-unknown").is_checked()           # the option stays on for the next writes
    assert pg.evaluate("() => state.words.map(w => w[1])") == ["hi", "and", "again"]


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
    # ... and scrolled into sight in the list of styles (the last card), the page itself unscrolled
    card, picker = pg.locator("#style-custom").bounding_box(), pg.locator("#styles").bounding_box()
    assert picker["y"] - 1 <= card["y"] and card["y"] + card["height"] <= picker["y"] + picker["height"] + 1
    assert pg.evaluate("() => document.getElementById('styles').scrollTop") > 0
    assert pg.evaluate("() => scrollY") == 0
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


# ---- a desktop and a phone, the API docs offline, no other host (issue 18) -------------------

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3, "is_mobile": True, "has_touch": True}


def shots_dir(tmp_path) -> Path:
    """Where screenshots go: $HANDSYNTH_WEBSHOTS if set (to look at them), else the test's tmp_path."""
    d = Path(os.environ.get("HANDSYNTH_WEBSHOTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def open_page(browser, server):
    """open_page(**context options) -> a page of the server, ready; page errors fail the test."""
    contexts, errors = [], []

    def open_(**options):
        context = browser.new_context(**options)
        contexts.append(context)
        pg = context.new_page()
        watch_errors(pg, errors)
        pg.goto(server.url + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=15000)
        return pg
    yield open_
    for c in contexts:
        c.close()
    assert not errors, errors


def assert_in_view(pg, selector: str):
    box = pg.locator(selector).bounding_box()
    vw, vh = pg.viewport_size["width"], pg.viewport_size["height"]
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= -1 and box["y"] >= -1 and box["x"] + box["width"] <= vw + 1 and \
        box["y"] + box["height"] <= vh + 1, f"{selector} is not in view: {box} in {vw}x{vh}"
    return box


def assert_no_sideways_scroll(pg):
    sw, iw = pg.evaluate("() => [document.scrollingElement.scrollWidth, innerWidth]")
    assert sw <= iw, f"the page scrolls sideways: {sw} px wide in a {iw} px window"


def previews_loaded(pg):
    pg.wait_for_function("() => [...document.querySelectorAll('#styles img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)", timeout=30000)


def test_desktop_layout(open_page, tmp_path):
    pg = open_page(**DESKTOP)
    shots = shots_dir(tmp_path)
    previews_loaded(pg)
    # the text, the styles and the button in view without scrolling
    for sel in ("#text", "#styles", "#generate", ".style-card:has(input:checked)"):
        assert_in_view(pg, sel)
    assert_no_sideways_scroll(pg)
    if pg.locator("#styles input[value^='builtin:']").count():
        # large previews (the style's own writing, cropped to fill the card), traits as tags
        card = pg.locator(".style-card:has(input[value='builtin:s01'])")
        preview = card.locator(".preview").bounding_box()
        assert preview["width"] >= 300 and preview["height"] >= 40, preview
        assert card.locator(".tag").count() >= 3
        crop = pg.evaluate("() => getComputedStyle(document.querySelector('.preview:has(img)')).getPropertyValue('--w')")
        assert crop.endswith("%") and float(crop[:-1]) > 110          # cropped: the image drawn wider than its box
        assert pg.locator(".tag.writer").count() >= 2                 # "writer 1 of 2": names shared by styles
    pg.screenshot(path=str(shots / "desktop-load.png"))
    # the button stays in view with the options scrolled to
    pg.locator("#seed").scroll_into_view_if_needed()
    assert_in_view(pg, "#seed")
    assert_in_view(pg, "#generate")
    pg.fill("#text", "Dear Ada,\nthank you for the lovely tea!")
    pg.uncheck("#animate")                                        # (the other tests play it; no need to wait here)
    pg.click("#generate")
    wait_for_result(pg)
    assert_in_view(pg, "#result")
    assert_no_sideways_scroll(pg)
    assert_screenshot_shows_result(pg, shots / "desktop-result.png")
    pg.locator("#pad").scroll_into_view_if_needed()
    box = assert_in_view(pg, "#pad")
    assert box["height"] >= 180 and box["width"] >= 600
    pg.screenshot(path=str(shots / "desktop-pad.png"))


def test_phone_layout(open_page, tmp_path):
    pg = open_page(**PHONE)
    shots = shots_dir(tmp_path)
    previews_loaded(pg)
    assert_no_sideways_scroll(pg)
    for sel in ("#text", "#generate"):
        assert_in_view(pg, sel)
    pg.screenshot(path=str(shots / "phone-load.png"))
    pg.fill("#text", "Dear Ada,\nthank you for the lovely tea!\nSee you on Monday")
    pg.locator("#animate").tap()
    assert not pg.locator("#animate").is_checked()
    pg.locator("#generate").tap()
    wait_for_result(pg)
    # the result in view, as wide as its box (the 1200 px page fitted to the width)
    img = assert_in_view(pg, "#result")
    box = pg.locator("#result-box").bounding_box()
    assert img["width"] <= box["width"] and img["width"] >= box["width"] - 4, (img, box)
    assert_no_sideways_scroll(pg)
    pg.screenshot(path=str(shots / "phone-result.png"))
    # full size: the page at its own pixel size, panned inside its box; the page still does not scroll sideways
    pg.locator("#zoom").tap()
    assert pg.locator("#result").bounding_box()["width"] == pytest.approx(1200, abs=1)
    assert pg.evaluate("() => { const b = document.getElementById('result-box'); return b.scrollWidth > b.clientWidth; }")
    assert_no_sideways_scroll(pg)
    pg.evaluate("() => { document.getElementById('result-box').scrollLeft = 150; }")
    pg.screenshot(path=str(shots / "phone-full-size.png"))
    pg.locator("#zoom").tap()
    assert pg.locator("#result").bounding_box()["width"] <= box["width"]

    # the pad: tall enough, the sentence shown whole (it wraps), two guide lines for it
    pg.locator("#pad").scroll_into_view_if_needed()
    pad = assert_in_view(pg, "#pad")
    assert pad["height"] >= 250 and pad["width"] >= 330, pad
    prompt = pg.evaluate("() => { const p = document.getElementById('prompt'); "
                         "return [p.scrollHeight, p.clientHeight, p.scrollWidth, p.clientWidth]; }")
    assert prompt[0] <= prompt[1] + 1 and prompt[2] <= prompt[3], prompt
    assert pg.evaluate("() => state.pad.lines") == 2
    band = pg.evaluate("() => state.pad.band")
    # the sentence over two lines: 4 "words" on the first, 3 on the second; one line is sent
    for line, words in ((0, 4), (1, 3)):
        x0, base, step = pad["x"] + 16, pad["y"] + band * (line + 0.68), (pad["width"] - 32) / words
        for word in range(words):
            pts = [(x0 + word * step + step * 0.15 * t / math.pi + 9 * math.cos(t),
                    base - 24 * abs(math.sin(t / 2)) - 6 * math.sin(t))
                   for t in (i / 39 * 4 * math.pi for i in range(40))]
            pg.mouse.move(*pts[0])
            pg.mouse.down()
            for p in pts[1:]:
                pg.mouse.move(*p)
            pg.mouse.up()
    assert "7 strokes" in pg.locator("#pad-count").text_content()
    pg.screenshot(path=str(shots / "phone-pad.png"))
    pg.locator("#use-sample").tap()
    pg.wait_for_selector("#sample-msg.good", timeout=15000)
    stored = pg.evaluate("() => JSON.parse(localStorage.getItem('handsynth.sample'))")
    ys = [p[1] for s in stored["strokes"] for p in s]
    xs = [p[0] for s in stored["strokes"] for p in s]
    assert max(ys) - min(ys) < band * 0.6                         # one line ...
    assert max(xs) - min(xs) > pad["width"] * 1.4                 # ... as long as the two
    assert xs.index(max(xs)) > len(xs) * 0.8                      # the second line goes on after the first
    assert_no_sideways_scroll(pg)


@pytest.mark.parametrize("where", ["desktop", pytest.param("phone", marks=pytest.mark.slow)])
def test_learn_my_hand(open_page, server, tmp_path, where):
    """Several sentences written on the pad with the mouse, the set's progress, "learn my hand"
    run on the server with its progress, the tuned file kept in the browser and sent with each
    write in "My hand"; it survives a reload and can be forgotten."""
    import base64
    import json as json_

    pg = open_page(**(DESKTOP if where == "desktop" else PHONE))
    shots = shots_dir(tmp_path)
    prompts = json_.loads(urllib.request.urlopen(server.url + "/v1/info").read())["tune_prompts"]
    assert pg.input_value("#prompt") == prompts[0]
    assert pg.locator("#set-count").text_content().startswith(f"0 of {len(prompts)} sentences")
    assert pg.locator("#learn-hand").is_disabled()
    pg.click("#add-sentence")                                     # an empty pad is refused
    assert "empty" in pg.locator("#learn-msg").text_content()
    for i in range(3):
        pg.locator("#prompt").scroll_into_view_if_needed()
        assert_in_view(pg, "#prompt")
        prompt = pg.evaluate("() => { const p = document.getElementById('prompt'); "
                             "return [p.scrollHeight, p.clientHeight, p.value]; }")
        assert prompt[0] <= prompt[1] + 1 and prompt[2] == prompts[i]   # the sentence shown whole
        draw_sample(pg, points=40)
        assert pg.locator("#pad").bounding_box()["height"] >= 180
        pg.locator("#add-sentence").scroll_into_view_if_needed()
        pg.click("#add-sentence")
        pg.wait_for_function(f"() => document.querySelectorAll('#set-list li.done').length === {i + 1}", timeout=15000)
        assert f"Sentence {i + 1} kept" in pg.locator("#learn-msg").text_content()
        assert pg.locator("#pad-count").text_content() == ""          # the pad is cleared for the next one
        assert pg.locator("#learn-hand").is_disabled() == (i < 2)
    stored = pg.evaluate("() => JSON.parse(localStorage.getItem('handsynth.set'))")
    assert [x["text"] for x in stored] == prompts[:3] and all(len(x["strokes"]) == 7 for x in stored)
    assert pg.evaluate("() => JSON.parse(localStorage.getItem('handsynth.sample')).text") == prompts[0]
    assert pg.input_value("#prompt") == prompts[3]
    assert_no_sideways_scroll(pg)
    pg.screenshot(path=str(shots / f"{where}-learn-set.png"))

    pg.click("#learn-hand")
    pg.wait_for_selector("#learn-progress:not([hidden])", timeout=10000)
    assert pg.locator("#stop-learning").is_visible() and pg.locator("#learn-hand").is_disabled()
    pg.wait_for_function("() => /step \\d+ of 6/.test(document.getElementById('learn-msg').textContent) || "
                         "/Learnt/.test(document.getElementById('learn-msg').textContent)", timeout=60000)
    pg.screenshot(path=str(shots / f"{where}-learning.png"))
    pg.wait_for_function("() => /Learnt from 3 sentences/.test(document.getElementById('learn-msg').textContent)",
                         timeout=180000)
    assert "good" in pg.get_attribute("#learn-msg", "class")
    tuned = pg.evaluate("() => JSON.parse(localStorage.getItem('handsynth.tuned'))")
    data = base64.b64decode(tuned["model"])
    assert tuned["sentences"] == 3 and data[:2] == b"PK" and 100_000 < len(data) < 640 * 1024
    assert pg.locator("#style-custom input").is_checked()
    assert "learnt from 3 sentences" in pg.locator("#style-custom").text_content()

    # writing in "My hand" sends the tuned file alone: it primes with the first two sentences it keeps
    pg.locator("#text").scroll_into_view_if_needed()
    pg.fill("#text", "hello")
    pg.uncheck("#animate")
    with pg.expect_request(lambda r: r.url.endswith("/v1/write") and r.method == "POST") as sent:
        pg.click("#generate")
    body = json_.loads(sent.value.post_data)
    assert body["tuned"] == tuned["model"] and "style_sample" not in body and tuned["primes"] is True
    import torch
    from handsynth.sampling import primed_text
    assert torch.load(io.BytesIO(data), weights_only=True)["primer"]["text"] == primed_text(prompts[0], prompts[1])
    wait_for_result(pg)
    assert_screenshot_shows_result(pg, shots / f"{where}-learnt-hand.png", scale=pg.evaluate("devicePixelRatio"))

    # the set and the hand survive a reload; they can be forgotten
    pg.reload()
    pg.wait_for_selector("body[data-ready='1']")
    assert pg.locator("#set-list li.done").count() == 3
    assert "learnt from 3" in pg.locator("#style-custom").text_content()
    pg.locator("#forget-hand").scroll_into_view_if_needed()
    pg.click("#forget-hand")
    assert pg.evaluate("() => [localStorage.getItem('handsynth.set'), localStorage.getItem('handsynth.tuned')]") == [None, None]
    assert pg.locator("#set-list li.done").count() == 0 and pg.locator("#learn-hand").is_disabled()
    pg.wait_for_function("() => !/learnt/.test(document.getElementById('style-custom').textContent)")


def test_docs_offline(browser, server, tmp_path):
    """/docs with every request to another host refused: the endpoints are shown, none was asked."""
    context = browser.new_context(**DESKTOP)
    refused = []

    def only_loopback(route):
        if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()
    context.route("**/*", only_loopback)
    try:
        pg = context.new_page()
        errors = watch_errors(pg)
        pg.goto(server.url + "/docs")
        pg.wait_for_selector("body[data-ready='1']", timeout=15000)
        shown = pg.locator("#endpoints").inner_text()
        spec = pg.evaluate("async () => await (await fetch('/openapi.json')).json()")
        for path in spec["paths"]:
            assert path in shown
        assert pg.locator(".op").count() == sum(len(v) for v in spec["paths"].values())
        assert "skip_unknown" in shown and "WriteRequest" in pg.locator("#schemas").inner_text()
        op = pg.locator(".op:has(.path:text-is('/healthz'))")     # and a request can be tried from the page
        op.locator("summary").click()
        op.locator("button").click()
        pg.wait_for_function("() => document.querySelector('#op-get--healthz .status')", timeout=10000)
        assert op.locator(".status").text_content().startswith("200")
        pg.screenshot(path=str(shots_dir(tmp_path) / "docs-offline.png"))
        assert not refused, refused
        assert not errors, errors
    finally:
        context.close()


def test_pages_load_nothing_from_other_hosts(server):
    """The HTML, scripts and styles served name no other host, and the pages say so to the browser
    (Content-Security-Policy)."""
    def get(path):
        with urllib.request.urlopen(server.url + path, timeout=10) as r:
            return r.read().decode("utf-8"), r.headers
    files, seen = ["/", "/docs"], set()
    static = Path(handsynth.__file__).parent / "server" / "static"
    files += [f"/static/{p.name}" for p in sorted(static.iterdir()) if p.is_file()]
    for path in files:
        text, headers = get(path)
        seen.add(path)
        if path in ("/", "/docs"):
            assert "default-src 'self'" in headers["Content-Security-Policy"]
            for ref in re.findall(r'(?:src|href)="([^"]+)"', text):
                assert not urllib.parse.urlsplit(ref).netloc, ref
                if ref.startswith("/static/") and ref not in seen:
                    files.append(ref)
        hosts = {urllib.parse.urlsplit(u).hostname for u in re.findall(r"https?://[^\s\"'`)<>]+", text)}
        assert hosts <= {"127.0.0.1", "localhost"}, (path, hosts)


def test_the_model_picker_lists_the_servers_models_and_sends_the_choice(browser, page, tiny_model):
    """With one model the picker is hidden; a server with two shows both (the default chosen),
    and the request carries the chosen one's name (none for the default), whose drawing is shown."""
    assert page.locator("#model").is_hidden() and page.locator("#model-label").is_hidden()
    tiny = handsynth.load_model(tiny_model)
    text = "".join(c for c in "hello there" if c in tiny.alphabet.chars) or tiny.alphabet.chars[1:6]
    with LiveServer(create_app(handsynth.load_model(), models={"mine": tiny}, max_concurrent=2, queue_size=4,
                               timeout_s=60, warm_previews=False)) as s:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        pg = context.new_page()
        errors = watch_errors(pg)
        pg.goto(s.url + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=15000)
        assert pg.locator("#model").is_visible()
        assert pg.eval_on_selector_all("#model option", "os => os.map(o => [o.value, o.selected])") == \
            [["lstm", True], ["mine", False]]
        pg.uncheck("#animate")
        pg.fill("#text", text)
        shown = {}
        for choice, sent in (("mine", "mine"), ("lstm", None)):
            pg.select_option("#model", choice)
            with pg.expect_request(lambda r: r.url.endswith("/v1/write")) as req:
                pg.click("#generate")
            assert req.value.post_data_json.get("model") == sent
            wait_for_result(pg, shown.get("mine", (None,))[0])
            shown[choice] = (pg.eval_on_selector("#result", "img => img.src"), shown_png(pg))
        a, b = shown["mine"][1], shown["lstm"][1]   # two networks' drawings on the page
        assert a.shape != b.shape or np.abs(a.astype(float) - b.astype(float)).max() > 100
        context.close()
        assert not errors, errors
