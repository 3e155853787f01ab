import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from handsynth import checkpoint
from handsynth.data.corpus import load_corpus
from handsynth.errors import HandsynthError
from handsynth.loop import lr_at
from handsynth.hardware import use_bf16
from handsynth.train import TrainConfig, trainer


def _trainer(corpus, out, **kw):
    tc = TrainConfig(batch_size=8, lr=kw.pop("lr", 0.01), eval_every=kw.pop("eval_every", 1000),
                     max_steps=kw.pop("max_steps", 200), attention_warmup=kw.pop("attention_warmup", 0), **kw)
    return trainer(corpus, out, "tiny", tc, progress=False)


def _loss(tr, batch) -> float:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(tr.tc.bf16)):
        nll, count = tr.model.loss(batch)
    return (nll / count).item()


def test_schedule_keeps_the_recipe():
    tc = TrainConfig()
    assert (tc.lr, tc.lr_warmup, tc.max_steps, tc.min_lr_ratio, tc.clip) == (1e-3, 200, 20000, 0.05, 10.0)
    assert (tc.batch_size, tc.max_len, tc.eval_every, tc.max_bad_steps, tc.attention_warmup) == (32, 700, 250, 20, 0)
    assert lr_at(0, tc) == pytest.approx(5e-6) and lr_at(199, tc) == pytest.approx(1e-3)
    assert lr_at(20000, tc) == pytest.approx(5e-5)


def test_tiny_model_overfits_tiny_corpus(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    tr = _trainer(corpus, tmp_path / "run", max_steps=150, eval_every=150, lr=0.02)
    first = tr.task.batch(tr.next_batch())
    before = _loss(tr, first)
    tr.run()
    after = _loss(tr, first)
    assert after < before - 1.5, (before, after)
    hist = json.loads((tmp_path / "run/history.json").read_text())
    assert hist[-1]["step"] == 150
    assert (tmp_path / "run" / "sample-000150.png").exists()
    assert (tmp_path / "run" / "attention-000150.png").exists()


def test_resume_continues_bit_exactly(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    straight = _trainer(corpus, tmp_path / "a", attention_warmup=4)
    straight.run(max_steps=8)
    first = _trainer(corpus, tmp_path / "b", attention_warmup=4)
    first.run(max_steps=4)
    again = _trainer(corpus, tmp_path / "b", attention_warmup=4)
    again.resume(tmp_path / "b" / "checkpoint.pt")
    assert again.step == 4
    again.run(max_steps=8)
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_same_seed_same_weights_and_files_name_their_family(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    torch.manual_seed(123)  # the global RNG's state must not matter: the seed sets the initial weights
    a = _trainer(corpus, tmp_path / "a")
    torch.manual_seed(456)
    b = _trainer(corpus, tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    a.run(max_steps=2)
    for name in ("checkpoint.pt", "model.pt"):
        assert torch.load(tmp_path / "a" / name, weights_only=True)["arch"] == "graves"


def test_checkpoint_from_before_families_resumes(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    straight = _trainer(corpus, tmp_path / "a")
    straight.run(max_steps=6)
    first = _trainer(corpus, tmp_path / "b")
    first.run(max_steps=3)
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    del ck["arch"]  # written by the code before model families (and before the loop kept "skipped")
    del ck["skipped"]
    for g in ck["optimizer"]["param_groups"]:
        del g["initial_lr"]
    torch.save(ck, tmp_path / "b" / "checkpoint.pt")
    again = _trainer(corpus, tmp_path / "b")
    again.resume(tmp_path / "b" / "checkpoint.pt")
    again.run(max_steps=6)
    assert all(torch.equal(x, y) for x, y in zip(straight.model.state_dict().values(),
                                                  again.model.state_dict().values()))
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["arch"] == "graves"


def test_non_finite_loss_stops_with_clear_message(tiny_iam, tmp_path):
    corpus = load_corpus(tiny_iam, cache_dir=tmp_path, progress=False)
    tr = _trainer(corpus, tmp_path / "run", max_bad_steps=3)
    tr.run(max_steps=2)
    good = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    with torch.no_grad():
        tr.model.head.bias.fill_(float("nan"))
    with pytest.raises(HandsynthError, match="diverged.*last good checkpoint"):
        tr.run(max_steps=10)
    assert tr.skipped == 3
    kept = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert kept["step"] == good["step"] == 2


@pytest.mark.slow   # (tests/test_kill.py kills a run at random moments in the default run)
def test_sigkill_leaves_a_loadable_checkpoint(tiny_iam, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "handsynth", "train", "--iam", str(tiny_iam), "--out", str(out), "--config", "tiny",
           "--max-steps", "100000", "--eval-every", "1", "--batch-size", "8", "--cache-dir", str(tmp_path), "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            ck = out / "checkpoint.pt"
            if ck.exists() and torch.load(ck, weights_only=True)["step"] >= 3:
                break
            time.sleep(0.2)
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] >= 3
    model, meta = checkpoint.load(out / "checkpoint.pt")
    assert meta["alphabet"] and model.config.hidden == 32
    again = [str(ck["step"] + 2) if a == "100000" else a for a in cmd] + ["--resume"]
    resumed = subprocess.run(again, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == ck["step"] + 2


def test_train_command_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "handsynth", "train", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no training data" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "handsynth", "train", "--iam", str(tmp_path / "x"),
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "no such file" in r.stderr


def test_resume_without_checkpoint(tiny_iam, tmp_path):
    r = subprocess.run([sys.executable, "-m", "handsynth", "train", "--iam", str(tiny_iam), "--out",
                        str(tmp_path / "empty"), "--config", "tiny", "--resume", "--cache-dir", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no checkpoint" in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on loopback")
def test_torchrun_two_processes_agree(tiny_iam, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                        "29517", "-m", "handsynth", "train", "--iam", str(tiny_iam), "--out", str(out),
                        "--config", "tiny", "--max-steps", "4", "--eval-every", "100", "--batch-size", "4",
                        "--cache-dir", str(tmp_path), "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    hist = json.loads((out / "history.json").read_text())
    sums = hist[-1]["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
