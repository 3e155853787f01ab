"""UNIPEN 1.0 reader (train_r01_v07: many writers, words, free text, isolated characters).

Reads straight from ``unipen-train_r01_v07.tar.xz`` (two streamed passes, no unpacking) or from an
unpacked folder holding ``data/`` and ``include/``. A label file ``data/<category>/<contributor>/
.../x.dat`` pulls in its ink with ``.INCLUDE <contributor>/...`` (relative to ``include/``) and
names ranges of its pen-down components with ``.SEGMENT <LEVEL> <components> <quality> "<text>"``.
The ink's ``.PEN_DOWN`` blocks are the components; the device facts (points per inch or mm, per
second) come from the ``.doc`` files that the label or ink file includes. Strokes come out in
millimetres with y growing up. The categories are overlapping views of the same ink: a segment is
kept once per (ink file, component range), with every category that labels it.

Pass 1 reads the label files and the small header files (``.doc``, ``.lex``, ...); pass 2 the ink
files, cutting each file's segments as it streams by. Every file is read with a size bound; a file
that cannot be used is counted in ``problems`` and skipped, never an exception.
"""
from __future__ import annotations

import os
import re
import tarfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HandsynthError

ARCHIVE = "unipen-train_r01_v07.tar.xz"
READER_VERSION = 2          # part of the corpus cache key: bump when parsing changes
MAX_LABEL_BYTES = 4 << 20    # label and header files (the largest are ~100 kB)
MAX_INK_BYTES = 64 << 20     # ink files (the largest is ~4 MB)
MAX_INCLUDE_DEPTH = 4
WORDS, TEXT = ("6", "7"), ("8",)
CHARACTERS = ("1a", "1b", "1c", "1d")
DEFAULT_CATEGORIES = CHARACTERS + WORDS + TEXT  # 2 repeats 1a-1d; 3 is characters cut from words
ESCAPE_RE = re.compile(r"\\(.)")
SEGMENT_RE = re.compile(r'^\.SEGMENT\s+(\S+)\s+(\S+)\s+(\S+)\s+"(.*)"\s*$')
# The UNIPEN standard puts y up (origin lower left). Contributors whose ink is stored y-down anyway
# can be listed here; a negative .Y_POINTS_PER_* in a .doc also flips.
Y_DOWN: frozenset = frozenset()


@dataclass
class Segment:
    text: str
    level: str                # WORD, TEXT, CHARACTER
    categories: tuple         # every data/ category that labels this ink, e.g. ("6", "7")
    contributor: str          # bbd
    writer: str               # contributor-qualified: "bbd/dsf"
    quality: str              # OK, GOOD, BAD, ?
    ink: str                  # include-relative ink path: bbd/data/dsfr/dsfr756.dat
    components: str           # the label's component spec: "0-45"
    strokes: list = field(default_factory=list)  # (n, 2) float32 in mm, y up
    style: str = ""           # CURSIVE, PRINTED, MIXED, ... when the ink says
    points_per_second: float = 0.0

    @property
    def isolated_character(self) -> bool:
        return any(c in CHARACTERS for c in self.categories)


@dataclass
class Reading:
    segments: list
    problems: Counter         # why files or segments were skipped -> how many


# parsing -------------------------------------------------------------------------------------
def _lines(data: bytes) -> list[str]:
    return data.decode("latin-1").replace("\r", "").split("\n")


def parse_labels(data: bytes) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """A label file -> its includes and (level, components, quality, text) segments."""
    includes, segments = [], []
    for ln in _lines(data):
        if ln.startswith(".INCLUDE"):
            parts = ln.split()
            if len(parts) >= 2:
                includes.append(parts[1])
        elif ln.startswith(".SEGMENT"):
            m = SEGMENT_RE.match(ln.strip())
            if not m:
                raise ValueError(f"bad .SEGMENT line {ln[:60]!r}")
            level, comp, quality, text = m.groups()
            segments.append((level, comp, quality, ESCAPE_RE.sub(r"\1", text)))  # \" -> ", \@ -> @
    if not includes:
        raise ValueError("no .INCLUDE")
    return includes, segments


def parse_header(data: bytes) -> tuple[dict, list[str]]:
    """Device facts of a .doc (or any header) file, and what it includes in turn."""
    facts, includes = {}, []
    for ln in _lines(data):
        parts = ln.split()
        if len(parts) >= 2 and parts[0] == ".INCLUDE":
            includes.append(parts[1])
        elif len(parts) >= 2 and parts[0] in (".X_POINTS_PER_INCH", ".Y_POINTS_PER_INCH", ".X_POINTS_PER_MM",
                                               ".Y_POINTS_PER_MM", ".POINTS_PER_SECOND"):
            try:
                facts[parts[0][1:]] = float(parts[1])
            except ValueError:
                pass
    return facts, includes


