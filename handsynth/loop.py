"""One training loop for every network: the synthesis families and the recogniser.

As in minGPT's trainer, nothing in the loop knows what it trains. It owns the optimiser (Adam),
the learning-rate schedule (linear warm-up, then cosine down to ``lr * min_lr_ratio``, as a
``LambdaLR`` rebuilt from the step on every run), length-bucketed epochs in a seeded order,
bfloat16 autocast, skipping steps whose loss or gradient is not finite, gradient clipping,
evaluation every ``eval_every`` steps and at the end, atomic checkpoints, resuming exactly where
a run stopped, data-parallel training (DDP), the progress bar and ``history.json``.

A *task* supplies what differs between networks (``SynthesisTask`` in ``train.py``, built on
``CorpusTask`` below; ``RecognizerTask`` in ``recognizer.py`` and ``StyleEncoderTask`` in
``style_encoder.py``, built on ``BestExportTask``):

- ``name`` (for the progress bar and messages), ``model``: the network (an ``nn.Module``);
- ``lines``, ``lengths``: the corpus lines it trains on and their lengths (for bucketing);
  ``drop_last``: whether an epoch leaves out its short batch (unless no batch is full);
  optionally ``epoch_lines(rng) -> positions``: which of ``lines`` an epoch uses (a task that
  mixes sources draws them afresh each epoch; default all);
- ``loss(model, idx, step, tc) -> (loss, pen_steps)``: the loss to minimise on the lines
  ``idx`` (run under bfloat16 autocast where ``hardware.use_bf16(tc.bf16)``) and how many pen
  steps it covered;
- ``evaluate(loop) -> dict``: the metrics recorded in the history (and any pictures);
- ``state() -> dict``, ``read(path) -> dict``, ``restore(ckpt)``: its part of a checkpoint,
  reading a checkpoint to resume (checked against the run), and restoring its part;
- ``exports(out, metrics) -> bool``, ``export(ckpt, out, metrics)``: its export rule (asked
  before the checkpoint is written, so the checkpoint holds the rule's state, e.g. the best
  score) and the shippable file it writes into ``out``.

``start_or_resume`` starts a run or continues one from its checkpoint (for ``train``,
``train_recognizer`` and ``train_style_encoder``), with the training's thread count
(``hardware.configure_threads("train")``: the machine's cores, never its load, so that the same
seed gives the same weights; the checkpoint records it).

Files, and what survives a kill (SIGKILL at any moment): each evaluation writes the checkpoint
(``checkpoint.pt``), ``history.json`` and, where the task's rule says so, its export
(``model.pt`` for synthesis) as one ``checkpoint.together()`` commit: all three temporary files
are written first, then renamed in that order. The checkpoint is the truth; it records its
``step``, ``exported_step`` (the step its run's export file holds) and the metrics of that
evaluation; the export records its ``step``; each history record says whether it ``exported``.
A kill leaves the last commit whole, or (killed within the microseconds of the renames) a newer
checkpoint than history or export. Every start in a folder takes the folder's lock (a second
process training into it is refused), removes the temporary files a killed write left there
(only ``.NAME.XXXXXXXX`` of the names the loop writes), and a resume rewrites ``history.json``
from the checkpoint and writes the export again when the checkpoint's save exported, so after
any kill and restart the history's last step, the checkpoint's step and the export's step agree.

Distributed: under ``torchrun`` (a process group initialised by the caller) each rank takes every
N-th batch, rank 0 writes the files, and every evaluation records each rank's weight checksum.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .data.corpus import bucket_batches
from .errors import HandsynthError
from .hardware import configure_threads, cores, thread_override, use_bf16

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
PICTURE = re.compile(r"(sample|attention)-[0-9]+\.png")   # the synthesis task's evaluation pictures


@dataclass(frozen=True)
class LoopConfig:
    """What every training run sets; ``TrainConfig`` and ``RecognizerTrainConfig`` extend it."""
    batch_size: int = 32
    lr: float = 1e-3              # peak of the cosine schedule
    lr_warmup: int = 200          # linear warm-up steps of the learning rate
    min_lr_ratio: float = 0.05    # the cosine decays to lr * min_lr_ratio
    max_steps: int = 20000        # length of the schedule (training may stop earlier by time)
    clip: float = 10.0            # gradient norm clipping
    max_len: int = 700            # lines with more pen steps are left out, never truncated
    bf16: bool | None = None      # bfloat16 autocast for the matmuls (losses in float32); None: where
                                  # the CPU has bfloat16 arithmetic (hardware.py), else float32
    seed: int = 0
    eval_every: int = 250         # steps between evaluation and checkpoint
    max_bad_steps: int = 20       # consecutive non-finite steps before the run stops
    unipen_share: float = 0.3     # share of each epoch's lines drawn from UNIPEN (a corpus task's,
                                  # when its corpus has any; CorpusTask.epoch_lines)

    def warmup_steps(self) -> int:
        return self.lr_warmup


def checked_share(share: float) -> float:
    """``share`` if it is a UNIPEN share a run can use (0 to below 1), else a one-line error."""
    if not 0 <= share < 1:
        raise HandsynthError(f"--unipen-share {share} is out of range: use 0 to below 1")
    return share


def lr_factor(step: int, tc: LoopConfig) -> float:
    """The schedule as a multiple of ``tc.lr``: linear warm-up, then cosine to ``min_lr_ratio``."""
    warmup = tc.warmup_steps()
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, tc.max_steps - warmup))
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))


def lr_at(step: int, tc: LoopConfig) -> float:
    """The learning rate of optimiser step ``step``."""
    return tc.lr * lr_factor(step, tc)


def train_step(module: nn.Module, opt, loss_fn, clip: float, bf16: bool):
    """One optimiser step: ``loss_fn() -> (loss, pen_steps)`` under autocast, backward, clipping,
    update. Returns (loss, pen_steps), or None when the loss or the gradient norm is not finite
    (the step is skipped, the weights untouched)."""
    module.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, pen_steps = loss_fn()
    opt.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return None
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    if not torch.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        return None
    opt.step()
    return loss.item(), int(pen_steps)


class _Objective(nn.Module):
    """The model with the task's loss as its forward, so that DDP's hooks run around the loss."""

    def __init__(self, task, model: nn.Module):
        super().__init__()
        self.task, self.model = task, model

    def forward(self, idx, step, tc):
        return self.task.loss(self.model, idx, step, tc)


class Loop:
    """The state of one training run (model, optimiser, place in the data, history), saved and
    resumed whole. ``run()`` trains; ``resume(path)`` continues from a checkpoint first."""

    def __init__(self, task, tc: LoopConfig, out, progress: bool = True):
        import torch.distributed as dist

        self.task, self.tc, self.out, self.progress = task, tc, Path(out), progress
        ddp = dist.is_available() and dist.is_initialized()
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if ddp else (0, 1)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.model = task.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.skipped = 0                    # non-finite steps skipped, over the whole run
        self.history: list[dict] = []
        self._saved_at = None               # the step out/checkpoint.pt holds, when known
        self.exported_at = None             # the step the task's export file holds, when known
        self._batches = (None, [])          # ((epoch, config), its batches)
        self._lock = None                   # checkpoint.FolderLock on out while this loop writes there

    # -- the run folder ---------------------------------------------------------------------------
    def _writes(self, name: str) -> bool:
        """Whether ``name`` is a file this loop or its task writes into ``out``."""
        return (name in (CHECKPOINT, HISTORY, "model.pt", getattr(self.task, "export_name", None))
                or PICTURE.fullmatch(name) is not None)

    def _claim(self) -> None:
        """Rank 0, once: lock ``out`` (a second process training into it is refused), then remove
        the temporary files a killed write of ours left there."""
        if self.rank != 0 or self._lock is not None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = checkpoint.FolderLock(self.out, f"{self.task.name} training")
        removed = checkpoint.remove_temp_files(self.out, self._writes)
        if removed and self.progress:
            print(f"removed {len(removed)} temporary file(s) left by a killed run: "
                  f"{', '.join(p.name for p in removed)}", file=sys.stderr)

    def release(self) -> None:
        """Let go of the folder's lock (``run`` does at its end)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _write_history(self) -> None:
        checkpoint.write_atomic(self.out / HISTORY, json.dumps(self.history, indent=1).encode())

    # -- state ----------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "step": self.step,
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "skipped": self.skipped,
                "rng": torch.get_rng_state(), "train_config": dataclasses.asdict(self.tc),
                "history": json.dumps(self.history), "exported_step": self.exported_at,
                "threads": torch.get_num_threads(), **self.task.state()}

    def save(self, metrics: dict) -> None:
        """One commit (rank 0 writes): the checkpoint, ``history.json`` and, where the task's rule
        says so, its export, renamed into place together (see the module's notes on kills)."""
        if self.rank != 0:
            return
        self._claim()
        export = self.task.exports(self.out, metrics)
        if export:
            self.exported_at = self.step
        if self.history and self.history[-1]["step"] == self.step:
            self.history[-1]["exported"] = bool(export)
        ckpt = {**self.state(), "metrics": json.dumps(metrics)}
        with checkpoint.together():
            checkpoint.save(ckpt, self.out / CHECKPOINT)
            self._write_history()
            if export:
                self.task.export(ckpt, self.out, metrics)

    def resume(self, path) -> None:
        """Continue from a training checkpoint: weights, optimiser, place in the data, RNG,
        history, training config (the task checks the checkpoint fits this run)."""
        same = Path(path).resolve() == (self.out / CHECKPOINT).resolve()
        if same:
            self._claim()   # before reading: a killed run's leftovers go, a live run keeps its folder
        try:
            self._resume(Path(path), same)
        except BaseException:
            self.release()
            raise

    def _resume(self, path: Path, same: bool) -> None:
        ck = self.task.read(path)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.step, self.epoch, self.batch_in_epoch = ck["step"], ck["epoch"], ck["batch_in_epoch"]
        self.skipped = ck.get("skipped", 0)
        torch.set_rng_state(ck["rng"])
        self.history = json.loads(ck["history"])
        self.tc = type(self.tc)(**ck["train_config"])
        self.task.restore(ck)
        self._saved_at = self.step if same else None
        self.exported_at = ck.get("exported_step") if same else None
        threads = ck.get("threads")   # the sums of a step depend on how many threads share them
        if threads and threads != torch.get_num_threads():
            now = torch.get_num_threads()
            if self.world == 1 and thread_override() is None and threads <= cores():
                torch.set_num_threads(threads)
                note = f"it continues with the checkpoint's {threads} threads (bit for bit), not {now}"
            else:
                note = (f"this run computes with {now} threads, the checkpoint's run with {threads}: it continues, "
                        "but not bit for bit as that run would have")
            if self.rank == 0 and self.progress:
                print(f"note: {note}", file=sys.stderr)
        if same and self.rank == 0:   # what a kill between the commit's renames left behind
            self._write_history()
            if self.exported_at == self.step and "metrics" in ck:
                self.task.export(ck, self.out, json.loads(ck["metrics"]))

    # -- data -----------------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of an epoch (corpus line indices), in an order fixed by the seed."""
        if self._batches[0] == (epoch, self.tc):
            return self._batches[1]
        rng = np.random.default_rng([self.tc.seed, epoch])
        pick = getattr(self.task, "epoch_lines", None)   # optional: a task that mixes sources (CorpusTask)
        use = pick(rng) if pick else np.arange(len(self.task.lines))
        lines, size = self.task.lines[use], self.tc.batch_size
        batches = [lines[b] for b in bucket_batches(self.task.lengths[use], size, rng)]
        if self.task.drop_last:
            batches = [b for b in batches if len(b) == size] or batches
        if self.world > 1:  # every rank takes the same number of batches
            batches = batches[:len(batches) - len(batches) % self.world] or batches[:1] * self.world
            batches = batches[self.rank::self.world]
        self._batches = ((epoch, self.tc), batches)
        return batches

    def next_batch(self) -> np.ndarray:
        batches = self.epoch_batches(self.epoch)
        if self.batch_in_epoch >= len(batches):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            batches = self.epoch_batches(self.epoch)
        self.batch_in_epoch += 1
        return batches[self.batch_in_epoch - 1]

    # -- the loop -------------------------------------------------------------------------------
    def run(self, max_steps: int | None = None, max_minutes: float | None = None) -> list[dict]:
        """Train to step ``max_steps`` (default: the schedule's length) or for ``max_minutes``;
        returns the history (also written to ``history.json``). Holds the folder's lock meanwhile."""
        self._claim()
        try:
            return self._run(max_steps, max_minutes)
        finally:
            self.release()

    def _run(self, max_steps: int | None, max_minutes: float | None) -> list[dict]:
        from torch.optim.lr_scheduler import LambdaLR
        from tqdm import tqdm

        if self.step == 0:
            torch.manual_seed(self.tc.seed + self.rank)
        objective = _Objective(self.task, self.model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            objective = DistributedDataParallel(objective)
        tc = self.tc
        for g in self.opt.param_groups:  # the schedule is rebuilt from the step, never restored
            g["initial_lr"] = tc.lr
        schedule = LambdaLR(self.opt, lambda s: lr_factor(s, tc), last_epoch=self.step - 1)
        stop_at = max_steps or tc.max_steps
        t0 = window_t = time.time()
        window_steps, bad, loss, rate = 0, 0, float("nan"), 0.0
        bar = tqdm(total=stop_at, initial=self.step, disable=not self.progress or self.rank != 0,
                   unit="step", dynamic_ncols=True, desc=self.task.name)
        with torch.enable_grad(), bar:  # load_model() switches gradients off process-wide
            while self.step < stop_at:
                if max_minutes is not None and time.time() - t0 > max_minutes * 60:
                    break
                step_loss = partial(objective, self.next_batch(), self.step, tc)
                result = train_step(objective, self.opt, step_loss, tc.clip, use_bf16(tc.bf16))
                if result is None:
                    bad += 1
                    self.skipped += 1
                    if bad >= tc.max_bad_steps:
                        raise HandsynthError(self._diverged(bad))
                    continue
                bad = 0
                schedule.step()
                self.step += 1
                loss, pen_steps = result
                window_steps += pen_steps * self.world
                rate = window_steps / max(time.time() - window_t, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", pen_steps_s=f"{rate:,.0f}", lr=f"{schedule.get_last_lr()[0]:.1e}")
                bar.update(1)
                if time.time() - window_t > 60:
                    window_t, window_steps = time.time(), 0
                if self.step % tc.eval_every == 0:
                    self._evaluate(t0, loss, rate)
        if self.step != self._saved_at:
            self._evaluate(t0, loss, rate)
        if self.rank == 0:
            self._write_history()
        return self.history

    def _evaluate(self, t0: float, loss: float, rate: float) -> None:
        """The task's evaluation, a history record, the checkpoint."""
        metrics = self.task.evaluate(self)
        rec = {"step": self.step, "epoch": self.epoch, "minutes": round((time.time() - t0) / 60, 2),
               **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
               "train_loss": round(loss, 4), "pen_steps_per_s": round(rate), "skipped": self.skipped}
        if self.world > 1:  # every rank must hold the same weights
            rec["rank_checksums"] = self._checksums()
        self.history.append(rec)
        if self.rank == 0 and self.progress:
            from tqdm import tqdm
            tqdm.write(json.dumps(rec))
        self.save(metrics)
        self._saved_at = self.step

    def _checksums(self) -> list[float]:
        import torch.distributed as dist

        total = torch.tensor([sum(float(p.double().sum()) for p in self.model.parameters())], dtype=torch.float64)
        sums = [torch.zeros_like(total) for _ in range(self.world)]
        dist.all_gather(sums, total)
        return [float(s) for s in sums]

    def _diverged(self, bad: int) -> str:
        path = self.out / CHECKPOINT
        last = f"the last good checkpoint is {path}" if path.exists() else "no checkpoint was written yet"
        return (f"{self.task.name} training diverged: {bad} steps in a row had a non-finite loss or gradient "
                f"(step {self.step}); {last}; try a lower --lr")


class CorpusTask:
    """What the tasks that train on a ``data.corpus.Corpus`` share: its alphabet and offset
    statistics, the training lines up to a length, and those parts of a checkpoint. A subclass
    sets ``model`` and ``lines`` and writes ``loss``, ``evaluate`` and ``export``."""

    name = "handsynth"
    drop_last = False

    def __init__(self, corpus, config_name: str):
        self.corpus, self.config_name = corpus, config_name
        self.alphabet = corpus.alphabet()
        self.mean, self.std = corpus.offset_stats()
        self.model: nn.Module
        self.lines: np.ndarray
        self.share = LoopConfig.unipen_share   # the UNIPEN share of an epoch (a subclass sets its config's)

    def warm_start(self, init: dict) -> None:
        """Take a trained file's (``checkpoint.read``) offset statistics, and its alphabet grown
        to the corpus's characters, for a warm start (its network is then built to that size and
        ``adopt``s the file's weights)."""
        self.alphabet = self.corpus.alphabet(keep=init["alphabet"])
        self.mean = np.array(init["offset_mean"], np.float32)
        self.std = np.array(init["offset_std"], np.float32)

    def epoch_lines(self, rng: np.random.Generator) -> np.ndarray:
        """Which of ``lines`` an epoch uses: every IAM-OnDB line, and UNIPEN lines drawn afresh
        each epoch so they make ``share`` of it (repeated if UNIPEN has too few); a share of 0
        leaves UNIPEN out, and a corpus of one source is used whole."""
        from_unipen = self.corpus.unipen()[self.lines]
        up, other = np.flatnonzero(from_unipen), np.flatnonzero(~from_unipen)
        if not len(up) or not len(other) or not 0 < self.share < 1:
            return np.arange(len(self.lines)) if self.share > 0 or not len(other) else other
        n = int(round(len(other) * self.share / (1 - self.share)))
        return np.concatenate([other, rng.choice(up, n, replace=n > len(up))])

    def train_lines(self, max_len: int, keep=lambda i: True) -> np.ndarray:
        """The train split's lines of at most ``max_len`` pen steps (and ``keep(i)``)."""
        return np.array([i for i in self.corpus.indices("train")
                         if len(self.corpus.offsets[i]) <= max_len and keep(i)], dtype=np.int64)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(self.corpus.offsets[i]) for i in self.lines])

    def state(self) -> dict:
        return {"config": self.model.config.to_dict(), "config_name": self.config_name,
                "alphabet": self.alphabet.chars, "offset_mean": self.mean.tolist(),
                "offset_std": self.std.tolist(), "norm": dataclasses.asdict(self.corpus.norm)}

    def read(self, path: Path) -> dict:
        return checkpoint.read_training(path, self.alphabet.chars, self.model.config.to_dict(), self.name)

    def restore(self, ck: dict) -> None:
        self.mean = np.array(ck["offset_mean"], np.float32)
        self.std = np.array(ck["offset_std"], np.float32)

    def exports(self, out: Path, metrics: dict) -> bool:
        return True


