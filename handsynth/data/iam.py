"""IAM On-Line Handwriting Database reader.

Reads straight from ``lineStrokes-all.tar.gz`` + ``ascii-all.tar.gz`` (no unpacking), or from an
unpacked directory holding ``lineStrokes/`` and ``ascii/``. Line file ``a01-000u-07.xml`` is the
7th line after the ``CSR:`` header of ``ascii/a01/a01-000/a01-000u.txt``.

XML is parsed with defusedxml (no entity expansion, no external entities). Every read is bounded:
a file (or archive member) over ``MAX_MEMBER_BYTES`` is skipped unread and counted ("file too
large"), only regular files are read, and an archive with more than ``MAX_MEMBERS`` entries or
``MAX_ARCHIVE_BYTES`` of content is refused (the real lineStrokes-all.tar.gz: 14,055 entries, the
largest line file 105 KB), so memory stays bounded whatever an archive holds (a 1 MB .tar.gz can
hold a 1 GiB member).
"""
from __future__ import annotations

import gzip
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zlib import error as zlib_error

import numpy as np
from defusedxml import ElementTree as SafeET

from ..errors import HandsynthError

STROKES_ARCHIVE = "lineStrokes-all.tar.gz"
ASCII_ARCHIVE = "ascii-all.tar.gz"
LINE_RE = re.compile(r"([a-z]\d\d-\d\d\d[a-z]?)-(\d\d)\.xml$")
MAX_MEMBER_BYTES = 4 << 20      # a line file or a transcription (the largest real one: 105 KB)
MAX_MEMBERS = 1_000_000         # entries in one archive (the real ones: 14,055 and 1,889)
MAX_ARCHIVE_BYTES = 16 << 30    # an archive's content, unpacked (the real lineStrokes: about 0.6 GB)


class TooLarge(ValueError):
    """A file over the size bound, skipped unread."""

    def __init__(self, name: str, size: int):
        super().__init__(f"{name} ({size:,} bytes; the bound is {MAX_MEMBER_BYTES:,})")


@dataclass
class RawLine:
    line_id: str          # a01-000u-07
    form_id: str          # a01-000u
    text: str | None      # None: no transcription line
    strokes: list | None  # list of (n, 2) float32, y up; None when unreadable
    problem: str = ""     # why the line cannot be used ('' if fine)


def detokenize(text: str) -> str:
    """IAM's CSR text separates punctuation by spaces ("Mr . Foot 's"); writers did not."""
    text = " ".join(text.split())
    text = re.sub(r" ([.,;:!?)])", r"\1", text)
    text = re.sub(r"([(]) ", r"\1", text)
    text = re.sub(r" '(s|t|d|m|ll|re|ve)\b", r"'\1", text)
    text = re.sub(r"(\w) n't\b", r"\1n't", text)
    return text


def parse_transcription(data: bytes) -> list[str]:
    """The CSR lines of one ascii form file."""
    txt = data.decode("latin-1").replace("\r", "")
    if "CSR:" not in txt:
        raise ValueError("no CSR: section")
    body = txt.split("CSR:", 1)[1]
    return [ln.strip() for ln in body.split("\n") if ln.strip()]


def parse_line_strokes(data: bytes) -> list[np.ndarray]:
    """A lineStrokes XML file -> strokes with y flipped to grow upwards."""
    root = SafeET.fromstring(data)
    strokes = []
    for stroke in root.iter("Stroke"):
        pts = [(float(p.get("x")), -float(p.get("y"))) for p in stroke.iter("Point")]
        if pts:
            strokes.append(np.array(pts, np.float32))
    return strokes


def _find(root: Path) -> tuple[Path | None, Path | None]:
    """Locate either the two archives or the unpacked directories under ``root``."""
    if root.is_file():
        root = root.parent
    strokes = root / STROKES_ARCHIVE if (root / STROKES_ARCHIVE).exists() else None
    ascii_ = root / ASCII_ARCHIVE if (root / ASCII_ARCHIVE).exists() else None
    strokes = strokes or (root / "lineStrokes" if (root / "lineStrokes").is_dir() else None)
    ascii_ = ascii_ or (root / "ascii" if (root / "ascii").is_dir() else None)
    return strokes, ascii_


