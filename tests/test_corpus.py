import subprocess
import sys

import numpy as np
import pytest

from handsynth.data.corpus import load_corpus, split_of, statistics
from handsynth.data.iam import detokenize, iter_iam
from handsynth.data.samples import Sample, load_samples, save_samples
from handsynth.errors import HandsynthError


def test_archive_and_directory_read_the_same_lines(tiny_iam, tiny_iam_archives):
    a = {(r.line_id, r.text, r.problem) for r in iter_iam(tiny_iam)}
    b = {(r.line_id, r.text, r.problem) for r in iter_iam(tiny_iam_archives)}
    assert a == b
    ok = [r for r in iter_iam(tiny_iam_archives) if not r.problem]
    assert len(ok) == 12 * 4 - 1
    first = next(r for r in ok if r.line_id == "a00-000u-01")
    assert first.text and len(first.strokes) == len(first.text.split(" "))
    # y flipped to grow upwards: IAM y (downwards) values were positive
    assert all((s[:, 1] < 0).all() for s in first.strokes)


def test_bad_lines_are_counted_not_fatal(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    assert len(corpus) == 12 * 4 - 1
    assert corpus.dropped["no transcription line"] == 1
    assert corpus.dropped["malformed XML"] == 1
    stats = statistics(corpus)
    assert stats["lines"] == len(corpus) and stats["forms"] == 12
    assert stats["dropped"] == {"no transcription line": 1, "malformed XML": 1}
    assert stats["raw_points_per_character"] > stats["steps_per_character"] > 0


def test_cache_round_trip(tiny_iam_archives, tmp_path):
    a = load_corpus(tiny_iam_archives, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("iam-*.npz"))) == 1
    b = load_corpus(tiny_iam_archives, cache_dir=tmp_path, progress=False)
    assert a.texts == b.texts and a.form_ids == b.form_ids
    assert all(np.array_equal(x, y) for x, y in zip(a.offsets, b.offsets))
    assert np.array_equal(a.split, b.split)


def test_split_is_form_disjoint_and_deterministic():
    forms = [f"a{i:02d}-{j:03d}u" for i in range(20) for j in range(20)]
    s = [split_of(f) for f in forms]
    assert s == [split_of(f) for f in forms]
    counts = np.bincount(s, minlength=3) / len(s)
    assert 0.8 < counts[0] < 0.97 and counts[1] > 0.02 and counts[2] > 0.02


