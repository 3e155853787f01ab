"""The HTTP API and the web page (FastAPI, served by uvicorn).

One ``Handwriter`` is loaded once and shared by every request. Generation runs in a pool of worker
threads, never on the event loop; at most ``max_concurrent`` requests are written at once and at
most ``queue_size`` more wait for a worker; beyond that the server answers 503 at once. The lines
of the requests being written are sampled together, in batches shared across requests
(``batching.Batcher``, one sampling thread): a pen step costs about the same for one line as for
dozens.
Every request has a time limit (``timeout_s``, counted from its arrival, queueing included): past
it the answer is 504 and the worker stops writing at its next sampling step. Every bad input is a
4xx answer with a JSON body ``{"error": "<one line saying what to do>"}``.

The server keeps no state between requests beyond a cache: to write a word again, the page sends
the same request with ``redo`` (``{word number: seed}``), and the words of the page come back in
the ``X-Handsynth-Words`` header of every file.
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import HandsynthError, Handwriter, load_model
from ..batching import Batcher
from ..layout import RULINGS, PageOptions, place
from ..drawing import FORMATS, ONE_FILE, Drawing, Output
from ..paper import PAPERS, page_options, sheet_ink
from ..plotter import MAX_TOLERANCE, GcodeOptions
from ..render import PENS, Ink
from ..sampling import SamplingOptions
from ..styles import MAX_CHARS as SAMPLE_MAX_CHARS
from ..styles import MIN_CHARS as SAMPLE_MIN_CHARS
from ..styles import MIN_POINTS as SAMPLE_MIN_POINTS
from ..styles import PRIMER_SENTENCES, Style, builtin_styles, get_style, style_from_json
from .tuning import MAX_SAMPLES as TUNE_MAX_SAMPLES
from .tuning import MIN_SAMPLES as TUNE_MIN_SAMPLES
from .tuning import MINUTES as TUNE_MINUTES
from .tuning import STEPS as TUNE_STEPS
from .tuning import Busy, TuneJobs

log = logging.getLogger("handsynth.server")

STATIC = Path(__file__).with_name("static")
# The pages load nothing from other hosts (they work offline); the browser is told so too.
PAGE_HEADERS = {"Cache-Control": "no-cache",
                "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' blob:; "
                                           "object-src 'none'; base-uri 'none'; form-action 'self'; "
                                           "frame-ancestors 'none'"}

# Documented input limits (docs/server.md). The text limit and the three size limits can be
# changed with create_app(); the value ranges are fixed.
MAX_REQUEST_CHARS = 1000         # characters of text per request (one write() call allows MAX_WRITE_CHARS)
MAX_BODY_BYTES = 256 * 1024      # bytes of request body (except the two below)
MAX_WRITE_BODY_BYTES = 1024 * 1024   # POST /v1/write: it may carry a tuned file (``tuned``)
MAX_TUNE_BODY_BYTES = 2 * 1024 * 1024   # POST /v1/tune: several sentences of handwriting
DRAIN_BYTES = 8 * 1024 * 1024           # a body over its limit is read and dropped up to this much before the 413
DRAIN_IDLE_S = 1.0               # ... while it keeps coming: a client that stopped to wait for the answer gets it
MAX_TUNED_BYTES = 640 * 1024     # a tuned file sent back (rank-16 changes of the shipped model: ~450 KiB)
TUNED_CACHE = 4                  # tuned models kept ready, by the SHA-256 of their file
BODY_TIMEOUT_S = 20.0            # seconds for a request's body to arrive after its head
MAX_SAMPLE_POINTS = 6000         # points in a handwriting sample (style_sample)
MIN_WIDTH, MAX_WIDTH = 300, 2400  # page width in pixels
MAX_SEED = 2**31 - 1
MAX_MODEL_NAME = 100
MAX_STYLE_ID = 64
MAX_CONCURRENT = 32              # requests written at once (their lines share sampling batches)
QUEUE_SIZE = 64                  # requests waiting beyond those; more get 503
CACHE_SIZE = 32                  # generated drawings kept, so another format of the same request is cheap
DPI = Ink.dpi
MIN_DPI, MAX_DPI = 72, 300
MAX_REDO = 200                   # words written again in one request
MAX_WORD_INDEX = 100_000

PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Sphinx of black quartz, judge my vow.",
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump!",
    "A wizard's job is to vex chumps quickly in fog.",
)
# The sentences "learn my hand" asks for, in order: over the set every lowercase letter, every
# capital and every digit (TUNE_PROMPTS_COVER), in sentences short enough for a phone's pad.
TUNE_PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Meet me at 7:30 on Friday, 12 June 2026.",
    "Call Zoe Quinn on 0845 961 2377 by noon!",
    "Vera, Kim and Hugo sold 48 jars of jam.",
    "Ask Uncle Ian if Greg and Rosa can come.",
    "We LOVE Yorkshire & Wales; Xavier? Never.",
    "Dr. Black paid 56% more for Pam's lamp.",
    "Sphinx of black quartz, judge my vow.",
)

MEDIA = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "gcode": "text/plain; charset=utf-8",
         "inkml": "application/inkml+xml", "gif": "image/gif", "webp": "image/webp"}
assert set(MEDIA) == set(FORMATS)
COLOR_PATTERN = r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$"


# ----------------------------------------------------------------------------- request models

class StyleSample(BaseModel):
    """Captured handwriting and the text it says (the sample format of handsynth.data.samples)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    text: str = Field(..., max_length=SAMPLE_MAX_CHARS * 2,
                      description=f"what the strokes write: {SAMPLE_MIN_CHARS} to {SAMPLE_MAX_CHARS} characters")
    strokes: list[list[list[float]]] = Field(
        ..., description=f"pen-down strokes, each a list of [x, y] points (or [x, y, t]); "
                         f"{SAMPLE_MIN_POINTS} to {MAX_SAMPLE_POINTS} points in all")
    y_axis: Literal["down", "up"] = Field("down", description="'down': canvas/screen coordinates")
    writer: str = Field("", max_length=100)