@dataclass
class Ink:
    components: list          # (n, 2) float arrays, one per component, raw device units (None: pen up)
    writers: list             # .WRITER_ID in force at each component
    styles: list
    includes: list


def parse_ink(data: bytes) -> Ink:
    """An ink file -> its components (first two coordinates of each point). Components are numbered
    over .PEN_DOWN blocks only, unless some .PEN_UP block holds points (hover ink, e.g. ugi): then
    over every block, pen-up ones kept as None so that they number but never draw."""
    ink = Ink([], [], [], [])
    writer = style = ""
    block: list | None = None
    down, hover = True, False

    def close():
        nonlocal hover
        if block is not None:
            rows = [r.split()[:2] for r in block if r.strip()]
            pts = np.array(rows, np.float64).reshape(-1, 2)  # ValueError if malformed
            hover |= not down and len(pts) > 0
            ink.components.append(pts if down else None)
            ink.writers.append(writer)
            ink.styles.append(style)

    for ln in _lines(data):
        if ln.startswith("."):
            parts = ln.split()
            key = parts[0]
            if key in (".PEN_DOWN", ".PEN_UP", ".DT") or block is not None and key != ".COMMENT":
                close()
                block = None
            if key in (".PEN_DOWN", ".PEN_UP"):
                block, down = [], key == ".PEN_DOWN"
            elif key == ".WRITER_ID":
                writer = parts[1] if len(parts) > 1 else ""
            elif key == ".STYLE":
                style = parts[1] if len(parts) > 1 else ""
            elif key == ".INCLUDE" and len(parts) > 1:
                ink.includes.append(parts[1])
        elif block is not None:
            block.append(ln)
    close()
    if not hover:
        keep = [i for i, c in enumerate(ink.components) if c is not None]
        ink.components, ink.writers, ink.styles = ([v[i] for i in keep] for v in
                                                   (ink.components, ink.writers, ink.styles))
    return ink


def select(ink: Ink, spec: str) -> list[np.ndarray]:
    """The points a component spec names: "3", "8-15", "2:5-4:10" (component:point), comma lists."""
    out = []
    for item in spec.split(","):
        a, _, b = item.partition("-")
        b = b or a
        ca, _, pa = a.partition(":")
        cb, _, pb = b.partition(":")
        ca, cb = int(ca), int(cb)
        if not 0 <= ca <= cb < len(ink.components):
            raise IndexError(spec)
        for c in range(ca, cb + 1):
            pts = ink.components[c]
            if pts is None:
                continue
            lo = int(pa) if c == ca and pa else 0
            hi = int(pb) + 1 if c == cb and pb else len(pts)
            if len(pts[lo:hi]):
                out.append(pts[lo:hi])
    return out


# reading -------------------------------------------------------------------------------------
def _root_names(name: str) -> tuple[str, str] | None:
    """'train_r01_v07/data/7/x/y.dat' -> ('data', '7/x/y.dat'); None for files outside data/include."""
    parts = name.replace("\\", "/").split("/")
    for i, p in enumerate(parts):
        if p in ("data", "include") and i + 1 < len(parts):
            return p, "/".join(parts[i + 1:])
    return None


def _iter_files(source: Path, want) -> Iterator[tuple[str, str, bytes | Exception]]:
    """(top, relative path, bytes or the reason) for each file ``want(top, rel)`` accepts."""
    if source.is_dir():
        for p in sorted(source.rglob("*")):
            r = _root_names(p.relative_to(source).as_posix())
            if r and p.is_file() and want(*r):
                limit = MAX_INK_BYTES if r[0] == "include" and r[1].endswith(".dat") else MAX_LABEL_BYTES
                try:
                    if p.stat().st_size > limit:
                        yield *r, ValueError("oversize file")
                        continue
                    yield *r, p.read_bytes()
                except OSError as e:
                    yield *r, e
        return
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                r = _root_names(member.name)
                if not (r and member.isfile() and want(*r)):
                    continue
                limit = MAX_INK_BYTES if r[0] == "include" and r[1].endswith(".dat") else MAX_LABEL_BYTES
                if member.size > limit:
                    yield *r, ValueError("oversize file")
                    continue
                yield *r, tar.extractfile(member).read(limit + 1)
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise HandsynthError(f"{source}: cannot read the archive ({e.__class__.__name__}: {e}); "
                             "is it truncated? copy it again") from None


