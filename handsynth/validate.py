"""Checks of what a user hands in, shared by the Python API (``writer``, ``drawing``,
``load_model``), the CLI and the server: arguments, sample coordinates, output paths, bounded
reads of input files, and model files. Each check returns the value in its plain Python type or
raises ``HandsynthError`` with one line naming what is wrong and what to give instead."""
from __future__ import annotations

import errno
import math
import numbers
import os
import tempfile
from pathlib import Path

from .errors import HandsynthError

MAX_SEED = 2**32 - 1          # seeds of write() and redo (the server allows up to 2**31 - 1)
MAX_COORDINATE = 1e6          # |x|, |y| of a sample's points: pixels, tablet units or mm, not more
MAX_SAMPLE_FILE_BYTES = 16 * 1024 * 1024   # one JSON sample file (as inkml.MAX_INKML_BYTES)
MAX_MODEL_FILE_BYTES = 2 * 1024**3         # a model file: far more than any network we build


def shown(value, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message stays one short line)."""
    try:
        r = repr(value)
    except Exception:   # noqa: BLE001 (a broken __repr__)
        r = f"a {type(value).__name__}"
    r = r.replace("\n", "\\n")
    return r if len(r) <= limit else r[:limit - 3] + "..."


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" from {lo:g} to {hi:g}" if isinstance(lo, float) or isinstance(hi, float) else f" from {lo} to {hi}"
    if lo is not None:
        return f" of at least {lo}"
    return f" of at most {hi}" if hi is not None else ""


def number(value, what: str, lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> float:
    """A finite real number (not a bool, not a string) within ``[lo, hi]`` (and over ``above``),
    as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HandsynthError(f"{what} must be a number (got {shown(value)})")
    bounds = _bounds(lo, hi) if above is None else f" above {above:g}"
    try:
        v = float(value)
    except (OverflowError, ValueError, TypeError):
        raise HandsynthError(f"{what} must be a finite number{bounds} (got {shown(value)})") from None
    if (not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)
            or (above is not None and v <= above)):
        raise HandsynthError(f"{what} must be a finite number{bounds} (got {shown(value)})")
    return v


