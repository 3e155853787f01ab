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
READER_VERSION = 5          # part of the corpus cache key: bump when parsing changes
MAX_LABEL_BYTES = 4 << 20    # label and header files (the largest are ~100 kB)
MAX_INK_BYTES = 64 << 20     # ink files (the largest is ~4 MB)
MAX_INCLUDE_DEPTH = 4
WORDS, TEXT = ("6", "7"), ("8",)
CHARACTERS = ("1a", "1b", "1c", "1d")
CHARACTER_LINES = ("1a", "1b")   # digits, capitals: these stand on the baseline, so character_lines can line them up
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
    blocks: tuple | None = None  # hover ink: (components, writers, styles) over every block, pen-up ones None


def parse_ink(data: bytes) -> Ink:
    """An ink file -> its components (first two coordinates of each point), numbered over
    .PEN_DOWN blocks only; where some .PEN_UP block holds points (hover ink), every block is kept
    in ``blocks`` (pen-up ones as None) for ``numbered`` to choose from."""
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
    if hover:
        ink.blocks = (ink.components, ink.writers, ink.styles)
    keep = [i for i, c in enumerate(ink.components) if c is not None]
    ink.components, ink.writers, ink.styles = ([v[i] for i in keep] for v in (ink.components, ink.writers, ink.styles))
    return ink


def numbered(ink: Ink, specs) -> Ink | None:
    """The ink numbered the way its labels count, or None when the labels fit neither way.

    Most contributors count .PEN_DOWN blocks only; where .PEN_UP blocks hold points (hover ink)
    some count every block (hpp, nic, sta). Counting every block, the labels of such a file start
    consistently on one kind of block: on pen-down blocks (hpp, nic), or on the pen-up block
    before each word (sta); a pen-down count read as every block lands on either kind about as
    often as not. So: every block when at least 90% of the labels start on one kind; else pen-down
    blocks when every label lies within them; else None (lex, cec, ugi: labels that reach past the
    pen-down blocks but start anywhere: read either way, the words shown are not the words
    labelled)."""
    if ink.blocks is None:
        return ink
    comps = ink.blocks[0]
    starts, last = [], -1
    for spec in specs:
        nums = [int(n) for n in re.findall(r"(?:^|[-,])\s*(\d+)", spec)]
        if nums:
            starts.append(nums[0])
            last = max(last, *nums)
    on_down = [0 <= c < len(comps) and comps[c] is not None for c in starts]
    share = sum(on_down) / max(len(on_down), 1)
    if on_down and (share >= 0.9 or share <= 0.1):
        return Ink(*ink.blocks, ink.includes)
    if last < len(ink.components):
        return ink
    return None


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
            ink = numbered(parse_ink(data), labels)
        except (ValueError, UnicodeDecodeError):
            problems["malformed ink file"] += 1
            continue
        if ink is None:
            problems["ink whose labels fit no component numbering"] += 1
            problems["segment whose labels fit no component numbering"] += len(labels)
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


# lines from words ----------------------------------------------------------------------------
@dataclass
class LineSample:
    """A line-like training sample built from segments of one ink file."""
    text: str
    strokes: list             # (n, 2) float32, the ink's units, y up
    writer: str
    ink: str
    words: int                # how many word segments it joins (0: a free-text segment as it is)
    natural: bool             # True: the words sit where the writer put them; False: spaced here


MARKER_RE = re.compile(r"\w@(\w|\s|$)")  # kai and others mark letters in words ("u@nive@rse", "skirt@")
STITCH_CHARS = (24, 56)       # a stitched line's length in characters is drawn from this range
WORD_GAP = 1.3                # a stitched gap in body heights where the ink shows too few of its own
GAP_RANGE = (1.0, 2.0)        # a writer's own median gap, kept within this range (lists written close)
CHARACTER_LINE = (8, 24)      # a line of isolated characters: its length in characters (spaces too)
CHARACTER_LINE_MIN = 3        # shorter leftovers (an ink's last one or two characters) are left out
CHARACTER_GROUP = (1, 6)      # characters between two spaces ("0143 27"): drawn from 1 to 5
CHARACTER_GAP = 0.3           # gap between two characters of a group, in character heights
CHARACTER_SPACE = 0.9         # gap at a space, in character heights


def _first_component(spec: str) -> int:
    return int(re.split(r"[-,:\s]", spec.strip())[0])