class BestExportTask(CorpusTask):
    """A corpus task whose export, ``export_name``, is the best so far by the validation metric
    ``metric`` (lower is better unless ``higher_is_better``): written whenever the metric improves
    on ``best``, and always when it is NaN (nothing to validate on) or no export exists yet. Its
    checkpoints are of kind ``kind``, hold the best score and list the training forms and lines;
    its model standardises with the offset statistics. A subclass also sets ``train_forms``."""

    kind: str
    metric: str
    export_name: str
    higher_is_better = False
    best = math.inf               # the score to beat before the first evaluation

    def state(self) -> dict:
        return {**super().state(), "kind": self.kind, "best": self.best, "train_forms": self.train_forms,
                "train_lines": len(self.lines)}

    def read(self, path: Path) -> dict:
        ck = super().read(path)
        if ck.get("kind") != self.kind:
            raise HandsynthError(f"{path}: not a {self.name} training checkpoint")
        return ck

    def restore(self, ck: dict) -> None:
        super().restore(ck)
        self.model.mean, self.model.std = self.mean, self.std
        self.best = ck["best"]

    def exports(self, out: Path, metrics: dict) -> bool:
        v = metrics[self.metric]
        if math.isnan(v):
            return True
        improved = v > self.best if self.higher_is_better else v < self.best
        if improved:
            self.best = v
        return improved or not (out / self.export_name).exists()