def whole(value, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number (an int, a numpy integer, or a float such as 3.0) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HandsynthError(f"{what} must be a whole number{_bounds(lo, hi)} (got {shown(value)})")
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        f = float(value)
        if not math.isfinite(f) or not f.is_integer():
            raise HandsynthError(f"{what} must be a whole number{_bounds(lo, hi)} (got {shown(value)})")
        v = int(f)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise HandsynthError(f"{what} must be a whole number{_bounds(lo, hi)} (got {shown(value)})")
    return v


def flag(value, what: str) -> bool:
    """True or False (a bool or numpy bool), not a string such as "yes" or a number."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise HandsynthError(f"{what} must be True or False (got {shown(value)})")


def optional(check, value, *args, **kw):
    """``check(value, ...)``, or None when ``value`` is None."""
    return None if value is None else check(value, *args, **kw)


def callback(value, what: str):
    """None or something callable."""
    if value is not None and not callable(value):
        raise HandsynthError(f"{what} must be a function or None (got {shown(value)})")
    return value


def coordinates(arr, where: str):
    """A stroke's points as a float64 ``(n, 2+)`` array -> its x, y as float32, checked: every
    coordinate finite and within ``MAX_COORDINATE`` (so that nothing becomes inf in float32)."""
    import numpy as np

    xy = arr[:, :2]
    if not np.all(np.isfinite(xy)):
        raise HandsynthError(f"{where} must be a non-empty list of finite [x, y] points")
    big = float(np.abs(xy).max())
    if big > MAX_COORDINATE:
        raise HandsynthError(f"{where} has a coordinate of {big:.3g}; coordinates must be within "
                             f"+-{MAX_COORDINATE:,.0f} (pixels, tablet units or millimetres)")
    return xy.astype(np.float32)


# ------------------------------------------------------------------------------------------ files
def _oserror(e: OSError, folder) -> str:
    if e.errno in (errno.ENOENT, errno.EINVAL):   # e.g. /proc: the folder exists but takes no files
        return f"the folder {folder} does not accept new files"
    return e.strerror or e.__class__.__name__


def output_file(path, what: str = "the output") -> Path:
    """``path`` as a file that can be written: not a folder, its folder exists and takes new files
    (tried with a temporary file there, removed at once). Checked before any work is done."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise HandsynthError(f"{what} needs a file name such as out.png (got {shown(path)})")
    if "\0" in path:
        raise HandsynthError(f"{shown(path)}: not a usable file name (it holds a NUL character)")
    p = Path(path)
    try:
        if p.is_dir():
            raise HandsynthError(f"{p} is a folder: give a file name such as {p / 'out.png'}")
        folder = p.parent
        if not folder.exists():
            raise HandsynthError(f"{p}: the folder {folder} does not exist")
        if not folder.is_dir():
            raise HandsynthError(f"{p}: {folder} is not a folder")
    except OSError as e:
        raise HandsynthError(f"{p}: cannot write there ({e.strerror or e.__class__.__name__})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=folder)
    except OSError as e:
        raise HandsynthError(f"{p}: cannot write there ({_oserror(e, folder)})") from None
    os.close(fd)
    os.unlink(tmp)
    return p


def read_bounded(path, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, refusing more than ``limit`` (read in one bounded call, so a
    device such as /dev/zero or an endless pipe cannot take all memory)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except ValueError:
        raise HandsynthError(f"{shown(str(path))}: not a usable file name") from None
    except FileNotFoundError:
        raise HandsynthError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise HandsynthError(f"{p} is a folder, not a {what}") from None
    except OSError as e:
        raise HandsynthError(f"{p}: cannot read the file ({e.strerror or e.__class__.__name__})") from None
    if len(data) > limit:
        raise HandsynthError(f"{p}: more than {limit // 2**20} MiB; a {what} is smaller "
                             "(is it the right file?)")
    return data


def decode_text(data: bytes, where: str) -> str:
    """UTF-8 bytes (a byte-order mark allowed) -> text; a clear error naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise HandsynthError(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                             "save it as UTF-8") from None


def utf8_text(text: str, where: str) -> str:
    """Text that came through Python's surrogateescape (command-line arguments): bytes that were
    not UTF-8 are an error, not characters to write."""
    bad = next((i for i, c in enumerate(text) if "\udc80" <= c <= "\udcff"), None)
    if bad is not None:
        raise HandsynthError(f"{where} is not UTF-8 text (byte 0x{ord(text[bad]) - 0xdc00:02x} at character {bad}); "
                             "give it as UTF-8")
    return text


# ------------------------------------------------------------------------------------ model files
def check_model_file(path: Path) -> None:
    """Before ``checkpoint.load``: the file is a regular file of a sane size that looks like a
    PyTorch file (a zip archive, whole; or a legacy pickle), so that a truncated or damaged file
    says so instead of the reader's internal error."""
    import zipfile

    try:
        if path.is_dir():
            raise HandsynthError(f"{path} is a folder, not a handsynth model file")
        if not path.is_file():
            raise HandsynthError(f"{path}: not a regular file, so not a handsynth model file")
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except ValueError:
        raise HandsynthError(f"{shown(str(path))}: not a usable file name") from None
    except OSError as e:
        raise HandsynthError(f"{path}: cannot read the model file ({e.strerror or e.__class__.__name__})") from None
    if size == 0:
        raise HandsynthError(f"{path}: the model file is empty (an interrupted download or copy?)")
    if size > MAX_MODEL_FILE_BYTES:
        raise HandsynthError(f"{path}: {size / 2**30:.1f} GiB is larger than any handsynth model file")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError, NotImplementedError):
            bad = True
        if bad:
            raise HandsynthError(f"{path}: the model file is truncated or corrupt (a damaged archive); "
                                 "copy or export it again")
    elif not head.startswith(b"\x80\x02"):   # neither a zip (torch.save) nor torch's legacy format (pickle protocol 2)
        raise HandsynthError(f"{path}: not a readable handsynth model file (not a PyTorch file)")


def check_model_meta(meta: dict, net, path) -> tuple:
    """After ``checkpoint.load``: the file's alphabet and normalisation statistics are usable and
    its weights finite; returns (alphabet characters, offset mean, offset std) as plain lists."""
    import torch

    def bad(what: str) -> HandsynthError:
        return HandsynthError(f"{path}: not a usable handsynth model file ({what})")

    chars = meta.get("alphabet")
    if not isinstance(chars, str) or not chars.strip():
        raise bad("no alphabet" if chars is None else "its alphabet is not a string of characters")
    if len(set(chars)) != len(chars):
        raise bad("its alphabet repeats characters")
    size = getattr(getattr(net, "config", None), "alphabet_size", None)
    if isinstance(size, int) and size != len(chars) + 1:
        raise bad(f"its alphabet has {len(chars)} characters, its network {size - 1}")
    stats = []
    for key in ("offset_mean", "offset_std"):
        v = meta.get(key)
        try:
            vals = [float(x) for x in (v.tolist() if hasattr(v, "tolist") else v)]
        except (TypeError, ValueError, OverflowError):
            vals = None
        if vals is None or len(vals) != 2:
            raise bad(f"no {key}" if v is None else f"{key} is not two numbers")
        if not all(math.isfinite(x) for x in vals):
            raise bad(f"{key} is not finite")
        stats.append(vals)
    if not all(s > 1e-8 for s in stats[1]):
        raise bad(f"offset_std {stats[1]} must be above zero")
    with torch.no_grad():
        for name, t in list(net.named_parameters()) + list(net.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise bad(f"the weight {name} holds NaN or infinite values")
    return chars, stats[0], stats[1]
