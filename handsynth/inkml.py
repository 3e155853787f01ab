"""InkML (W3C Ink Markup Language, https://www.w3.org/TR/InkML/): generated ink out, captured ink in.

Export (``drawing_inkml``): one trace per pen stroke with the channels X and Y in millimetres
(y down, as on the page) and T in milliseconds; a ``traceGroup`` per line holding the line's text
as ``<annotation type="truth">``; the whole text as the document's truth annotation. A drawing of
several pages puts each page's lines in a traceGroup of its own (``<annotation type="page">``).

The pen's clock (``pen_times``, shared with ``animate``): the model writes one point per step of
the training data, IAM-OnDB recorded at about ``RECORDING_HZ`` and downsampled by
``Normalization.downsample``, so consecutive points are ``SAMPLE_MS`` apart; between two strokes
the pen is in the air for ``PEN_LIFT_MS`` plus its travel at ``AIR_SPEED`` times the writing's
median speed, at most ``MAX_PEN_UP_MS``.

Import (``read_inkml``, ``inkml_samples``): InkML -> objects of the JSON sample format
(``data.samples``), which ``data.samples.load_samples`` reads for ``.inkml`` files and checks with
``parse_sample`` like any JSON sample (so ``--style-file`` and ``train --samples`` take InkML).
Read: traces in any channel order (X and Y are kept, other channels read and dropped), regular
and intermittent channels, the comma-separated point syntax, values run together ("3-5+7"), the
prefixes ``!`` (explicit), ``'`` (first difference) and ``"`` (second difference), ``*`` (as
before) and ``?`` (unknown: the point is dropped), booleans and ``#hex`` values; formats from
``<traceFormat>``, ``<context>`` (``contextRef``, ``traceFormatRef``, ``inkSourceRef``) and
``<inkSource>``, or the default X Y; ``orientation="-ve"`` axes; traces of ``type="penUp"`` skipped.
Each outermost ``traceGroup`` or ``traceView`` with a text (``<annotation type="truth">`` or
``"transcription"``; CROHME's "Segmentation" wrapper is looked through) is one sample, its ink
the traces it holds or references (``traceDataRef``, whole traces); with none, the whole
document is one sample with the document's text. ``<annotation type="writer">`` names the writer.
Y grows downwards unless its channel says ``-ve``. XML goes through defusedxml (no entities, no
external references); files, points and nesting are bounded; every problem is a one-line
``HandsynthError``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from xml.etree.ElementTree import ParseError
from xml.sax.saxutils import escape

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from .errors import HandsynthError
from .strokes import Normalization

INKML_NS = "http://www.w3.org/2003/InkML"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"

# the pen's clock
RECORDING_HZ = 100.0        # IAM-OnDB's pen sampling rate: about 100 points a second
SAMPLE_MS = 1000.0 * Normalization().downsample / RECORDING_HZ   # 20 ms between generated points
PEN_LIFT_MS = 60.0          # the least time between two strokes (lift, set down)
AIR_SPEED = 1.5             # the pen travels in the air at this multiple of its median writing speed
MAX_PEN_UP_MS = 1000.0      # the longest pause between strokes (a carriage return to the next line)

# bounds on what we read
MAX_INKML_BYTES = 16 * 1024 * 1024   # one file
MAX_FILE_POINTS = 1_000_000         # all traces of one file together (50 samples at data.samples.MAX_POINTS)
MAX_DEPTH = 32                       # nested traceGroups / traceViews
TEXT_TYPES = ("truth", "transcription")


def pen_times(strokes: list) -> list[np.ndarray]:
    """Milliseconds at which the pen reaches each point of ``strokes`` (any units, in writing
    order), starting at 0: ``SAMPLE_MS`` per point while the pen is down; between strokes
    ``PEN_LIFT_MS`` plus the travel at ``AIR_SPEED`` times the median pen-down speed, at most
    ``MAX_PEN_UP_MS``."""
    pts = [np.asarray(s, np.float64).reshape(-1, 2) for s in strokes]
    steps = np.concatenate([np.linalg.norm(np.diff(p, axis=0), axis=1) for p in pts if len(p) > 1] or [np.zeros(0)])
    steps = steps[steps > 0]
    speed = float(np.median(steps)) / SAMPLE_MS if len(steps) else 0.0   # units per ms, pen down
    out, t, last = [], 0.0, None
    for p in pts:
        if last is not None and len(p):
            travel = float(np.linalg.norm(p[0] - last))
            air = travel / (AIR_SPEED * speed) if speed > 0 else 0.0
            t += min(PEN_LIFT_MS + air, MAX_PEN_UP_MS)
        out.append(t + SAMPLE_MS * np.arange(len(p)))
        if len(p):
            t, last = float(out[-1][-1]), p[-1]
    return out


# ------------------------------------------------------------------------------------------ export

def short_number(v: float) -> str:
    """A number to 3 decimals without trailing zeros (0.5, 12, 0.125)."""
    return f"{v:.3f}".rstrip("0").rstrip(".") or "0"


def drawing_inkml(drawing) -> str:
    """A ``render.Drawing`` as an InkML document (see the module docstring)."""
    mm = 25.4 / drawing.ink.dpi           # page pixels -> millimetres
    times = iter(pen_times(drawing.strokes))
    texts = [line.text for page in drawing.pages for line in page.lines]
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<ink xmlns="{INKML_NS}">',
           f'  <annotation type="truth">{escape(chr(10).join(texts))}</annotation>',
           '  <annotation type="generator">handsynth</annotation>',
           '  <definitions>',
           '    <context xml:id="handsynth">',
           '      <inkSource xml:id="handsynth-pen">',
           '        <traceFormat xml:id="xyt">',
           '          <channel name="X" type="decimal" units="mm"/>',
           '          <channel name="Y" type="decimal" units="mm"/>',
           '          <channel name="T" type="decimal" units="ms"/>',
           '        </traceFormat>',
           f'        <sampleRate uniform="true" value="{short_number(1000.0 / SAMPLE_MS)}"/>',
           '      </inkSource>',
           '    </context>',
           '  </definitions>']
    several = len(drawing.pages) > 1
    n_trace = 0
    for p, page in enumerate(drawing.pages):
        pad = "  "
        if several:
            out += [f'  <traceGroup xml:id="page{p + 1}">', f'    <annotation type="page">{p + 1}</annotation>']
            pad = "    "
        for i, line in enumerate(page.lines):
            gid = f"p{p + 1}l{i + 1}" if several else f"line{i + 1}"
            out += [f'{pad}<traceGroup xml:id="{gid}">',
                    f'{pad}  <annotation type="truth">{escape(line.text)}</annotation>']
            for s in line.strokes:
                t = next(times)
                xy = np.asarray(s, np.float64) * mm
                pts = ", ".join(f"{x:.3f} {y:.3f} {ms:.0f}" for (x, y), ms in zip(xy, t))
                out.append(f'{pad}  <trace xml:id="t{n_trace}" contextRef="#handsynth">{pts}</trace>')
                n_trace += 1
            out.append(f"{pad}</traceGroup>")
        if several:
            out.append("  </traceGroup>")
    out.append("</ink>\n")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ import

def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _id(el) -> str | None:
    return el.get(XML_ID) or el.get("id")


def _ref(value: str | None) -> str | None:
    """``#id`` or ``id`` -> ``id``; references into other documents are not followed."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("#"):
        return value[1:]
    return None if ("/" in value or "#" in value) else value