def start_or_resume(new_loop, out, resume=False, schedule_steps: int | None = None, max_steps: int | None = None,
                    max_minutes: float | None = None, refuse_existing: str | None = None) -> list[dict]:
    """Build a run with ``new_loop() -> Loop`` and ``run(max_steps, max_minutes)`` it; returns the
    history. ``resume``: True (``out/checkpoint.pt``) or a checkpoint path to continue from, the
    schedule then ``schedule_steps`` long where given (else the checkpoint's). Without ``resume``,
    an existing ``out/checkpoint.pt`` is refused (before anything is built) where
    ``refuse_existing`` names the network, and overwritten where it is None."""
    out = Path(out)
    if refuse_existing and not resume and (out / CHECKPOINT).exists():
        raise HandsynthError(f"{out} already holds a {refuse_existing} checkpoint: pass --resume to continue it, "
                             "or choose another --out")
    # the cores, never the load (the same seed, the same weights); ranks on one machine share them
    configure_threads("train", workers=int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1))
    loop = new_loop()
    if resume:
        loop.resume(out / CHECKPOINT if resume is True else Path(resume))
        if schedule_steps:  # a deliberate change of the schedule's length on resume
            loop.tc = dataclasses.replace(loop.tc, max_steps=schedule_steps)
    return loop.run(max_steps, max_minutes)