def locate(path: str | os.PathLike) -> Path:
    """The archive or the unpacked folder (holding data/ and include/) at ``path``, or a clear error."""
    root = Path(path)
    if not root.exists():
        raise HandsynthError(f"{root}: no such file or directory; pass {ARCHIVE} or the folder "
                             "holding data/ and include/")
    if root.is_file():
        return root
    if (root / ARCHIVE).is_file():
        return root / ARCHIVE
    for cand in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (cand / "data").is_dir() and (cand / "include").is_dir():
            return cand
    raise HandsynthError(f"{root}: neither {ARCHIVE} nor data/ and include/ folders found")


def source_signature(path: str | os.PathLike) -> str:
    src = locate(path)
    st = src.stat()
    return f"{src.resolve()}:{st.st_size}:{int(st.st_mtime)}"


def _facts(names: list, headers: dict, depth: int = 0) -> dict:
    """Device facts from the headers ``names`` include, later ones overriding earlier."""
    facts = {}
    for n in names:
        if n in headers and depth < MAX_INCLUDE_DEPTH:
            f, inc = headers[n]
            facts.update(_facts(inc, headers, depth + 1))
            facts.update(f)
    return facts


def _mm_per_point(facts: dict, axis: str) -> float | None:
    if f"{axis}_POINTS_PER_MM" in facts:
        v = facts[f"{axis}_POINTS_PER_MM"]
    elif f"{axis}_POINTS_PER_INCH" in facts:
        v = facts[f"{axis}_POINTS_PER_INCH"] / 25.4
    else:
        return None
    return 1.0 / v if v else None


def read_unipen(path: str | os.PathLike, categories=DEFAULT_CATEGORIES) -> Reading:
    """Every labelled segment of the wanted ``categories``, de-duplicated, with strokes in mm (y up)."""
    source = locate(path)
    problems: Counter = Counter()
    headers: dict = {}                     # include-relative name -> (facts, includes)
    wanted: dict = defaultdict(dict)       # ink name -> {components: [level, quality, text, cats, incs]}
    cats = set(categories)

    def pass1(top, rel):
        return (top == "data" and rel.split("/")[0] in cats) or (top == "include" and not rel.endswith(".dat"))

    for top, rel, data in _iter_files(source, pass1):
        if isinstance(data, Exception):
            problems[f"unreadable {top} file"] += 1
            continue
        if top == "include":
            headers[rel] = parse_header(data)
            continue
        try:
            includes, segs = parse_labels(data)
        except (ValueError, UnicodeDecodeError):
            problems["malformed label file"] += 1
            continue
        inks = [i for i in includes if i.endswith(".dat")]
        if len(inks) != 1:
            problems["label file without exactly one ink include"] += 1
            continue
        category = rel.split("/")[0]
        for level, comp, quality, text in segs:
            entry = wanted[inks[0]].get(comp)
            if entry is None:
                wanted[inks[0]][comp] = [level, quality, text, [category], includes]
            elif category not in entry[3]:
                entry[3].append(category)
                if entry[2] != text:
                    problems["same ink labelled with different texts (first kept)"] += 1

    segments = []
    seen = set()
    for top, rel, data in _iter_files(source, lambda top, rel: top == "include" and rel in wanted):
        seen.add(rel)
        labels = wanted[rel]
        if isinstance(data, Exception):
            problems["unreadable ink file"] += 1
            continue
        try:
            ink = parse_ink(data)
        except (ValueError, UnicodeDecodeError):
            problems["malformed ink file"] += 1
            continue
        contributor = rel.split("/")[0]
        for comp, (level, quality, text, segcats, includes) in labels.items():
            facts = _facts(includes + ink.includes, headers)
            sx, sy = _mm_per_point(facts, "X"), _mm_per_point(facts, "Y")
            if sx is None and sy is None:  # kept in device units (line normalisation rescales)
                problems["segment without device resolution (kept, device units)"] += 1
            sx, sy = sx or sy or 1.0, sy or sx or 1.0
            if contributor in Y_DOWN:
                sy = -sy
            try:
                raw = select(ink, comp)
                first = int(comp.split(",")[0].split("-")[0].split(":")[0])
            except (ValueError, IndexError):
                problems["segment components out of range"] += 1
                continue
            if not raw:
                problems["segment without points"] += 1
                continue
            strokes = [(p * (sx, sy)).astype(np.float32) for p in raw]
            segments.append(Segment(text, level, tuple(sorted(segcats)), contributor,
                                    f"{contributor}/{ink.writers[first] or Path(rel).stem}", quality, rel, comp,
                                    strokes, ink.styles[first], facts.get("POINTS_PER_SECOND", 0.0)))
    for rel, labels in wanted.items():
        if rel not in seen:
            problems["missing ink file"] += 1
            problems["segment of a missing ink file"] += len(labels)
    return Reading(segments, problems)