class _TooMany(ValueError):
    pass


class _Format:
    """A trace format: channel names in order, how many are regular, and the axes that point -ve."""

    def __init__(self, names: list[str], regular: int, flip: set[str]):
        self.names, self.regular, self.flip = names, regular, flip
        if "X" not in names or "Y" not in names:
            raise ValueError(f"traceFormat has no X and Y channels (it has {', '.join(names) or 'none'})")
        self.x, self.y = names.index("X"), names.index("Y")


DEFAULT_FORMAT = _Format(["X", "Y"], 2, set())

# one value: a prefix, a number, a hex number, a boolean, '*' or '?', or a point separator
_TOKEN = re.compile(r"""\s*(?:(?P<sep>,)|(?P<pre>[!'"])|(?P<num>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"""
                    r"""|(?P<hex>\#[0-9A-Fa-f]+)|(?P<word>[TF*?])|(?P<bad>\S))""")
_PAIR = re.compile(r"\s*[-+.\deE]+,[-+.\deE]+(?:\s+[-+.\deE]+,[-+.\deE]+)*\s*")


class _Reader:
    def __init__(self, root):
        self.points = 0
        self.formats: dict[str, _Format] = {}
        self.contexts: dict[str, object] = {}
        self.sources: dict[str, object] = {}
        self.elements: dict[str, object] = {}
        for el in root.iter():
            name, i = _local(el.tag), _id(el)
            if i is None:
                continue
            self.elements.setdefault(i, el)
            if name == "context":
                self.contexts[i] = el
            elif name == "inkSource":
                self.sources[i] = el
        self.traces: dict[int, list] = {}    # id(element) -> strokes (one or none), decoded once
        self.n_traces = 0

    # -- formats
    def trace_format(self, el) -> _Format:
        key = _id(el)
        if key in self.formats:
            return self.formats[key]
        names, regular, flip = [], None, set()
        for child in el:
            kind = _local(child.tag)
            group = [child] if kind == "channel" else list(child) if kind in ("regularChannels",
                                                                               "intermittentChannels") else []
            if kind == "intermittentChannels" and regular is None:
                regular = len(names)
            for ch in group:
                if _local(ch.tag) != "channel":
                    continue
                name = (ch.get("name") or "").strip()
                names.append(name)
                if (ch.get("orientation") or "").strip() == "-ve":
                    flip.add(name)
        fmt = _Format(names, len(names) if regular is None else regular, flip)
        if key:
            self.formats[key] = fmt
        return fmt

    def format_of(self, el, depth: int = 0) -> _Format | None:
        """The format an element (context, inkSource, traceFormat) defines, if any."""
        if depth > MAX_DEPTH:
            raise ValueError("contexts refer to each other in a loop")
        if _local(el.tag) == "traceFormat":
            return self.trace_format(el)
        for child in el:
            if _local(child.tag) in ("traceFormat", "inkSource"):
                found = self.format_of(child, depth + 1)
                if found:
                    return found
        for attr, table in (("traceFormatRef", self.elements), ("inkSourceRef", self.sources),
                            ("contextRef", self.contexts)):
            ref = _ref(el.get(attr))
            if ref and ref in table:
                found = self.format_of(table[ref], depth + 1)
                if found:
                    return found
        return None

    def context_ref(self, el, current: _Format) -> _Format:
        ref = _ref(el.get("contextRef"))
        if ref and ref in self.contexts:
            return self.format_of(self.contexts[ref]) or current
        return current

    # -- traces
    def trace(self, el, fmt: _Format) -> list:
        """A trace element -> [stroke (n, 2) float64, y down] (or [] for pen-up or empty traces)."""
        if id(el) in self.traces:
            return self.traces[id(el)]
        fmt = self.context_ref(el, fmt)
        text = el.text or ""
        values = None if (el.get("type") or "").strip() == "penUp" else self.values(text, fmt, el)
        stroke = []
        if values is not None and len(values):
            xy = values[:, [fmt.x, fmt.y]]
            xy = xy[~np.any(np.isnan(xy), axis=1)]   # unknown ('?') positions dropped
            if "X" in fmt.flip:
                xy[:, 0] = -xy[:, 0]
            if "Y" in fmt.flip:
                xy[:, 1] = -xy[:, 1]
            if len(xy):
                stroke = [xy]
        self.traces[id(el)] = stroke
        return stroke

    def count(self, n: int):
        self.points += n
        if self.points > MAX_FILE_POINTS:
            raise _TooMany(f"more than {MAX_FILE_POINTS} points in the file")

    def values(self, text: str, fmt: _Format, el) -> np.ndarray:
        """A trace's text -> (points, channels) float64; NaN for '?', booleans as 1/0."""
        n = len(fmt.names)
        self.n_traces += 1
        where = f"trace {_id(el) or self.n_traces}"
        # the common case: plain numbers, points separated by commas
        try:
            if "," in text:
                rows = [r for r in (p.split() for p in text.split(",")) if r]
            else:
                flat = text.split()
                rows = [flat[i:i + n] for i in range(0, len(flat), n)] if len(flat) % n == 0 else []
            if rows and all(fmt.regular <= len(r) <= n for r in rows):
                if all(len(r) == n for r in rows):
                    out = np.array(rows, np.float64)
                else:
                    out = np.array([[float(v) for v in r] + [np.nan] * (n - len(r)) for r in rows], np.float64)
                self.count(len(out))
                return out
            if fmt is DEFAULT_FORMAT and _PAIR.fullmatch(text):
                # "x,y x,y ..." (a common misreading of the syntax): one point per comma pair
                out = np.array([p.split(",") for p in text.split()], np.float64)
                self.count(len(out))
                return out
        except _TooMany:
            raise
        except ValueError:
            pass          # not plain numbers: the full grammar below
        return self.decode(text, fmt, where)

    def decode(self, text: str, fmt: _Format, where: str) -> np.ndarray:
        """The full value grammar: prefixes, values run together, '*', '?', booleans, hex."""
        n = len(fmt.names)
        mode = ["!"] * n                   # each channel keeps its last prefix
        last = [np.nan] * n                # last value
        vel = [0.0] * n                    # last first difference
        rows, row, pending = [], [], None
        commas = "," in text

        def close():
            nonlocal row
            if not row:
                return
            if len(row) < fmt.regular:
                raise ValueError(f"{where}: a point has {len(row)} value(s); the traceFormat has "
                                 f"{fmt.regular} regular channels")
            rows.append(row + [np.nan] * (n - len(row)))
            if self.points + len(rows) > MAX_FILE_POINTS:
                self.count(len(rows))
            row = []

        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind == "bad":
                raise ValueError(f"{where}: unexpected {m.group(kind)!r} in the trace")
            if kind == "sep":
                if pending:
                    raise ValueError(f"{where}: a prefix {pending!r} with no value")
                close()
                continue
            if kind == "pre":
                if pending:
                    raise ValueError(f"{where}: two prefixes in a row")
                pending = m.group(kind)
                continue
            c = len(row)
            if c >= n:
                raise ValueError(f"{where}: a point has more values than the traceFormat's {n} channels")
            word = m.group("word")
            if pending:
                mode[c], pending = pending, None
            if word in ("T", "F"):
                value = 1.0 if word == "T" else 0.0
                vel[c] = 0.0
            elif word == "?":
                value = np.nan
            elif word == "*":
                value = last[c]
            else:
                v = float(int(m.group("hex")[1:], 16)) if kind == "hex" else float(m.group("num"))
                if mode[c] == "!" or not np.isfinite(last[c]):
                    value = v
                    vel[c] = v - last[c] if np.isfinite(last[c]) else 0.0
                elif mode[c] == "'":
                    vel[c] = v
                    value = last[c] + v
                else:
                    vel[c] += v
                    value = last[c] + vel[c]
            if np.isfinite(value):
                last[c] = value
            row.append(value)
            if not commas and len(row) == n:
                close()
        if pending:
            raise ValueError(f"{where}: a prefix {pending!r} with no value")
        close()
        self.count(len(rows))
        return np.array(rows, np.float64).reshape(-1, n)


