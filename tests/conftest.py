"""Fixtures: a tiny IAM-OnDB copy written by the tests (synthetic glyph strokes in the real XML
and transcription layouts, as a folder and as the two .tar.gz archives), and a tiny trained model."""
from __future__ import annotations

import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "in"]


def glyph(c: str, x0: float) -> np.ndarray:
    """A made-up, character-specific pen path: a loop whose size and phase depend on ``c``."""
    h = zlib.crc32(c.encode())
    t = np.linspace(0, 2 * np.pi, 9)
    r = 20 + h % 15
    ph = (h % 7) / 7 * np.pi
    x = x0 + r * (1 - np.cos(t + ph)) * 0.6 + t * 4
    y = 100 - r * np.sin(t * (1 + h % 2) + ph) - (h % 3) * 8
    return np.stack([x, y], 1)


def line_strokes(text: str) -> list[np.ndarray]:
    strokes, x = [], 100.0
    for word in text.split(" "):
        pts = np.concatenate([glyph(c, x + i * 45) for i, c in enumerate(word)])
        strokes.append(pts)
        x += 45 * len(word) + 50
    return strokes


def line_xml(strokes) -> str:
    parts = ['<?xml version="1.0" encoding="ISO-8859-1"?>\n<WhiteboardCaptureSession>\n<StrokeSet>']
    t = 0.0
    for s in strokes:
        parts.append(f'<Stroke colour="black" start_time="{t:.2f}" end_time="{t + 1:.2f}">')
        for x, y in s:
            parts.append(f'<Point x="{int(x)}" y="{int(y)}" time="{t:.2f}"/>')
            t += 0.01
        parts.append("</Stroke>")
    parts.append("</StrokeSet>\n</WhiteboardCaptureSession>\n")
    return "\n".join(parts)


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 4))) for _ in range(n)]


def write_iam(root: Path, forms: int = 12, lines_per_form: int = 4, extras: bool = True) -> Path:
    """Write an IAM-OnDB-layout folder with ``lineStrokes/`` and ``ascii/``. With ``extras``,
    also one malformed XML line and one line without transcription."""
    texts = make_texts(forms * lines_per_form)
    k = 0
    for f in range(forms):
        form = f"a{f // 10:02d}-{f:03d}u"
        sd = root / "lineStrokes" / form[:3] / form[:7]
        ad = root / "ascii" / form[:3] / form[:7]
        sd.mkdir(parents=True, exist_ok=True)
        ad.mkdir(parents=True, exist_ok=True)
        csr = []
        for j in range(1, lines_per_form + 1):
            text = texts[k]
            k += 1
            csr.append(text)
            (sd / f"{form}-{j:02d}.xml").write_text(line_xml(line_strokes(text)))
        if extras and f == 0:
            (sd / f"{form}-{lines_per_form + 1:02d}.xml").write_text(line_xml(line_strokes("no text")))
        if extras and f == 1:
            (sd / f"{form}-{lines_per_form:02d}.xml").write_text("<StrokeSet><Stroke><Point x='1' y=")
        (ad / f"{form}.txt").write_text("OCR:\n\n" + "\n".join(csr) + "\n\nCSR:\n\n" + "\n".join(csr) + "\n")
    return root


def pack(root: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, sub in (("lineStrokes-all.tar.gz", "lineStrokes"), ("ascii-all.tar.gz", "ascii")):
        with tarfile.open(out / name, "w:gz") as tar:
            tar.add(root / sub, arcname=sub)
    return out


@pytest.fixture(scope="session")
def tiny_iam(tmp_path_factory) -> Path:
    return write_iam(tmp_path_factory.mktemp("iam-dir"))


@pytest.fixture(scope="session")
def tiny_iam_archives(tiny_iam, tmp_path_factory) -> Path:
    return pack(tiny_iam, tmp_path_factory.mktemp("iam-tar"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_model(tiny_iam, tmp_path_factory) -> Path:
    """A tiny model trained for a few dozen steps by the real `handsynth train` command."""
    out = tmp_path_factory.mktemp("tiny-model")
    cache = tmp_path_factory.mktemp("tiny-cache")
    r = subprocess.run([sys.executable, "-m", "handsynth", "train", "--iam", str(tiny_iam), "--out", str(out),
                        "--config", "tiny", "--max-steps", "40", "--batch-size", "8", "--eval-every", "40",
                        "--lr", "0.01", "--cache-dir", str(cache), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out / "model.pt"


@pytest.fixture(scope="session")
def hw():
    """The shipped model, loaded once."""
    import handsynth
    return handsynth.load_model()


def pytest_configure(config):
    # Tests share 2 cores with whatever else runs; one thread each avoids OpenMP spin contention.
    import os

    import torch
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
