"""Real training runs (`python -m handsynth train`, tiny network, the tiny IAM-OnDB copy) killed
with SIGKILL at seeded random moments, some of them while a checkpoint is being written: the
checkpoint always loads, history.json and the export never run ahead of it, the next start
leaves no temporary files, and the resumed run finishes with history, checkpoint and export at
the same step. And the same --seed gives the same weights."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from handsynth import checkpoint

TEMP = re.compile(r"\..+\.([a-z0-9_]{8}|tmp[0-9]+)")   # atomic_target's temporary files


def _cmd(iam, out, cache, *extra) -> list[str]:
    return [sys.executable, "-m", "handsynth", "train", "--iam", str(iam), "--out", str(out), "--config", "tiny",
            "--batch-size", "8", "--lr", "0.01", "--cache-dir", str(cache), "-q", *extra]


def _temps(out: Path) -> list[str]:
    return sorted(n for n in os.listdir(out) if TEMP.fullmatch(n)) if out.exists() else []


def _step(path: Path) -> int:
    """The step a checkpoint holds (-1: none yet, or not readable yet)."""
    try:
        return checkpoint.read(path)["step"]
    except Exception:
        return -1


def _wait(p: subprocess.Popen, cond, timeout: float = 120.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if p.poll() is not None:
            pytest.fail(f"training exited early ({p.returncode}): {p.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("training made no progress")
        time.sleep(poll)


def _kill_mid_write(p: subprocess.Popen, out: Path, timeout: float = 120.0) -> bool:
    """SIGKILL as soon as a temporary file of a checkpoint commit appears; whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if _temps(out):
            p.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.0002)
    return False


@pytest.mark.parametrize("kills", [3, pytest.param(8, marks=pytest.mark.slow)])
def test_sigkill_at_random_moments_then_resume(tiny_iam, tmp_path, kills):
    """Every other kill lands while a commit's temporary files exist (mid-write), the others at
    a seeded random moment after the run's latest checkpoint."""
    rng = random.Random(18)
    out, cache = tmp_path / "run", tmp_path / "cache"
    ck_path = out / "checkpoint.pt"
    cmd = _cmd(tiny_iam, out, cache, "--max-steps", "1000", "--eval-every", "2")
    orphans, exact, k = 0, 0, -1
    # a mid-write kill can land just after the commit's rename: then up to 8 more rounds (4 of
    # them mid-write) until one leaves a temporary file behind
    while (k := k + 1) < kills or (not orphans and k < kills + 8):
        p = subprocess.Popen(cmd + (["--resume"] if k else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            before = _step(ck_path)
            _wait(p, lambda before=before: _step(ck_path) > before)   # this run has made progress
            if k % 2:
                assert _kill_mid_write(p, out), "no checkpoint write seen"
            else:
                time.sleep(rng.uniform(0.0, 1.5))
                p.send_signal(signal.SIGKILL)
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == -signal.SIGKILL
        # what the kill left: a whole checkpoint; history.json and model.pt its own or one save behind
        ck = checkpoint.read(ck_path, "handsynth checkpoint")
        checkpoint.read_training(ck_path, ck["alphabet"], ck["config"])
        model, meta = checkpoint.load(ck_path)
        assert model.config.hidden == 32 and meta["step"] == ck["step"] > before
        ck_history = json.loads(ck["history"])
        on_disk = json.loads((out / "history.json").read_text())
        assert on_disk in (ck_history, ck_history[:-1]) and ck_history[-1]["step"] == ck["step"]
        exported = _step(out / "model.pt") if (out / "model.pt").exists() else None
        previous = ck_history[-2]["step"] if len(ck_history) > 1 else None
        assert ck["exported_step"] == ck["step"] and exported in (ck["step"], previous)
        exact += on_disk == ck_history and exported == ck["step"]
        orphans += len(_temps(out))
    assert orphans >= 1   # the kill mid-write left a temporary file behind
    last = _step(ck_path)
    r = subprocess.run(_cmd(tiny_iam, out, cache, "--max-steps", str(last + 3), "--eval-every", "2", "--resume"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _temps(out) == []
    ck = checkpoint.read(ck_path)
    history = json.loads((out / "history.json").read_text())
    assert ck["step"] == history[-1]["step"] == last + 3 == torch.load(out / "model.pt", weights_only=True)["step"]
    assert history == json.loads(ck["history"]) and history[-1]["exported"]
    print(f"{kills} kills: {orphans} temporary file(s) left, {exact} kill(s) with history and export already at the "
          "checkpoint's step")


def _run(iam, out, cache, seed) -> subprocess.Popen:
    return subprocess.Popen(_cmd(iam, out, cache, "--max-steps", "3", "--eval-every", "3", "--seed", str(seed)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow   # 20 s; the kill-and-resume test keeps the default run on the loop
def test_same_seed_same_weights_other_seed_other_weights(tiny_iam, tmp_path):
    """Two fresh runs with one seed (one building its corpus cache, one reading a cache built
    before) end with the same weights, optimiser state and history; another seed does not."""
    from handsynth.data.corpus import load_corpus

    load_corpus(tiny_iam, cache_dir=tmp_path / "built", progress=False)
    runs = [_run(tiny_iam, tmp_path / "a", tmp_path / "fresh", 7), _run(tiny_iam, tmp_path / "b", tmp_path / "built", 7),
            _run(tiny_iam, tmp_path / "c", tmp_path / "built", 8)]
    for p in runs:
        assert p.wait(300) == 0, p.stderr.read().decode()[-2000:]
    a, b, c = (checkpoint.read(tmp_path / n / "checkpoint.pt") for n in "abc")
    assert a["threads"] == b["threads"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])
    drop = lambda h: [{k: v for k, v in r.items() if k not in ("minutes", "pen_steps_per_s")} for r in json.loads(h)]  # noqa: E731
    assert drop(a["history"]) == drop(b["history"])
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])