class _Group:
    """A traceGroup or traceView: its text, writer and what it holds, in order."""

    def __init__(self, el):
        self.el, self.text, self.writer, self.items = el, "", "", []   # items: strokes, _Group or ('ref', id)


def _annotations(el) -> tuple[str, str]:
    text = writer = ""
    for child in el:
        if _local(child.tag) != "annotation":
            continue
        kind = (child.get("type") or "").strip().lower()
        value = " ".join("".join(child.itertext()).split())
        if kind in TEXT_TYPES and not text:
            text = value
        elif kind == "writer" and not writer:
            writer = value
    return text, writer


def inkml_samples(data: bytes, where: str = "InkML") -> list[tuple[dict, str]]:
    """InkML bytes -> ``(sample object, where it comes from)`` for each sample (see the module
    docstring), for ``data.samples.parse_sample``; ``HandsynthError`` naming ``where``."""
    if len(data) > MAX_INKML_BYTES:
        raise HandsynthError(f"{where}: the file is larger than {MAX_INKML_BYTES // 2**20} MiB")
    try:
        root = SafeET.fromstring(data)
    except DefusedXmlException:
        raise HandsynthError(f"{where}: XML entities, DTD entities and external references are not "
                             f"allowed in InkML") from None
    except ParseError as e:
        raise HandsynthError(f"{where}: not valid XML ({e})") from None
    if _local(root.tag) != "ink":
        raise HandsynthError(f"{where}: not InkML (the root element is <{_local(root.tag)}>, not <ink>)")
    try:
        return _samples(root, where)
    except RecursionError:
        raise HandsynthError(f"{where}: elements nested too deeply") from None
    except ValueError as e:
        raise HandsynthError(f"{where}: {e}") from None


