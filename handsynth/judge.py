"""The independent reader: Tesseract (Debian's ``tesseract-ocr``; LSTM engine ``--oem 1``, one
text line per image ``--psm 7``, a raw line ``--psm 13`` where that reads nothing; English) reading PNG images of single lines, so legibility is
not judged only by a recogniser trained on the writer's own corpus. Also the pictures it reads:
generated or real lines rendered plainly, and texts set in fonts (the handwriting fonts a user
might pick instead, and a print font as the reader's ceiling)."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .layout import PageOptions, line_scales, place, straighten
from .render import Ink, page_png
from .strokes import bounds, transform

# Debian's handwriting fonts (fonts-dkg-handwriting, fonts-femkeklaver, fonts-breip) and a print
# font: the file names to look for, first match wins
FONT_FILES = {"dkg-handwriting": ("dkg.ttf",), "femkeklaver": ("femkeklaver.ttf",),
              "breip": ("breipfont.ttf", "Breip.ttf"), "dejavu-sans": ("DejaVuSans.ttf",)}
HANDWRITING_FONTS = ("dkg-handwriting", "femkeklaver", "breip")
PRINT_FONT = "dejavu-sans"
X_HEIGHT = 40       # pixels per normalised unit (about the body height) in the judge's pictures
MARGIN = 40         # pixels of white on every side


def available() -> bool:
    """Whether the ``tesseract`` binary and its English model are installed."""
    if shutil.which("tesseract") is None:
        return False
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return "eng" in out.stdout.split()


def read_line(png: bytes) -> str:
    """Tesseract's reading of one line image (PNG bytes), whitespace collapsed: as a text line
    (``--psm 7``), and where that reads nothing, as a raw line (``--psm 13``). Its line finder
    sometimes rejects a clean handwritten line whole (3 of 120 real IAM-OnDB test lines, e.g.
    "to much more radical schemes for transferring"), which counted as 100% CER; the raw-line
    mode reads those, so an empty reading means the ink really is unreadable."""
    return _tesseract(png, 7) or _tesseract(png, 13)


def _tesseract(png: bytes, psm: int) -> str:
    out = subprocess.run(["tesseract", "stdin", "stdout", "--oem", "1", "--psm", str(psm), "-l", "eng"],
                         input=png, capture_output=True, timeout=120,
                         env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"tesseract failed: {out.stderr.decode(errors='replace').strip()}")
    return " ".join(out.stdout.decode("utf-8", errors="replace").split())


def read_lines(pngs: list[bytes], workers: int | None = None) -> list[str]:
    """Tesseract's readings of line images, in order: one single-threaded tesseract process per
    core at a time (on 2 cores, 12 lines in 1.2 s against 2.3 s one at a time)."""
    workers = workers or max(1, min(len(pngs), os.cpu_count() or 1))
    if workers == 1:
        return [read_line(p) for p in pngs]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(read_line, pngs))


def render_offsets_png(offsets: np.ndarray, x_height: float = X_HEIGHT) -> bytes:
    """One line of offsets as Tesseract reads it: straightened and scaled as layout places a
    line (``x_height`` pixels per unit), black ink ``x_height / 7`` px wide on white (bolder
    ink reads better than thin: on the built-in styles CER 0.28 at /6, 0.33 at /12, 0.39 at /18),
    ``MARGIN`` px around."""
    strokes, _ = straighten(offsets)
    xmin, _, xmax, _ = bounds(transform(strokes, scale=line_scales([offsets])[0]))
    width = int(min(10000, max(200, (xmax - xmin) * x_height + 2 * MARGIN + 2)))
    opts = PageOptions(width=width, margin=MARGIN, x_height=x_height)
    page = place(["line"], [offsets], opts)[0]
    return page_png(page, Ink(stroke_width=x_height / 7, color="black", background="white", dpi=100))


def render_font_png(text: str, font_path: str | Path, x_height: float = X_HEIGHT) -> bytes:
    """``text`` set in a TTF/OTF font, black on white, the font's x-height about ``x_height``
    pixels (measured on its "x"), ``MARGIN`` px around, as a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    probe = ImageFont.truetype(str(font_path), 100)
    box = probe.getbbox("x")
    size = max(8, int(round(100 * x_height / max(box[3] - box[1], 1))))
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 2 * MARGIN, bottom - top + 2 * MARGIN), 255)
    ImageDraw.Draw(img).text((MARGIN - left, MARGIN - top), text, font=font, fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def find_fonts() -> dict[str, str]:
    """Installed fonts by name (``FONT_FILES``: the three Debian handwriting fonts and DejaVu
    Sans as the print font) -> file path, via ``fc-list`` or /usr/share/fonts; DejaVu Sans
    falls back to the copy matplotlib ships. Fonts not found are left out."""
    files: list[str] = []
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True, text=True, timeout=30)
            files = out.stdout.split("\n")
        except (OSError, subprocess.SubprocessError):
            pass
    if not files and Path("/usr/share/fonts").is_dir():
        files = [str(p) for p in Path("/usr/share/fonts").rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
    by_name = {}
    for f in files:
        by_name.setdefault(Path(f).name, f)
    found = {}
    for name, candidates in FONT_FILES.items():
        path = next((by_name[c] for c in candidates if c in by_name), None)
        if path is None and name == PRINT_FONT:
            import matplotlib
            mpl = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            path = str(mpl) if mpl.exists() else None
        if path:
            found[name] = path
    return found