def _geometry(strokes: list) -> tuple[float, float, float, float, float]:
    """(xmin, xmax, baseline y, body height, y centre) of a word."""
    pts = np.concatenate(strokes)
    y = pts[:, 1]
    lo, hi = np.percentile(y, 20), np.percentile(y, 80)
    return float(pts[:, 0].min()), float(pts[:, 0].max()), float(lo), float(max(hi - lo, 1e-6)), float((lo + hi) / 2)


def line_samples(segments: list, seed: int = 0, drop_bad: bool = True) -> tuple[list[LineSample], Counter]:
    """Word and free-text segments -> line-like samples, per ink file:

    - word segments in component order form *runs* where each word continues the line of the one
      before (starts right of it, at about its height): a run of two or more words keeps the
      writer's own spacing and baselines;
    - the remaining single words of an ink file are stitched into lines of 24-56 characters:
      each baseline moved onto the first word's, gaps of the median gap this ink's natural runs
      show (within ``GAP_RANGE``; else ``WORD_GAP`` body heights), in one scale (one device, one writer);
    - a free-text segment whose components are also labelled as words is left out (the words
      cover it); other free-text segments are kept when they are one written line (no return
      to the left below the start), and counted as dropped otherwise.
    Last, each ink's points are thinned to IAM-OnDB's density (``POINTS_PER_CHAR``, see ``thin``).
    Returns the samples and why segments were left out."""
    rng = np.random.default_rng(seed)
    dropped: Counter = Counter()
    by_ink: dict = defaultdict(list)
    for s in segments:
        if drop_bad and s.quality == "BAD":
            dropped["quality BAD"] += 1
            continue
        if not " ".join(s.text.split()) or not s.strokes:
            dropped["empty segment"] += 1
            continue
        if MARKER_RE.search(s.text):
            dropped["'@' marks inside words (a transcription convention, not ink)"] += 1
            continue
        by_ink[s.ink].append(s)
    out: list[LineSample] = []
    for ink in sorted(by_ink):
        boxed = [s.level == "CHARACTER" and s.isolated_character for s in by_ink[ink]]
        segs = [s for s, b in zip(by_ink[ink], boxed) if not b]
        out += character_lines([s for s, b in zip(by_ink[ink], boxed) if b], rng)
        words = sorted((s for s in segs if s.level == "WORD" and " " not in s.text.strip()),
                       key=lambda s: _first_component(s.components))
        worded = set()
        for w in words:
            worded.update(_component_set(w.components))
        for s in segs:
            if s.level == "WORD" and " " not in s.text.strip():
                continue
            comps = _component_set(s.components)
            if comps and comps <= worded:
                dropped["free text covered by its words"] += 1
                continue
            if _one_line(s.strokes):
                out.append(LineSample(" ".join(s.text.split()), s.strokes, s.writer, ink, 0, True))
            else:
                dropped["free text over several lines"] += 1
        if not words:
            continue
        geo = [_geometry(w.strokes) for w in words]
        h = float(np.median([g[3] for g in geo]))
        runs, gaps = [[0]], []
        for i in range(1, len(words)):
            (_, px, _, _, pc), (nx, _, _, _, nc) = geo[runs[-1][-1]], geo[i]
            if -0.5 * h < nx - px < 4 * h and abs(nc - pc) < 1.0 * h and words[i].writer == words[runs[-1][-1]].writer:
                gaps.append((nx - px) / h)
                runs[-1].append(i)
            else:
                runs.append([i])
        gap = float(np.clip(np.median(gaps), *GAP_RANGE)) if len(gaps) >= 3 else WORD_GAP
        singles = []
        for run in runs:
            if len(run) == 1:
                singles.append(run[0])
                continue
            out.append(LineSample(" ".join(words[i].text.strip() for i in run),
                                  [st for i in run for st in words[i].strokes], words[run[0]].writer, ink, len(run), True))
        i = 0
        while i < len(singles):
            target = rng.integers(*STITCH_CHARS)
            chunk, chars = [], -1
            while i < len(singles) and (not chunk or chars + 1 + len(words[singles[i]].text.strip()) <= target) \
                    and (not chunk or words[singles[i]].writer == words[chunk[0]].writer):
                chunk.append(singles[i])
                chars += 1 + len(words[singles[i]].text.strip())
                i += 1
            strokes, x, base = [], None, geo[chunk[0]][2]
            for j in chunk:
                xmin, xmax, b, _, _ = geo[j]
                dx = 0.0 if x is None else x - xmin
                strokes += [(st + np.array([dx, base - b], np.float32)).astype(np.float32) for st in words[j].strokes]
                x = xmax + dx + gap * h
            out.append(LineSample(" ".join(words[j].text.strip() for j in chunk), strokes, words[chunk[0]].writer,
                                  ink, len(chunk), len(chunk) == 1))
    return thin(out), dropped