def test_missing_and_truncated_archives(tmp_path, tiny_iam_archives):
    with pytest.raises(HandsynthError, match="no such file"):
        list(iter_iam(tmp_path / "nope"))
    with pytest.raises(HandsynthError, match="missing"):
        list(iter_iam(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    data = (tiny_iam_archives / "lineStrokes-all.tar.gz").read_bytes()
    (bad / "lineStrokes-all.tar.gz").write_bytes(data[: len(data) // 2])
    (bad / "ascii-all.tar.gz").write_bytes((tiny_iam_archives / "ascii-all.tar.gz").read_bytes())
    with pytest.raises(HandsynthError, match="lineStrokes-all.tar.gz.*truncated"):
        list(iter_iam(bad))


def test_hostile_xml_is_dropped(tmp_path, tiny_iam):
    import shutil
    root = tmp_path / "iam"
    shutil.copytree(tiny_iam, root)
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            '<WhiteboardCaptureSession><StrokeSet><Stroke><Point x="&b;" y="1" time="0"/></Stroke>'
            '</StrokeSet></WhiteboardCaptureSession>')
    (root / "lineStrokes/a00/a00-002/a00-002u-01.xml").write_text(bomb)
    corpus = load_corpus(root, cache_dir=tmp_path / "c", progress=False)
    assert corpus.dropped["malformed XML"] == 2
    assert "a00-002u-01" not in corpus.line_ids


def test_detokenize():
    assert detokenize("Mr . Foot 's idea , he said .") == "Mr. Foot's idea, he said."


def test_samples_mix_into_training(tiny_iam, tmp_path):
    from conftest import line_strokes
    s = Sample("the cat sat", [st * [1, -1] for st in line_strokes("the cat sat")], "me")
    save_samples([s, s], tmp_path / "mine.json")
    back = load_samples(tmp_path / "mine.json")
    assert len(back) == 2 and back[0].text == "the cat sat"
    corpus = load_corpus(tiny_iam, samples=[tmp_path / "mine.json"], cache_dir=tmp_path, progress=False)
    assert corpus.texts[-2:] == ["the cat sat"] * 2 and corpus.split[-1] == 0
    assert corpus.form_ids[-1] == "sample:me"


@pytest.mark.parametrize("doc, msg", [
    ("{", "not valid JSON"),
    ('{"strokes": [[[0, 0]]]}', "'text' must be"),
    ('{"text": "hi", "strokes": []}', "'strokes' must be"),
    ('{"text": "hi", "strokes": [[[0, "x"]]]}', "stroke 0"),
    ('{"text": "hi", "strokes": [[[0, 0]]], "y_axis": "left"}', "y_axis"),
])
def test_bad_sample_files(tmp_path, doc, msg):
    p = tmp_path / "s.json"
    p.write_text(doc)
    with pytest.raises(HandsynthError, match=msg):
        load_samples(p)


def test_corpus_command(tiny_iam_archives, tmp_path):
    r = subprocess.run([sys.executable, "-m", "handsynth", "corpus", "--iam", str(tiny_iam_archives),
                        "--cache-dir", str(tmp_path), "-q"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "lines" in r.stdout and "47" in r.stdout and "no transcription line" in r.stdout
    r = subprocess.run([sys.executable, "-m", "handsynth", "corpus", "--iam", str(tmp_path / "none")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr


class _Zeros:
    """A file of ``n`` zero bytes, read in pieces (the test never holds it)."""

    def __init__(self, n: int):
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        size = min(size, 1 << 20)
        self.left -= size
        return bytes(size)


def _bomb_archives(tiny_iam, out, size: int, longname: bool = False):
    """The tiny IAM-OnDB archives with a ``size``-byte zero-filled line file added (or, with
    ``longname``, a GNU long-name entry stating that size), streamed into the .tar.gz."""
    import shutil
    import tarfile

    out.mkdir()
    shutil.copy(tiny_iam / "ascii-all.tar.gz", out)
    with tarfile.open(tiny_iam / "lineStrokes-all.tar.gz", "r:gz") as src, \
            tarfile.open(out / "lineStrokes-all.tar.gz", "w:gz", compresslevel=1, format=tarfile.GNU_FORMAT) as tar:
        for m in src:
            tar.addfile(m, src.extractfile(m) if m.isfile() else None)
        info = tarfile.TarInfo("lineStrokes/a00/a00-000/a00-000u-09.xml")
        if longname:
            info.type, info.name = tarfile.GNUTYPE_LONGNAME, "././@LongLink"
        info.size = size
        tar.addfile(info, _Zeros(size))
    return out


_PEAKS = """
import json, resource, sys
from handsynth.data.corpus import load_corpus
from handsynth.errors import HandsynthError
for path, cache in zip(sys.argv[1::2], sys.argv[2::2]):   # peak memory after each, in turn
    try:
        c = load_corpus(path, cache_dir=cache, progress=False)
        out = {"lines": len(c), "dropped": dict(c.dropped)}
    except HandsynthError as e:
        out = {"error": str(e)}
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB")
def test_a_huge_archive_member_is_skipped_in_bounded_memory(tiny_iam_archives, tmp_path):
    """A 128 MiB zero-filled line file (under 1 MB of .tar.gz) is counted and skipped, and
    reading it raises the reader's peak memory by under 48 MB over reading the plain archives
    (reading the member whole, as before, took its full size and more: 256 MiB took 263 MB); a
    long-name entry of that size is refused, in bounded memory too."""
    import json

    size = 128 << 20
    bomb = _bomb_archives(tiny_iam_archives, tmp_path / "bomb", size)
    named = _bomb_archives(tiny_iam_archives, tmp_path / "longname", size, longname=True)
    assert (bomb / "lineStrokes-all.tar.gz").stat().st_size < 1 << 20
    args = [str(tiny_iam_archives), str(tmp_path / "c0"), str(bomb), str(tmp_path / "c1"), str(named), str(tmp_path / "c2")]
    r = subprocess.run([sys.executable, "-c", _PEAKS, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    plain, got, refused = map(json.loads, r.stdout.splitlines())
    assert got["lines"] == plain["lines"] == 12 * 4 - 1
    assert got["dropped"] == {**plain["dropped"], "file too large": 1}
    assert "asks to read 134,217,728 bytes at once: not an IAM-OnDB archive" in refused["error"]
    assert got["peak_mb"] - plain["peak_mb"] < 48 and refused["peak_mb"] - plain["peak_mb"] < 48, r.stdout


def test_only_regular_files_are_read_from_a_folder(tiny_iam, tmp_path):
    import os
    import shutil
    root = tmp_path / "iam"
    shutil.copytree(tiny_iam, root)
    os.mkfifo(root / "lineStrokes/a00/a00-000/a00-000u-08.xml")   # would block a reader forever
    (root / "lineStrokes/a00/a00-000/a00-000u-07.xml").symlink_to("/dev/zero")   # would never end
    with open(root / "lineStrokes/a00/a00-000/a00-000u-06.xml", "wb") as f:
        f.truncate(64 << 20)   # sparse: 64 MiB stated, nothing on disk
    corpus = load_corpus(root, cache_dir=tmp_path / "c", progress=False)
    assert len(corpus) == 12 * 4 - 1
    assert corpus.dropped["unreadable"] == 2 and corpus.dropped["file too large"] == 1