class GcodeRequest(BaseModel):
    """G-code settings (``format: "gcode"``), as ``handsynth write``'s G-code flags; unset fields
    keep ``plotter.GcodeOptions``' defaults."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    pen: Literal["servo", "z", "custom"] = Field("servo", description="a servo (M3 S/M5), a Z axis, or your own commands")
    servo_down: int | None = Field(None, ge=0, le=100000, description="M3 S value that lowers the pen")
    servo_up: int | None = Field(None, ge=0, le=100000, description="M3 S value that lifts it (default: M5)")
    z_down: float | None = Field(None, ge=-1000, le=1000, description="mm")
    z_up: float | None = Field(None, ge=-1000, le=1000, description="mm")
    pen_down: str | None = Field(None, max_length=80, description="with pen custom: the pen-down command")
    pen_up: str | None = Field(None, max_length=80, description="with pen custom: the pen-up command")
    dwell: float | None = Field(None, ge=0, le=10, description="seconds to wait after each pen move")
    feed: float | None = Field(None, ge=1, le=100000, description="drawing feed rate, mm/min")
    travel_feed: float | None = Field(None, ge=1, le=100000, description="pen-up feed rate, mm/min (default: rapid G0)")
    origin: Literal["page", "writing"] = Field("page", description="what sits at the offset")
    offset: tuple[Annotated[float, Field(ge=-10000, le=10000)], Annotated[float, Field(ge=-10000, le=10000)]] = \
        Field((0.0, 0.0), description="machine position of the origin, [x, y] in mm")
    flip_y: bool = Field(True, description="mirror y for machines whose y grows away from you")

    def options(self) -> GcodeOptions:
        return GcodeOptions(**{k: v for k, v in self.model_dump().items() if v is not None})


class WriteRequest(BaseModel):
    """What to write and how. Give ``style`` (a built-in id or name) or ``style_sample`` (your own
    handwriting), or neither (the model's own hand)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"text": "Dear Ada,\nthank you!", "bias": 1.0, "seed": 1, "format": "png"}]})

    text: str = Field(..., description=f"the text; line breaks and paragraphs are kept; at most "
                                        f"{MAX_REQUEST_CHARS} characters (server setting)")
    style: str | None = Field(None, max_length=MAX_STYLE_ID, description="a built-in style id or name (GET /v1/styles)")
    style_sample: Annotated[list[StyleSample], Field(min_length=1, max_length=PRIMER_SENTENCES)] | None = \
        Field(None, description=f"your own handwriting as the style: one sentence, or a list of up to "
                                f"{PRIMER_SENTENCES} of one hand (joined, they prime as one line)")
    bias: float = Field(SamplingOptions.bias, ge=0.0, le=10.0, description="legibility: 0 wild ... 10 very neat")
    seed: int = Field(SamplingOptions.seed, ge=0, le=MAX_SEED, description="the same seed gives the same drawing")
    format: Literal[FORMATS] = Field("png", description="png, svg, pdf, gcode (pen plotters), inkml (ink "
                                                           "exchange), gif or webp (the writing as it appears)")
    animate: bool = Field(False, description="svg: the pen draws each stroke in turn (SMIL, no script)")
    plotter: bool = Field(False, description="svg for plotters: one polyline per stroke in Inkscape layers")
    simplify: float = Field(0.0, ge=0.0, le=MAX_TOLERANCE, description="plotter output: simplify to this tolerance, mm")
    order: bool = Field(True, description="plotter output: order the strokes to cut pen-up travel")
    gcode: GcodeRequest | None = Field(None, description="G-code settings (format gcode)")
    paper: str | None = Field(None, max_length=40, description=f"real paper: {', '.join(PAPERS)} or WxHmm "
                                                               f"(e.g. 148x105mm); instead of width")
    landscape: bool = Field(False, description="the paper's long side across")
    margin: float | None = Field(None, ge=0, le=1000, description="with paper: margin on every side, mm")
    line_spacing: float | None = Field(None, gt=0, le=1000, description="with paper: between baselines, mm")
    x_height: float | None = Field(None, gt=0, le=1000, description="with paper: the writing's x-height, mm")
    ruling: Literal[RULINGS] | None = Field(None, description="ruled, squared or dotted paper (its own layer)")
    pen: Literal[tuple(PENS)] = Field(Ink.pen, description="pen model for png, pdf, gif and webp")
    ink_variation: float | None = Field(None, ge=0.0, le=1.0, description="per-stroke shade, 0 to 1 (null: the pen's own)")
    dpi: int = Field(DPI, ge=MIN_DPI, le=MAX_DPI, description="pixels per inch: the physical size, and a paper's pixels")
    redo: dict[Annotated[int, Field(ge=0, le=MAX_WORD_INDEX)], Annotated[int, Field(ge=0, le=MAX_SEED)]] | None = \
        Field(None, max_length=MAX_REDO, description="words to write again, {word number: seed}; word numbers "
                                                     "(from 0) come in the X-Handsynth-Words header")
    stroke_width: float = Field(Ink.stroke_width, ge=0.5, le=20.0, description="pen width in pixels")
    color: str = Field(Ink.color, pattern=COLOR_PATTERN, description="ink colour: #rgb, #rrggbb or a colour name")
    background: str | None = Field(Ink.background, pattern=COLOR_PATTERN, description="page colour; null: transparent")
    align: Literal["left", "center", "right"] = PageOptions.align
    width: int | None = Field(None, ge=MIN_WIDTH, le=MAX_WIDTH,
                              description=f"page width in pixels (default {PageOptions.width}); not with paper")
    page: int = Field(1, ge=1, le=1000, description="which page (PDF and InkML hold all; the others one)")
    skip_unknown: bool = Field(False, description="drop characters the model cannot write instead of refusing")
    model: str | None = Field(None, max_length=MAX_MODEL_NAME,
                              description="which of this server's models writes (GET /v1/models); default: the first")
    tuned: str | None = Field(None, max_length=(MAX_TUNED_BYTES * 4) // 3 + 4,
                              description="a model tuned to your hand (POST /v1/tune), as base64 of its file: "
                                          "writes in that hand, primed with the first two sentences it learnt from "
                                          "(style or style_sample: primed with another)")

    @field_validator("style_sample", mode="before")
    @classmethod
    def _one_or_a_list(cls, v):   # one sample is a list of one
        return [v] if isinstance(v, dict) else v


class TuneRequest(BaseModel):
    """Sentences of one person's handwriting to learn the hand from (the last is held out)."""
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    samples: list[StyleSample] = Field(..., description=f"{TUNE_MIN_SAMPLES} to {TUNE_MAX_SAMPLES} sentences")


class TuneStarted(BaseModel):
    id: str
    status_url: str
    max_steps: int
    minutes: float


class ErrorBody(BaseModel):
    error: str


class StyleInfo(BaseModel):
    id: str
    name: str
    text: str
    source: str
    preview_url: str


class StyleList(BaseModel):
    styles: list[StyleInfo]


class ModelEntry(BaseModel):
    name: str
    arch: str
    description: str
    default: bool


class ModelList(BaseModel):
    models: list[ModelEntry]


class SampleCheck(BaseModel):
    ok: bool
    text: str
    strokes: int
    points: int


ERRORS = {400: {"model": ErrorBody, "description": "bad input (the message says what to change)"},
          413: {"model": ErrorBody, "description": "request body too large"},
          415: {"model": ErrorBody, "description": "the body is not JSON"},
          503: {"model": ErrorBody, "description": "busy: every worker and queue place is taken"},
          504: {"model": ErrorBody, "description": "the request took longer than the time limit"}}


# ----------------------------------------------------------------------------- the worker pool

class Cancelled(Exception):
    """A job stopped because its time limit passed (or its client went away)."""


@dataclass
class Job:
    deadline: float
    cancelled: threading.Event = field(default_factory=threading.Event)

    def check(self) -> None:
        if self.cancelled.is_set() or time.monotonic() > self.deadline:
            raise Cancelled()


class WorkerPool:
    """``max_concurrent`` worker threads and ``queue_size`` waiting places. A place is held until
    the worker really finishes (not when the HTTP request gives up), so the bound is honest."""

    def __init__(self, max_concurrent: int, queue_size: int):
        if max_concurrent < 1 or queue_size < 0:
            raise ValueError("max_concurrent must be >= 1 and queue_size >= 0")
        self.max_concurrent, self.queue_size = max_concurrent, queue_size
        self._executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix="handsynth-writer")
        self._lock = threading.Lock()
        self.admitted = 0   # running + waiting
        self.running = 0
        self.served = 0
        self.rejected = 0
        self.timed_out = 0
        self.abandoned = 0  # the client went away; the worker stopped

    @property
    def waiting(self) -> int:
        return self.admitted - self.running

    def submit(self, fn, job: Job) -> Future | None:
        with self._lock:
            if self.admitted >= self.max_concurrent + self.queue_size:
                self.rejected += 1
                return None
            self.admitted += 1

        def run():
            with self._lock:
                self.running += 1
            try:
                job.check()
                return fn()
            finally:
                with self._lock:
                    self.running -= 1
                    self.admitted -= 1
                    self.served += 1

        return self._executor.submit(run)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class DrawingCache:
    """The last few generated drawings by request (text, style, bias, seed, width, align): the
    same request in another format or colour is only rendered again, not written again."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


# matplotlib is not documented as thread-safe: renders take turns (they are short).
_render_lock = threading.Lock()


_previews: dict[str, bytes] = {}   # built-in style id -> preview PNG (the bank is fixed per process)


def style_preview_png(style: Style) -> bytes:
    """A style's own sample, drawn about 600 px wide (cached)."""
    png = _previews.get(style.id)
    if png is None:
        pages = place([style.text], [style.offsets()], PageOptions(width=600))
        with _render_lock:
            png = Drawing(pages, Ink(stroke_width=2.6)).to_png()
        _previews[style.id] = png
    return png