def character_lines(chars: list, rng) -> list[LineSample]:
    """One ink file's isolated characters (``CHARACTER_LINES``, written one to a box) set side by side in their
    component order as lines of ``CHARACTER_LINE`` characters: groups of 1-5 ("0143 27 58"), each
    character scaled to the ink's median character height and standing on one baseline (its lowest
    point: digits and capitals have no descenders), ``CHARACTER_GAP`` heights apart within a group
    and ``CHARACTER_SPACE`` at a space. Characters of another writer start a new line; a line
    of fewer than ``CHARACTER_LINE_MIN`` characters is left out."""
    chars = sorted((c for c in chars if len(c.text.strip()) == 1 and c.strokes),
                   key=lambda c: _first_component(c.components))
    if not chars:
        return []
    points = [np.concatenate(c.strokes) for c in chars]
    boxes = [(p.min(0), p.max(0)) for p in points]
    h = float(np.median([max(hi[1] - lo[1], 1e-6) for lo, hi in boxes]))
    out, i = [], 0
    while i < len(chars):
        target, text, strokes, x = int(rng.integers(*CHARACTER_LINE)), "", [], 0.0
        left = int(rng.integers(*CHARACTER_GROUP))
        start = i
        while i < len(chars) and len(text) < target and chars[i].writer == chars[start].writer:
            if left == 0:
                text, x, left = text + " ", x + (CHARACTER_SPACE - CHARACTER_GAP) * h, int(rng.integers(*CHARACTER_GROUP))
            (lo, hi), c = boxes[i], chars[i]
            k = h / max(hi[1] - lo[1], 1e-6)
            strokes += [((st - lo) * k + np.array([x, 0.0])).astype(np.float32) for st in c.strokes]
            x += (hi[0] - lo[0]) * k + CHARACTER_GAP * h
            text, left, i = text + c.text.strip(), left - 1, i + 1
        if len(text) >= CHARACTER_LINE_MIN:
            out.append(LineSample(text, strokes, chars[start].writer, chars[start].ink, 0, False))
    return out


POINTS_PER_CHAR = 21.8   # IAM-OnDB's raw points per character (its lines' points over their characters)


def thin(samples: list[LineSample]) -> list[LineSample]:
    """Every ink's samples with every k-th point of each stroke kept (always its first and last),
    k = the ink's median points per character over ``POINTS_PER_CHAR``, rounded (at least 1).
    UNIPEN's devices sampled at 60 to 205 points per second, so one writer's letter took 20 to
    70 points (hpp 48, ced 69) where IAM-OnDB's take 22: without thinning, the network learns a
    second, slower pen beside IAM-OnDB's."""
    by_ink: dict = defaultdict(list)
    for i, s in enumerate(samples):
        by_ink[s.ink].append(i)
    out = list(samples)
    for idx in by_ink.values():
        ppc = float(np.median([sum(len(st) for st in samples[i].strokes) / max(len(samples[i].text), 1) for i in idx]))
        k = max(1, int(round(ppc / POINTS_PER_CHAR)))
        if k == 1:
            continue
        for i in idx:
            s = samples[i]
            strokes = [st if len(st) <= 2 else st[np.unique(np.r_[np.arange(0, len(st), k), len(st) - 1])]
                       for st in s.strokes]
            out[i] = LineSample(s.text, strokes, s.writer, s.ink, s.words, s.natural)
    return out


def _component_set(spec: str) -> set:
    """'3-5,8' -> {3, 4, 5, 8}; an unparseable spec -> empty (never matches)."""
    out = set()
    try:
        for part in re.split(r"[,\s]+", spec.strip()):
            if not part:
                continue
            a, _, b = part.replace(":", "-").partition("-")
            lo, hi = int(a), int(b or a)
            if hi - lo > 100_000:
                return set()
            out.update(range(lo, hi + 1))
    except ValueError:
        return set()
    return out


def _one_line(strokes: list) -> bool:
    """True unless the pen goes back left (a fifth of the width) and down (almost half the height) between strokes: a new line."""
    pts = np.concatenate(strokes)
    starts = np.array([s[0] for s in strokes])
    ends = np.array([s[-1] for s in strokes])
    width, height = float(np.ptp(pts[:, 0])) or 1.0, float(np.ptp(pts[:, 1]))
    back = (starts[1:, 0] < ends[:-1, 0] - 0.2 * width) & (starts[1:, 1] < ends[:-1, 1] - 0.45 * height)
    return not back.any()
