"""IAM On-Line Handwriting Database reader.

Reads straight from ``lineStrokes-all.tar.gz`` + ``ascii-all.tar.gz`` (no unpacking), or from an
unpacked directory holding ``lineStrokes/`` and ``ascii/``. Line file ``a01-000u-07.xml`` is the
7th line after the ``CSR:`` header of ``ascii/a01/a01-000/a01-000u.txt``.

XML is parsed with defusedxml (no entity expansion, no external entities).
"""
from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from defusedxml import ElementTree as SafeET

from ..errors import HandsynthError

STROKES_ARCHIVE = "lineStrokes-all.tar.gz"
ASCII_ARCHIVE = "ascii-all.tar.gz"
LINE_RE = re.compile(r"([a-z]\d\d-\d\d\d[a-z]?)-(\d\d)\.xml$")


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


def _iter_members(source: Path, suffix: str) -> Iterator[tuple[str, bytes | Exception]]:
    """(name, bytes) for each file ending in ``suffix`` in an archive or a directory tree."""
    if source.is_dir():
        for p in sorted(source.rglob(f"*{suffix}")):
            try:
                yield p.name, p.read_bytes()
            except OSError as e:
                yield p.name, e
        return
    try:
        with tarfile.open(source, "r:gz") as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(suffix):
                    f = tar.extractfile(member)
                    yield os.path.basename(member.name), f.read()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise HandsynthError(f"{source}: cannot read the archive ({e.__class__.__name__}: {e}); "
                             "is it truncated? download it again") from None


def read_transcriptions(source: Path) -> dict[str, list[str]]:
    forms = {}
    for name, data in _iter_members(source, ".txt"):
        if isinstance(data, Exception):
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
    for name, data in _iter_members(strokes_src, ".xml"):
        m = LINE_RE.search(name)
        if not m:
            continue
        form_id, index = m.group(1), int(m.group(2))
        line_id = name[:-4]
        csr = forms.get(form_id)
        text = csr[index - 1] if csr is not None and 1 <= index <= len(csr) else None
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
