"""The training loop with a toy task (a one-weight network fitting y = 2x): the loop needs nothing
of handwriting, and its schedule, resume, non-finite skipping and evaluation hooks hold for any task."""
import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from handsynth import checkpoint
from handsynth.errors import HandsynthError
from handsynth.loop import BestExportTask, Loop, LoopConfig, lr_at, start_or_resume


class Toy:
    name = "toy"
    drop_last = False
    export_name = "toy.pt"

    def __init__(self, bad_calls=()):
        torch.manual_seed(0)
        self.model = nn.Linear(1, 1)
        self.model.config = type("C", (), {"to_dict": lambda self: {}})()
        self.lines = np.arange(40)
        self.lengths = np.ones(40)
        self.bad_calls, self.calls, self.lrs, self.loop = set(bad_calls), 0, {}, None

    def loss(self, model, idx, step, tc):
        self.lrs[step] = self.loop.opt.param_groups[0]["lr"]
        x = torch.from_numpy(idx.astype(np.float32))[:, None] / 40
        loss = ((model(x) - 2 * x) ** 2).mean()
        self.calls += 1
        return (loss * float("nan") if self.calls in self.bad_calls else loss), len(idx)

    def evaluate(self, loop):
        return {"weight": self.model.weight.item()}

    def state(self):
        return {"config": {}, "alphabet": ""}

    def read(self, path):
        return checkpoint.read_training(path, "", {}, self.name)

    def restore(self, ck):
        pass

    def exports(self, out, metrics):
        return True

    def export(self, ckpt, out, metrics):
        checkpoint.export(ckpt, out / "toy.pt", keys=("step",))


def _loop(out, task=None, **kw):
    task = task or Toy()
    tc = LoopConfig(**{"batch_size": 8, "lr": 0.1, "lr_warmup": 3, "max_steps": 12, "eval_every": 5, **kw})
    task.loop = Loop(task, tc, out, progress=False)
    return task.loop


def test_cosine_schedule():
    tc = LoopConfig(lr=1e-3, lr_warmup=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, tc) == pytest.approx(1e-4)
    assert lr_at(9, tc) == pytest.approx(1e-3)
    assert lr_at(60, tc) == pytest.approx(0.55e-3)
    assert lr_at(110, tc) == pytest.approx(1e-4)


def test_toy_task_trains_evaluates_and_follows_the_schedule(tmp_path):
    loop = _loop(tmp_path)
    history = loop.run()
    assert [h["step"] for h in history] == [5, 10, 12]
    assert history[-1]["epoch"] == 2 and history[-1]["weight"] == pytest.approx(loop.model.weight.item(), abs=1e-4)
    assert json.loads((tmp_path / "history.json").read_text()) == history
    assert torch.load(tmp_path / "toy.pt", weights_only=True)["step"] == 12
    assert loop.task.lrs == {s: lr_at(s, loop.tc) for s in range(12)}


def test_resume_continues_bit_exactly_and_rebuilds_the_schedule(tmp_path):
    straight = _loop(tmp_path / "a")
    straight.run()
    first = _loop(tmp_path / "b")
    first.run(max_steps=7)  # stops between evaluations, in the cosine part
    again = _loop(tmp_path / "b", lr=0.5)  # the checkpoint's config wins
    again.resume(tmp_path / "b" / "checkpoint.pt")
    assert again.step == 7 and again.tc.lr == 0.1
    again.run()
    assert again.task.lrs == {s: straight.task.lrs[s] for s in range(7, 12)}
    assert torch.equal(straight.model.weight, again.model.weight)
    assert [h["step"] for h in again.history] == [5, 7, 10, 12]


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    loop = _loop(tmp_path / "a", task=Toy(bad_calls={4}))
    loop.run()
    assert loop.step == 12 and loop.skipped == 1 and loop.history[-1]["skipped"] == 1
    assert math.isfinite(loop.model.weight.item())
    loop = _loop(tmp_path / "b", task=Toy(bad_calls=range(8, 100)), max_bad_steps=3)
    with pytest.raises(HandsynthError, match=r"toy training diverged: 3 steps .*step 7\).*last good checkpoint"):
        loop.run()
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 5


def test_start_or_resume_refuses_continues_or_overwrites_a_run(tmp_path):
    assert start_or_resume(lambda: _loop(tmp_path), tmp_path, max_steps=7)[-1]["step"] == 7
    with pytest.raises(HandsynthError, match=f"^{re.escape(str(tmp_path))} already holds a toy checkpoint: "
                                             "pass --resume to continue it, or choose another --out$"):
        start_or_resume(lambda: pytest.fail("a refused run builds nothing"), tmp_path, refuse_existing="toy")
    resumed = start_or_resume(lambda: _loop(tmp_path), tmp_path, resume=True, schedule_steps=20, refuse_existing="toy")
    assert [h["step"] for h in resumed] == [5, 7, 10, 15, 20]  # the longer schedule, from step 7
    assert [h["step"] for h in start_or_resume(lambda: _loop(tmp_path), tmp_path, max_steps=3)] == [3]