def _samples(root, where: str) -> list[tuple[dict, str]]:
    r = _Reader(root)
    doc_text, doc_writer = _annotations(root)
    loose: list = []       # traces outside <definitions>, in document order: the whole document
    content: list = []     # top-level traces and groups

    def group(el, fmt, depth) -> _Group:
        if depth > MAX_DEPTH:
            raise ValueError(f"traceGroups nested deeper than {MAX_DEPTH}")
        g = _Group(el)
        g.text, g.writer = _annotations(el)
        fmt = r.context_ref(el, fmt)
        ref = _ref(el.get("traceDataRef")) if _local(el.tag) == "traceView" else None
        if ref:
            g.items.append(("ref", ref))
        for child in el:
            kind = _local(child.tag)
            if kind == "trace":
                strokes = r.trace(child, fmt)
                g.items += strokes
                loose.extend(strokes)
            elif kind in ("traceGroup", "traceView"):
                g.items.append(group(child, fmt, depth + 1))
        return g

    fmt = DEFAULT_FORMAT
    for el in root:
        kind = _local(el.tag)
        if kind == "context":
            fmt = r.format_of(el) or fmt
        elif kind == "traceFormat":       # outside a context (as CROHME writes it)
            fmt = r.trace_format(el)
        elif kind == "trace":
            strokes = r.trace(el, fmt)
            content += strokes
            loose.extend(strokes)
        elif kind in ("traceGroup", "traceView"):
            content.append(group(el, fmt, 0))

    built: dict[int, _Group] = {}

    def strokes_of(g: _Group, name: str) -> list:
        """The ink a group holds, references followed (whole traces), bounded in points and steps."""
        out, total, steps = [], 0, 0
        stack = [(it, 0, ()) for it in reversed(g.items)]
        while stack:
            item, depth, chain = stack.pop()
            steps += 1
            if steps > MAX_FILE_POINTS or depth > MAX_DEPTH:
                raise ValueError(f"{name}: traceViews nested too deeply or too many of them")
            if isinstance(item, np.ndarray):
                total += len(item)
                if total > MAX_FILE_POINTS:
                    raise ValueError(f"{name}: more than {MAX_FILE_POINTS} points")
                out.append(item)
                continue
            if isinstance(item, _Group):
                stack += [(it, depth + 1, chain) for it in reversed(item.items)]
                continue
            ref = item[1]
            el = r.elements.get(ref)
            if el is None:
                raise ValueError(f"traceDataRef {ref!r} names no element of this file")
            if ref in chain:
                raise ValueError(f"traceViews refer to each other in a loop (through {ref!r})")
            kind = _local(el.tag)
            if kind == "trace":
                stack += [(s, depth + 1, chain) for s in r.trace(el, DEFAULT_FORMAT)]
            elif kind in ("traceGroup", "traceView"):
                if id(el) not in built:
                    built[id(el)] = group(el, DEFAULT_FORMAT, 0)
                stack += [(it, depth + 1, chain + (ref,)) for it in reversed(built[id(el)].items)]
            else:
                raise ValueError(f"traceDataRef {ref!r} names a <{kind}>, not a trace")
        return out

    def outermost(items):
        for it in items:
            if isinstance(it, _Group):
                if it.text and it.text.lower() != "segmentation":
                    yield it
                else:
                    yield from outermost(it.items)

    groups = list(outermost(content))
    if groups:
        found = []
        for i, g in enumerate(groups):
            name = f"{_local(g.el.tag)} {_id(g.el) or i + 1}"
            found.append((g.text, strokes_of(g, name), g.writer or doc_writer, name))
    else:
        if not doc_text:
            raise ValueError('no text: say what the ink writes in an <annotation type="truth">')
        whole = _Group(root)
        whole.items = list(content)
        found = [(doc_text, loose or strokes_of(whole, "the document"), doc_writer, "")]
    out = []
    for text, strokes, writer, name in found:
        if not strokes:
            raise ValueError(f"{name or 'the document'} has no ink")
        out.append(({"text": text, "strokes": strokes, "writer": writer, "y_axis": "down"}, f"{where} {name}".strip()))
    return out


def read_inkml(path: str | os.PathLike) -> list[tuple[dict, str]]:
    """Read an ``.inkml`` file (see ``inkml_samples``)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_INKML_BYTES:
            raise HandsynthError(f"{path}: the file is larger than {MAX_INKML_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise HandsynthError(f"{path}: no such file") from None
    except OSError as e:
        raise HandsynthError(f"{path}: cannot read the file ({e.__class__.__name__})") from None
    return inkml_samples(data, str(path))