def _warm_previews() -> None:
    for style in builtin_styles():
        try:
            style_preview_png(style)
        except Exception:  # a bad style shows up (as a 500 with a message) when it is asked for
            log.exception("preview of style %s", style.id)


def _json_error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


# ----------------------------------------------------------------------------- body size limit

class BodyLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` is refused with 413 before the
    app sees it (checked against Content-Length and while reading, for chunked bodies), and one
    that has not all arrived ``timeout_s`` seconds after its head with 408 (a slow client holds
    no worker); every answer gets ``X-Content-Type-Options: nosniff``. (Plain ASGI, not
    BaseHTTPMiddleware, so that a handler can still notice its client going away.)"""

    def __init__(self, app, max_bytes: int, timeout_s: float = BODY_TIMEOUT_S, paths: dict | None = None):
        """``paths``: other limits for some paths (``{path: max_bytes}``)."""
        self.app, self.max_bytes, self.timeout_s, self.paths = app, max_bytes, timeout_s, dict(paths or {})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        return await self._guard(scope, receive, send_with_headers)

    async def _guard(self, scope, receive, send):
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.paths.get(scope.get("path", ""), self.max_bytes)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _json_error(400, "bad Content-Length header")(scope, receive, send)
            if n > limit:
                return await self._too_large(scope, receive, send, limit, drain=n <= DRAIN_BYTES)
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return await _json_error(408, f"the request body did not arrive within {self.timeout_s:g} s; "
                                              f"send it at once", {"Connection": "close"})(scope, receive, send)
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await self._too_large(scope, receive, send, limit)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send, limit: int, drain: bool = True):
        kib = limit // 1024
        # read what is still coming (up to DRAIN_BYTES, within the body's time limit, while it
        # keeps coming) and drop it: a socket closed with unread data is reset, and the client
        # would never see the answer. A body declared larger than that is answered at once.
        drained, deadline = 0, time.monotonic() + self.timeout_s
        while drain and drained < DRAIN_BYTES:
            try:
                wait = min(DRAIN_IDLE_S, deadline - time.monotonic())
                message = await asyncio.wait_for(receive(), max(0.0, wait))
            except asyncio.TimeoutError:
                break
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _json_error(413, f"the request body is larger than the limit of {kib} KiB; "
                               f"send a shorter text or a smaller handwriting sample",
                          {"Connection": "close"})(scope, receive, send)


# ----------------------------------------------------------------------------- the app

@dataclass
class _Prepared:
    key: tuple
    text: str
    style: Style | None
    req: WriteRequest
    hw: Handwriter      # the server's model, or a copy with a tuned file's change
    ink: Ink
    page: PageOptions
    output: Output


def _sample_points(sample: StyleSample) -> int:
    return sum(len(s) for s in sample.strokes)


def find_style(key: str) -> Style:
    """A built-in style by id or name; the error names the choices (or says there are none)."""
    try:
        return get_style(key)
    except HandsynthError:
        ids = ", ".join(s.id for s in builtin_styles())
        raise HandsynthError(f"unknown style {key!r}: " + (f"choose one of {ids} (GET /v1/styles)" if ids else
                             "this server has no built-in styles; leave 'style' out or send a 'style_sample'")) from None


FIELD_HINTS = {"color": "use #rgb, #rrggbb or a colour name such as navy",
               "background": "use #rgb, #rrggbb, a colour name, or null for a transparent page"}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        kind = err.get("type", "")
        if kind == "json_invalid":
            return "the request body is not valid JSON"
        if kind == "extra_forbidden":
            parts.append(f"{'.'.join(loc)}: unknown field")
        elif kind == "string_pattern_mismatch" and loc and loc[-1] in FIELD_HINTS:
            parts.append(f"{'.'.join(loc)}: {FIELD_HINTS[loc[-1]]}")
        elif kind == "missing":
            parts.append(f"{'.'.join(loc) or 'body'}: required")
        elif kind == "list_type" and loc == ["style_sample"]:
            parts.append(f"style_sample: a sample object, or a list of up to {PRIMER_SENTENCES} of them")
        else:
            where = ".".join(loc) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid value')}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def paper_options(req: WriteRequest) -> tuple:
    """The paper fields for ``paper.page_options``, checked with messages naming the JSON fields."""
    if req.paper is None or not req.paper.strip():
        given = [f for f in ("landscape", "margin", "line_spacing", "x_height") if getattr(req, f) not in (None, False)]
        if given:
            raise HandsynthError(f"{given[0]} is for a sheet of paper: send 'paper' too (e.g. \"paper\": \"a5\")")
        return None, False, None, None, None, req.ruling
    if req.width is not None:
        raise HandsynthError("give either 'width' (a page in pixels) or 'paper' (a sheet), not both")
    return req.paper, req.landscape, req.margin, req.line_spacing, req.x_height, req.ruling


def output_options(req: WriteRequest) -> Output:
    """The output fields as a ``drawing.Output``, checked against the format."""
    fmt = req.format
    if req.animate and fmt != "svg":
        raise HandsynthError("'animate' is for format svg (gif and webp are always animated)")
    if req.animate and req.plotter:
        raise HandsynthError("choose 'animate' or 'plotter' for an svg, not both")
    if req.plotter and fmt not in ("svg", "gcode"):
        raise HandsynthError("'plotter' is for format svg (gcode is always for plotters)")
    if (req.simplify or not req.order) and not (req.plotter or fmt == "gcode"):
        raise HandsynthError("'simplify' and 'order' are for plotter output: format gcode, or svg with 'plotter'")
    if req.gcode is not None and fmt != "gcode":
        raise HandsynthError("'gcode' settings are for format gcode")
    output = Output(animate=req.animate, plotter=req.plotter, simplify=req.simplify, order=req.order,
                    gcode=req.gcode.options() if req.gcode is not None else None)
    output.check(fmt)
    return output


def words_header(drawing: Drawing, page: int) -> str:
    """The words of one page for the ``X-Handsynth-Words`` header: compact ASCII JSON
    ``[[number, text, x0, y0, x1, y1], ...]``, boxes as fractions of the page."""
    pg = drawing.pages[page]
    rows = [[w.index, w.text, round(w.box[0] / pg.width, 4), round(w.box[1] / pg.height, 4),
             round(w.box[2] / pg.width, 4), round(w.box[3] / pg.height, 4)]
            for w in drawing.words if w.page == page and w.box is not None]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=True)


def create_app(handwriter: Handwriter | None = None, max_concurrent: int = MAX_CONCURRENT, queue_size: int = QUEUE_SIZE,
               timeout_s: float = 60.0, max_text_chars: int = MAX_REQUEST_CHARS,
               max_body_bytes: int = MAX_BODY_BYTES, max_sample_points: int = MAX_SAMPLE_POINTS,
               warm_previews: bool = True, body_timeout_s: float = BODY_TIMEOUT_S,
               max_write_body_bytes: int = MAX_WRITE_BODY_BYTES, max_tune_body_bytes: int = MAX_TUNE_BODY_BYTES,
               tune_minutes: float = TUNE_MINUTES, tune_steps: int = TUNE_STEPS,
               models: dict | None = None) -> FastAPI:
    """The ASGI app. ``handwriter``: a loaded model (default: ``handsynth.load_model()``), shared
    by every request. ``models``: more loaded models a request may choose by name (``model``;
    GET /v1/models), ``handwriter`` being the default (named ``model_name``); each samples in
    batches of its own. ``max_concurrent`` requests are written at once (their lines share
    sampling batches), ``queue_size`` more wait; ``timeout_s`` is each request's time limit,
    waiting included. ``tune_minutes`` and ``tune_steps`` bound a "learn my hand" job (one at a
    time; it tunes the default model)."""
    hw = copy.copy(handwriter if handwriter is not None else load_model())   # (the caller's keeps no batcher)
    writers: dict[str, Handwriter] = {model_name(hw): hw}
    for name, other in (models or {}).items():
        if name in writers:
            raise HandsynthError(f"two models are named {name!r}: give each model a file name of its own")
        writers[name] = copy.copy(other)
    for w in writers.values():
        w.batcher = Batcher(w.model, w.alphabet, w.mean, w.std, read=w.proofreader())
    batcher = hw.batcher
    pool = WorkerPool(max_concurrent, queue_size)
    cache = DrawingCache(CACHE_SIZE)
    tunes = TuneJobs(hw, tune_minutes, tune_steps)
    tuned_writers: OrderedDict = OrderedDict()   # SHA-256 of a tuned file -> its Handwriter
    tuned_lock = threading.Lock()
    base_sha = [None]   # the server's model file's SHA-256 (computed when first needed)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if warm_previews:  # render the style previews in the background: the page shows them at once
            threading.Thread(target=_warm_previews, name="handsynth-previews", daemon=True).start()
        yield
        pool.shutdown()
        for w in writers.values():
            w.batcher.close()

    app = FastAPI(
        lifespan=lifespan,
        docs_url=None, redoc_url=None,   # (theirs load scripts from a CDN: /docs below is self-contained)
        title="handsynth",
        version="0.1.0",
        description="Typed text in, handwriting out. `POST /v1/write` returns PNG, SVG, PDF, G-code, InkML, "
                    "GIF or WebP; "
                    "errors are JSON `{\"error\": message}` with a 4xx status (503/504 when busy or too slow).",
    )
    app.state.handwriter, app.state.pool, app.state.cache, app.state.batcher = hw, pool, cache, batcher
    app.state.writers = writers
    app.state.timeout_s = timeout_s
    app.state.tunes = tunes
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, timeout_s=body_timeout_s,
                       paths={"/v1/write": max(max_body_bytes, max_write_body_bytes),
                              "/v1/tune": max(max_body_bytes, max_tune_body_bytes)})

    # -- errors: always {"error": message}

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return _json_error(503, str(exc), {"Retry-After": str(max(1, int(exc.retry_after) + 1))})

    @app.exception_handler(HandsynthError)
    async def _user_error(request: Request, exc: HandsynthError):
        message = str(exc).splitlines()[0] if str(exc) else "bad request"
        # the library's advice names the CLI flag and the Python argument; here it is a JSON field
        message = message.replace("pass --skip-unknown (skip_unknown=True)", 'send "skip_unknown": true')
        return _json_error(400, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        ctype = request.headers.get("content-type", "")
        if request.method == "POST" and "json" not in ctype.lower():
            return _json_error(415, "send the request body as JSON (Content-Type: application/json)")
        return _json_error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "error"
        path = request.url.path if len(request.url.path) <= 100 else request.url.path[:97] + "..."
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such page: {path} (the API is described at /docs)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {path} (the API is described at /docs)"
        return _json_error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):  # (uvicorn logs the traceback)
        return _json_error(500, f"internal error ({exc.__class__.__name__}); please report it")

    # -- checks done on the event loop before queueing (cheap, no model)

    def writer_for(data: str) -> tuple[Handwriter, str]:
        """The handwriter for a tuned file sent back as base64, and the file's SHA-256 (cached)."""
        import base64
        import binascii

        from ..checkpoint import read_bytes
        from ..tune import file_sha256, is_tuned, with_change

        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise HandsynthError("tuned: not base64 (send the tuned file's bytes as base64)") from None
        if len(raw) > MAX_TUNED_BYTES:
            raise HandsynthError(f"tuned: {len(raw) // 1024} KiB is larger than a tuned file "
                                 f"(at most {MAX_TUNED_BYTES // 1024} KiB)")
        key = hashlib.sha256(raw).hexdigest()
        with tuned_lock:
            if key in tuned_writers:
                tuned_writers.move_to_end(key)
                return tuned_writers[key], key
        ck = read_bytes(raw, "tuned model")
        if not is_tuned(ck):
            raise HandsynthError("tuned: not a tuned model file (POST /v1/tune makes one)")
        if getattr(hw, "path", None) is None:
            raise HandsynthError("this server's model is not from a file, so it cannot take a tuned file")
        if base_sha[0] is None:
            base_sha[0] = file_sha256(hw.path)
        out = with_change(hw, ck, "tuned", base_sha[0])
        with tuned_lock:
            tuned_writers[key] = out
            while len(tuned_writers) > TUNED_CACHE:
                tuned_writers.popitem(last=False)
        return out, key

    def chosen(req: WriteRequest) -> Handwriter:
        """The model a request names (the default when it names none)."""
        if req.model is None or not req.model.strip():
            return hw
        if req.model not in writers:
            raise HandsynthError(f"unknown model {req.model!r}: this server writes with {', '.join(writers)} "
                                 f"(GET /v1/models)")
        w = writers[req.model]
        if req.tuned and w is not hw:
            raise HandsynthError(f"'tuned' is a change to this server's default model ({model_name(hw)}): "
                                 f"leave 'model' out, or send no tuned file")
        return w

    def prepare(req: WriteRequest, writer: tuple | None = None) -> _Prepared:
        base = chosen(req)
        text = req.text
        if not text.strip():
            raise HandsynthError("empty text: give at least one character to write")
        if len(text) > max_text_chars:
            raise HandsynthError(f"the text has {len(text)} characters; this server's limit is "
                                 f"{max_text_chars} per request")
        for row in text.split("\n"):
            if row.strip():
                base.alphabet.normalize(row, req.skip_unknown)
        if req.style is not None and req.style_sample is not None:
            raise HandsynthError("give either 'style' (a built-in style) or 'style_sample' (your own sample), not both")
        style, style_key = None, None
        if req.style_sample is not None:
            n = max(_sample_points(g) for g in req.style_sample)
            if n > max_sample_points:
                raise HandsynthError(f"the handwriting sample has {n} points; the limit is {max_sample_points} "
                                     f"(write one line, or send fewer points per stroke)")
            docs = [g.model_dump() for g in req.style_sample]
            style = style_from_json(docs if len(docs) > 1 else docs[0])
            base.alphabet.normalize(style.primer_text, False)
            style_key = hashlib.sha256(json.dumps([[d["text"], d["strokes"], d["y_axis"]]
                                                   for d in docs]).encode()).hexdigest()
        elif req.style is not None and req.style.strip():
            style = find_style(req.style)
            style_key = "builtin:" + style.id
        page = page_options(req.width, req.align, req.dpi, *paper_options(req))   # validates
        output = output_options(req)
        ink = Ink(stroke_width=req.stroke_width, color=req.color, background=req.background, dpi=req.dpi,
                  pen=req.pen, ink_variation=req.ink_variation, seed=req.seed)
        if page.sheet:
            ink = sheet_ink(ink)
        w, tuned_key = writer if writer is not None else (base, None)
        key = (text, req.skip_unknown, style_key, req.bias, req.seed, page, tuned_key, model_name(base))
        return _Prepared(key, text, style, req, w, ink, page, output)

    # -- the work done in a worker thread

    def produce(p: _Prepared, job: Job) -> tuple[bytes, Drawing]:
        r = p.req
        drawing = cache.get(p.key)
        if drawing is None:   # job.check at every pen step: a timed-out request stops within one step
            drawing = p.hw.write(p.text, style=p.style, bias=r.bias, seed=r.seed, width=r.width, align=r.align,
                               dpi=r.dpi, skip_unknown=r.skip_unknown, paper=r.paper, landscape=r.landscape,
                               margin_mm=r.margin, line_spacing_mm=r.line_spacing, x_height_mm=r.x_height,
                               ruling=r.ruling, check=job.check)
            cache.put(p.key, drawing)
        if r.redo:   # as write(..., redo=r.redo): the words in order, on the page as first written
            key = p.key + (tuple(sorted(r.redo.items())),)
            redone = cache.get(key)
            if redone is None:
                redone = p.hw.redo_words(drawing, r.redo, check=job.check)
                cache.put(key, redone)
            drawing = redone
        job.check()
        n_pages = len(drawing.pages)
        one_file = r.format in ONE_FILE
        if not one_file and r.page > n_pages:
            raise HandsynthError(f"page {r.page} does not exist: the drawing has {n_pages} page(s)")
        d = dataclasses.replace(drawing, ink=p.ink)
        with _render_lock:
            data = d.render(r.format, p.output, page=None if one_file else r.page - 1)[0]
        return data, d

    async def run_job(request: Request, fn, started: float):
        job = Job(deadline=started + timeout_s)
        fut = pool.submit(lambda: fn(job), job)
        if fut is None:
            return _json_error(503, f"the server is busy ({pool.running} requests being written, "
                                    f"{pool.waiting} waiting); try again in a few seconds",
                               {"Retry-After": "5"})
        afut = asyncio.wrap_future(fut)
        afut.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        while not afut.done():
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                job.cancelled.set()
                pool.timed_out += 1
                return _json_error(504, f"the request took longer than this server's limit of {timeout_s:g} s; "
                                        f"write a shorter text or try again later")
            await asyncio.wait({afut}, timeout=min(0.25, remaining))
            if not afut.done() and await request.is_disconnected():
                job.cancelled.set()
                pool.abandoned += 1
                return Response(status_code=499)
        try:
            return afut.result()
        except Cancelled:
            pool.timed_out += 1
            return _json_error(504, f"the request took longer than this server's limit of {timeout_s:g} s; "
                                    f"write a shorter text or try again later")

    # -- routes

    @app.post("/v1/write", tags=["writing"], responses={
        200: {"content": {m: {} for m in MEDIA.values()}, "description": "the file"}, **ERRORS})
    async def write(req: WriteRequest, request: Request):
        """Write ``text`` in a style; the answer is the file in ``format``. The header
        ``X-Handsynth-Pages`` says how many pages the drawing has (``page`` picks one, except for
        PDF and InkML); ``X-Handsynth-Words`` lists the page's words as JSON
        ``[[number, text, x0, y0, x1, y1], ...]``, their boxes as fractions of the page's width and
        height; send ``redo: {number: seed}`` with the same request to write words again."""
        started = time.monotonic()
        chosen(req)   # (an unknown model, or a tuned file for another model, is said before the file is read)
        writer = await asyncio.to_thread(writer_for, req.tuned) if req.tuned else None
        p = prepare(req, writer)
        result = await run_job(request, lambda job: produce(p, job), started)
        if isinstance(result, Response):
            return result
        data, drawing = result
        headers = {"X-Handsynth-Pages": str(len(drawing.pages)),
                   "X-Handsynth-Seconds": f"{time.monotonic() - started:.3f}",
                   "X-Handsynth-Words": words_header(drawing, min(req.page, len(drawing.pages)) - 1),
                   "Content-Disposition": f'inline; filename="handwriting.{req.format}"',
                   "Cache-Control": "no-store"}
        if req.format in ("svg", "inkml"):
            headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return Response(data, media_type=MEDIA[req.format], headers=headers)

    @app.get("/v1/models", tags=["writing"], response_model=ModelList)
    async def list_models():
        """The models this server writes with; a write request picks one by ``name`` as
        ``model`` (the ``default`` one when it names none; a tuned file is a change to it)."""
        return {"models": [{"name": name, "arch": w.arch, "description": model_description(w), "default": w is hw}
                           for name, w in writers.items()]}

    @app.get("/v1/styles", tags=["styles"], response_model=StyleList)
    async def styles():
        """The built-in styles; ``preview_url`` is a small PNG of each style's sample."""
        return {"styles": [{"id": s.id, "name": s.name, "text": s.text, "source": s.source,
                            "preview_url": f"/v1/styles/{s.id}/preview.png"} for s in builtin_styles()]}

    @app.get("/v1/styles/{style_id}/preview.png", tags=["styles"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}, 404: {"model": ErrorBody}})
    async def style_preview(style_id: str):
        """The style's own sample, drawn (about 600 px wide)."""
        style = next((s for s in builtin_styles() if s.id == style_id), None)
        if style is None:
            return _json_error(404, f"no built-in style {style_id!r} (see GET /v1/styles)")
        png = _previews.get(style.id) or await asyncio.to_thread(style_preview_png, style)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=3600"})

    @app.post("/v1/samples/check", tags=["styles"], response_model=SampleCheck, responses=ERRORS)
    async def check_sample(sample: StyleSample):
        """Check a handwriting sample (e.g. from the page's canvas) before using it as
        ``style_sample``: 200 if usable, else 400 saying what is wrong."""
        n = _sample_points(sample)
        if n > max_sample_points:
            raise HandsynthError(f"the handwriting sample has {n} points; the limit is {max_sample_points}")
        style = style_from_json(sample.model_dump())
        hw.alphabet.normalize(style.text, False)
        return {"ok": True, "text": style.text, "strokes": len(style.strokes), "points": n}

    def writable(sentences) -> list:
        out = []
        for s in sentences:
            try:
                hw.alphabet.normalize(s, False)
                out.append(s)
            except HandsynthError:
                pass
        return out

    @app.post("/v1/tune", tags=["your hand"], status_code=202, response_model=TuneStarted, responses={
        **ERRORS, 503: {"model": ErrorBody, "description": "another hand is being learnt; try again later"}})
    async def start_tune(req: TuneRequest):
        """Learn a hand from several sentences of it (the last is held out to stop at the best
        step): the answer at once is the job; poll ``status_url``, then fetch the tuned file
        from ``model_url`` and send it back as base64 ``tuned`` with each write. One job at a
        time, each within the server's time limit; the server keeps the file only until it is
        fetched."""
        from ..data.samples import parse_sample
        from ..styles import check_sample

        n = len(req.samples)
        if not TUNE_MIN_SAMPLES <= n <= TUNE_MAX_SAMPLES:
            raise HandsynthError(f"send {TUNE_MIN_SAMPLES} to {TUNE_MAX_SAMPLES} sentences of handwriting to learn "
                                 f"a hand from; got {n}")
        samples = []
        for i, sample in enumerate(req.samples, 1):
            points = _sample_points(sample)
            if points > max_sample_points:
                raise HandsynthError(f"sentence {i} has {points} points; the limit is {max_sample_points}")
            try:
                parsed = parse_sample(sample.model_dump(), "handwriting")
                check_sample(parsed, "handwriting")   # the checks a style sample gets
                hw.alphabet.normalize(sample.text, False)
            except HandsynthError as e:
                raise HandsynthError(f"sentence {i}: {str(e).splitlines()[0]}") from None
            samples.append(parsed)
        job = tunes.submit(samples)
        return {"id": job.id, "status_url": f"/v1/tune/{job.id}", "max_steps": job.max_steps,
                "minutes": tunes.minutes}

    @app.get("/v1/tune/{job_id}", tags=["your hand"], responses={404: {"model": ErrorBody}})
    async def tune_status(job_id: str):
        """A tuning job: ``state`` (queued, running, done, failed, cancelled), its step and the
        held-out likelihood so far; once done, ``model_url``."""
        job = tunes.get(job_id)
        if job is None:
            return _json_error(404, "no such tuning job (finished jobs are forgotten once fetched, "
                                    "or after 10 minutes): learn the hand again")
        return job.status()

    @app.get("/v1/tune/{job_id}/model", tags=["your hand"], response_class=Response, responses={
        200: {"content": {"application/octet-stream": {}}}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
    async def tune_model(job_id: str):
        """The tuned file, once: the server forgets it when it has been fetched."""
        job = tunes.get(job_id)
        if job is None:
            return _json_error(404, "no such tuning job: learn the hand again")
        if job.state != "done":
            return _json_error(409, f"the tuning job is {job.state}" + (f": {job.error}" if job.error else
                                                                         "; wait until it is done"))
        tunes.take(job_id)
        return Response(job.result, media_type="application/octet-stream",
                        headers={"Content-Disposition": 'attachment; filename="my-hand.pt"',
                                 "Cache-Control": "no-store"})

    @app.delete("/v1/tune/{job_id}", tags=["your hand"], responses={404: {"model": ErrorBody}})
    async def tune_cancel(job_id: str):
        """Stop a tuning job (its result is dropped) or forget a finished one."""
        job = tunes.take(job_id)
        if job is None:
            return _json_error(404, "no such tuning job")
        job.cancel.set()
        return {"id": job_id, "state": "cancelled" if job.state in ("queued", "running") else job.state}

    @app.get("/v1/info", tags=["service"])
    async def info():
        """Limits, defaults and the sentences the page offers for a handwriting sample."""
        prompts = writable(PROMPTS)
        return {"limits": {"max_text_chars": max_text_chars, "max_body_bytes": max_body_bytes,
                           "max_sample_points": max_sample_points, "sample_min_chars": SAMPLE_MIN_CHARS,
                           "sample_max_chars": SAMPLE_MAX_CHARS, "sample_min_points": SAMPLE_MIN_POINTS,
                           "width": [MIN_WIDTH, MAX_WIDTH], "bias": [0, 10], "stroke_width": [0.5, 20],
                           "dpi": [MIN_DPI, MAX_DPI], "max_redo": MAX_REDO,
                           "timeout_s": timeout_s, "max_concurrent": max_concurrent, "queue_size": queue_size,
                           "tune_min_samples": TUNE_MIN_SAMPLES, "tune_max_samples": TUNE_MAX_SAMPLES,
                           "tune_minutes": tunes.minutes, "max_tuned_bytes": MAX_TUNED_BYTES},
                "prompts": prompts or ["the quick brown fox jumps"],
                "tune_prompts": writable(TUNE_PROMPTS) or prompts,
                "formats": list(FORMATS), "papers": list(PAPERS), "rulings": list(RULINGS), "pens": list(PENS),
                "alphabet": hw.alphabet.chars}

    @app.get("/healthz", tags=["service"])
    async def healthz():
        """Liveness and load: workers busy, requests waiting."""
        return {"status": "ok", "model": hw.path.name if getattr(hw, "path", None) else "in-memory",
                "styles": len(builtin_styles()), "running": pool.running, "waiting": pool.waiting,
                "max_concurrent": pool.max_concurrent, "queue_size": pool.queue_size,
                "served": pool.served, "rejected": pool.rejected, "timed_out": pool.timed_out,
                "abandoned": pool.abandoned,
                "tuning": {"running": tunes.running() is not None, "finished": tunes.finished},
                "models": list(writers),
                "batches": {"sampled": sum(w.batcher.batches for w in writers.values()),
                            "lines": sum(w.batcher.lines for w in writers.values()),
                            "most_requests": max(w.batcher.largest for w in writers.values()),
                            "waiting": sum(w.batcher.waiting for w in writers.values())}}

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        """The API described from /openapi.json by a page of this server's own (works offline)."""
        return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def model_name(hw: Handwriter) -> str:
    """A served model's name: its shipped name, else its file's name without the suffix."""
    if hw.name:
        return hw.name
    return hw.path.stem if getattr(hw, "path", None) is not None else "default"


def model_description(hw: Handwriter) -> str:
    from .. import MODELS
    if hw.name in MODELS:
        return MODELS[hw.name].description
    return f"{hw.arch} model from the file {hw.path.name}" if getattr(hw, "path", None) is not None else hw.arch


def serve(host: str = "127.0.0.1", port: int = 8000, model=None, **options) -> None:
    """Load the model(s) and serve the page and API until interrupted. ``model``: a shipped
    name or a path, or a list of them (the first is the default; a request picks another by
    name), or None for the shipped default. ``options`` go to ``create_app`` (max_concurrent,
    queue_size, timeout_s...)."""
    import uvicorn

    from .connections import server_config

    given = list(model) if isinstance(model, (list, tuple)) else [model]
    loaded = [load_model(m) for m in given or [None]]
    others = {}
    for w in loaded[1:]:
        if model_name(w) in others or model_name(w) == model_name(loaded[0]):
            raise HandsynthError(f"two models are named {model_name(w)!r}: give each model a file name of its own")
        others[model_name(w)] = w
    app = create_app(loaded[0], models=others, **options)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"handsynth: warning: listening on {host}, reachable from other machines")
    print(f"handsynth: serving on http://{'[' + host + ']' if ':' in host else host}:{port}/ "
          f"(API docs at /docs; Ctrl-C to stop)", flush=True)
    uvicorn.Server(server_config(app, host=host, port=port, log_level="info")).run()