def test_best_export_rule_in_either_direction(tmp_path):
    class Lower(BestExportTask):
        metric, export_name = "m", "best.pt"

        def __init__(self):  # the rule needs no corpus
            pass

    class Higher(Lower):
        higher_is_better, best = True, -1.0

    lower, higher = Lower(), Higher()
    assert [lower.exports(tmp_path, {"m": v}) for v in (9.0, 10.0)] == [True, True]  # no export yet: always
    assert [higher.exports(tmp_path, {"m": v}) for v in (0.0, -0.5)] == [True, True]
    (tmp_path / "best.pt").touch()
    rule = [True, False, False, True, True]  # better, worse, as good, better, nothing to validate on
    assert [lower.exports(tmp_path, {"m": v}) for v in (3.0, 4.0, 3.0, 2.0, math.nan)] == rule
    assert [higher.exports(tmp_path, {"m": v}) for v in (0.5, 0.4, 0.5, 0.6, math.nan)] == rule
    assert (lower.best, higher.best) == (2.0, 0.6)


def test_each_evaluation_commits_checkpoint_history_and_export_together(tmp_path):
    loop = _loop(tmp_path)
    loop.run(max_steps=7)
    ck = checkpoint.read(tmp_path / "checkpoint.pt")
    history = json.loads((tmp_path / "history.json").read_text())
    assert ck["step"] == ck["exported_step"] == history[-1]["step"] == 7
    assert torch.load(tmp_path / "toy.pt", weights_only=True)["step"] == 7
    assert [h["exported"] for h in history] == [True, True]
    assert ck["threads"] == torch.get_num_threads() and json.loads(ck["metrics"])["weight"] == loop.model.weight.item()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.json", "toy.pt"]


def test_resume_repairs_what_a_kill_between_the_renames_left(tmp_path):
    _loop(tmp_path).run(max_steps=7)
    stale = json.loads((tmp_path / "history.json").read_text())[:-1]
    (tmp_path / "history.json").write_text(json.dumps(stale))   # as if killed after the checkpoint's rename
    checkpoint.save({"step": 5, "model": {}}, tmp_path / "toy.pt")
    again = _loop(tmp_path)
    again.resume(tmp_path / "checkpoint.pt")
    assert json.loads((tmp_path / "history.json").read_text())[-1]["step"] == 7   # before any step
    assert torch.load(tmp_path / "toy.pt", weights_only=True)["step"] == 7
    again.run()
    assert json.loads((tmp_path / "history.json").read_text())[-1]["step"] == 12 == again.step


def test_a_start_removes_only_our_leftover_temporary_files(tmp_path):
    ours = [".checkpoint.pt.k3x_9a0q", ".history.json.abcdefgh", ".toy.pt.tmp4242", ".sample-000010.png.zz11zz11"]
    theirs = [".checkpoint.pt.ABCDEFGH", ".checkpoint.pt.abc", ".other.pt.abcd1234", "notes.txt", ".checkpoint.pt",
              "checkpoint.pt.abcd1234", ".toy.pt.abcd1234.bak"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".model.pt.abcd5678").mkdir()                          # a folder, not a file
    (tmp_path / ".history.json.link0000").symlink_to(tmp_path / "notes.txt")  # a link, not a file
    loop = _loop(tmp_path)
    loop.run(max_steps=2)
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & set(ours)
    assert set(theirs) | {".model.pt.abcd5678", ".history.json.link0000"} <= left
    assert (tmp_path / "notes.txt").read_bytes() == b"x"


def test_a_second_process_on_the_same_folder_is_refused(tmp_path):
    first = _loop(tmp_path)
    first.run(max_steps=5)
    first.resume(tmp_path / "checkpoint.pt")   # holds the folder until it runs or lets go
    second = _loop(tmp_path)
    with pytest.raises(HandsynthError, match=f"^{re.escape(str(tmp_path))} is in use by another toy training .*--out$"):
        second.run()
    first.release()
    assert second.run()[-1]["step"] == 12


def test_together_writes_all_files_or_none(tmp_path):
    checkpoint.write_atomic(tmp_path / "a", b"old")
    with pytest.raises(RuntimeError):
        with checkpoint.together():
            checkpoint.write_atomic(tmp_path / "a", b"new")
            checkpoint.save({"model": {}}, tmp_path / "b.pt")
            assert (tmp_path / "a").read_bytes() == b"old" and not (tmp_path / "b.pt").exists()
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and (tmp_path / "a").read_bytes() == b"old"
    with checkpoint.together():
        checkpoint.write_atomic(tmp_path / "a", b"new")
        checkpoint.save({"model": {}}, tmp_path / "b.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.pt"] and (tmp_path / "a").read_bytes() == b"new"


def test_resume_computes_with_the_checkpoints_thread_count(tmp_path, monkeypatch, capsys):
    from handsynth.hardware import cores
    before = torch.get_num_threads()
    _loop(tmp_path).run(max_steps=5)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["threads"] == before
    ck["threads"] = other = 2 if before == 1 else 1
    torch.save(ck, tmp_path / "checkpoint.pt")
    try:
        again = _loop(tmp_path)
        again.progress = True
        monkeypatch.setenv("HANDSYNTH_THREADS", str(before))   # an override wins, and says so
        again.resume(tmp_path / "checkpoint.pt")
        assert torch.get_num_threads() == before
        assert f"this run computes with {before} threads, the checkpoint's run with {other}" in capsys.readouterr().err
        if other <= cores():
            monkeypatch.delenv("HANDSYNTH_THREADS")
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
            again.release()
            again.resume(tmp_path / "checkpoint.pt")
            assert torch.get_num_threads() == other
            assert f"the checkpoint's {other} threads (bit for bit)" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