def source_signature(path: str | os.PathLike) -> str:
    """A string that changes when the source data changes (for cache keys)."""
    strokes, ascii_ = _find(Path(path))
    parts = []
    for p in (strokes, ascii_):
        if p is not None:
            st = p.stat()
            parts.append(f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def _read_bounded(f, name: str, size: int) -> bytes | Exception:
    """At most ``MAX_MEMBER_BYTES`` from ``f``: the data, or ``TooLarge`` (nothing read when the
    stated ``size`` is already over; a stream that turns out longer than stated stops there)."""
    if size > MAX_MEMBER_BYTES:
        return TooLarge(name, size)
    data = f.read(MAX_MEMBER_BYTES + 1)
    return TooLarge(name, len(data)) if len(data) > MAX_MEMBER_BYTES else data


class _CappedReads:
    """A file's read/seek/tell with every single read bounded: tarfile reads a GNU long name or
    a PAX header whole, whatever size its header states."""

    def __init__(self, f, source: Path):
        self.f, self.source = f, source

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_MEMBER_BYTES + 1024:
            raise HandsynthError(f"{self.source}: an entry's header asks to read "
                                 f"{'all' if n is None or n < 0 else f'{n:,} bytes'} at once: not an IAM-OnDB archive")
        return self.f.read(n)

    def seek(self, *a):
        return self.f.seek(*a)

    def tell(self):
        return self.f.tell()


def _iter_members(source: Path, suffix: str, want=lambda name: True) -> Iterator[tuple[str, bytes | Exception]]:
    """(name, bytes or the exception that kept it unread) for each regular file ending in
    ``suffix`` whose base name ``want`` accepts, in an archive or a directory tree; every read
    bounded (see the module's notes)."""
    if source.is_dir():
        for p in sorted(source.rglob(f"*{suffix}")):
            if not want(p.name):
                continue
            try:
                st = p.stat()   # a link is read as what it points to, if that is a regular file
                if not stat.S_ISREG(st.st_mode):
                    yield p.name, OSError(f"not a regular file: {p.name}")
                    continue
                with open(p, "rb") as f:
                    yield p.name, _read_bounded(f, p.name, st.st_size)
            except OSError as e:
                yield p.name, e
        return
    try:
        with open(source, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz, \
                tarfile.open(fileobj=_CappedReads(gz, source), mode="r:") as tar:
            count = 0
            while (member := tar.next()) is not None:
                tar.members.clear()   # tarfile keeps every entry it has seen: a bomb of headers grows it
                count += 1
                if count > MAX_MEMBERS:
                    raise HandsynthError(f"{source}: more than {MAX_MEMBERS:,} entries: not an IAM-OnDB archive")
                if member.offset_data + member.size > MAX_ARCHIVE_BYTES:
                    raise HandsynthError(f"{source}: more than {MAX_ARCHIVE_BYTES >> 30} GiB unpacked: "
                                         "not an IAM-OnDB archive")
                name = os.path.basename(member.name)
                if not member.isfile() or not member.name.endswith(suffix) or not want(name):
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    yield name, TooLarge(name, member.size)
                    continue
                yield name, _read_bounded(tar.extractfile(member), name, member.size)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib_error) as e:
        raise HandsynthError(f"{source}: cannot read the archive ({e.__class__.__name__}: {e}); "
                             "is it truncated? download it again") from None


def read_transcriptions(source: Path) -> dict[str, list[str] | Exception]:
    """Form id -> its CSR lines, or why its file could not be read (its lines say so)."""
    forms: dict[str, list[str] | Exception] = {}
    for name, data in _iter_members(source, ".txt"):
        if isinstance(data, Exception):
            forms.setdefault(name[:-4], data)
            continue
        try:
            forms[name[:-4]] = parse_transcription(data)
        except (ValueError, UnicodeDecodeError):
            continue
    return forms


def iter_iam(path: str | os.PathLike) -> Iterator[RawLine]:
    """Every line file of an IAM-OnDB copy, with its transcription and strokes. Lines that
    cannot be used come out with ``problem`` set (never an exception for one bad line)."""
    strokes_src, ascii_src = locate(path)
    forms = read_transcriptions(ascii_src)
    yield from _lines(strokes_src, forms)


def locate(path: str | os.PathLike) -> tuple[Path, Path]:
    """The line-strokes and transcription sources under ``path``, or a clear error."""
    root = Path(path)
    if not root.exists():
        raise HandsynthError(f"{root}: no such file or directory; pass the folder holding "
                             f"{STROKES_ARCHIVE} and {ASCII_ARCHIVE} (or lineStrokes/ and ascii/)")
    strokes_src, ascii_src = _find(root)
    if strokes_src is None or ascii_src is None:
        missing = [n for n, s in ((STROKES_ARCHIVE, strokes_src), (ASCII_ARCHIVE, ascii_src)) if s is None]
        raise HandsynthError(f"{root}: missing {' and '.join(missing)} (or the unpacked "
                             "lineStrokes/ and ascii/ folders)")
    return strokes_src, ascii_src


def _lines(strokes_src: Path, forms: dict) -> Iterator[RawLine]:
    for name, data in _iter_members(strokes_src, ".xml", lambda n: LINE_RE.search(n) is not None):
        m = LINE_RE.search(name)
        form_id, index = m.group(1), int(m.group(2))
        line_id = name[:-4]
        csr = forms.get(form_id)
        if isinstance(csr, TooLarge):
            yield RawLine(line_id, form_id, None, None, f"file too large in its transcription {csr}")
            continue
        csr = csr if isinstance(csr, list) else None
        text = csr[index - 1] if csr is not None and 1 <= index <= len(csr) else None
        if isinstance(data, TooLarge):
            yield RawLine(line_id, form_id, text, None, f"file too large in {data}")
            continue
        if isinstance(data, Exception):
            yield RawLine(line_id, form_id, text, None, f"unreadable file {name}: {data}")
            continue
        if text is None:
            yield RawLine(line_id, form_id, None, None, "no transcription line")
            continue
        try:
            strokes = parse_line_strokes(data)
        except Exception as e:  # malformed XML, bad numbers, hostile entities
            yield RawLine(line_id, form_id, text, None, f"malformed XML in {name}: {e.__class__.__name__}")
            continue
        yield RawLine(line_id, form_id, detokenize(text), strokes)
