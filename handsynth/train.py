"""Training: the reference design's recipe (Adam, cosine schedule with linear warm-up peaking at
1e-3, batch 32, lines up to 700 steps bucketed by length, gradient norm clipped at 10) plus an
attention warm-up, with atomic checkpoints that resume exactly.

Attention warm-up: for the first ``attention_warmup`` steps the window position kappa is a blend
of the network's own kappa and a constant-speed guide that walks each line's text in step with
its pen (``kappa_t = t * U / T``); the guide's share falls linearly from 1 to 0. The LSTM learns
to write characters while the window already sits roughly on the right one, and the network's
own kappa takes over gradually instead of having to find the alignment from scratch.
Measured (small config, batch 16, seed 1, validation NLL per line at steps 100 / 200): without it
684.5 / 236.6, with a 300-step guide 690.2 / 243.9; the window learns to walk the text on its own
within a few hundred steps (attention plots), so the guide is off by default (``--attention-warmup``).

The loop itself (schedule, batching, checkpoints, resume, DDP, progress) is ``loop.py``; this
module is what is particular to a synthesis network of any family (``SynthesisTask``) and the
``handsynth train`` command. Distributed: ``torchrun --nproc_per_node N -m handsynth train ...``
runs data-parallel (gloo on CPU, nccl on GPU); each rank takes every N-th batch, rank 0 writes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .data.corpus import Batch, Corpus, make_batch
from .errors import HandsynthError
from .evaluate import training_snapshot, validation_nll
from .hardware import use_bf16
from .loop import CorpusTask, Loop, LoopConfig, checked_share, start_or_resume
from .strokes import Normalization, standardize


@dataclass(frozen=True)
class TrainConfig(LoopConfig):
    """The synthesis network's training (the loop's defaults are the reference recipe's)."""
    attention_warmup: int = 0     # steps over which the guided window hands over (0: off; see above)
    attention_floor: float = 0.0  # the guide's share never falls below this (a penalty family only: the transformer's)


class SynthesisTask(CorpusTask):
    """Training a synthesis network of any family (``arch``) on a corpus: lines up to
    ``max_len`` pen steps, full batches only; loss = the family's NLL per pen step; evaluation =
    validation NLL per line plus a sample line and its attention plot; export = ``model.pt``."""

    name = "synthesis"
    drop_last = True

    def __init__(self, corpus: Corpus, config_name: str, tc: TrainConfig, sample_text: str = "handwriting synthesis",
                 arch: str = checkpoint.DEFAULT_ARCH, init: dict | None = None):
        """``init``: a model file's contents (``checkpoint.read``) to warm-start from: its network
        size and offset statistics are kept, its alphabet grows to the corpus's."""
        corpus = corpus.learnable(init["alphabet"] if init else "")
        super().__init__(corpus, config_name)
        if init is not None:
            if init.get("arch", checkpoint.DEFAULT_ARCH) != arch:
                raise HandsynthError(f"--init is a {init.get('arch', checkpoint.DEFAULT_ARCH)!r} network, this run trains {arch!r}")
            self.warm_start(init)
        if not all(c in self.alphabet for c in sample_text):  # own data without those letters
            sample_text = corpus.texts[corpus.indices("train")[0]][:40].strip()
        self.sample_text = sample_text
        torch.manual_seed(tc.seed)  # the initial weights follow the seed
        if init is not None:
            self.model = checkpoint.build(arch, {**init["config"], "alphabet_size": self.alphabet.size})
            self.model.adopt(init["model"], init["alphabet"], self.alphabet.chars)
        else:
            config = checkpoint.family(arch).Config.preset(config_name, self.alphabet.size)
            fit = getattr(checkpoint.family(arch), "fit", None)   # a family fitted to the data (the transformer's tokens)
            if fit is not None:
                config = fit(config, [standardize(self.corpus.offsets[i], self.mean, self.std)
                                      for i in self.corpus.indices("train")])
            self.model = checkpoint.build(arch, config.to_dict())
        self.lines = self.train_lines(tc.max_len)
        if len(self.lines) == 0:
            raise HandsynthError("no training lines (all longer than max_len, or none in the train split)")
        self.share = tc.unipen_share

    def batch(self, idx) -> Batch:
        c = self.corpus
        return make_batch([c.offsets[i] for i in idx], [c.texts[i] for i in idx], self.alphabet, self.mean, self.std)

    def loss(self, model, idx, step: int, tc: TrainConfig):
        """NLL per pen step; the attention warm-up's share falls from 1 to ``attention_floor``
        over its steps and stays there (Tachibana et al. keep their penalty all through training)."""
        warmup = max(tc.attention_floor, 1 - step / tc.attention_warmup if tc.attention_warmup else 0.0)
        nll, count = model.loss(self.batch(idx), warmup)
        return nll / count, count

    def evaluate(self, loop: Loop) -> dict:
        """Validation NLL per line of the IAM-OnDB (and captured) lines, comparable across runs
        with and without UNIPEN, and of the UNIPEN lines apart."""
        up = self.corpus.unipen()
        val = lambda keep: validation_nll(self.model, self.corpus, self.alphabet, self.mean, self.std,  # noqa: E731
                                          loop.tc.max_len, use_bf16(loop.tc.bf16), keep=keep)
        nll = val(lambda i: not up[i])
        extra = {"validation_nll_unipen": val(lambda i: up[i])} if up.any() else {}
        if loop.rank == 0:
            try:
                training_snapshot(self.model, self.alphabet, self.mean, self.std, self.sample_text,
                                  loop.out / f"sample-{loop.step:06d}.png",
                                  loop.out / f"attention-{loop.step:06d}.png", seed=loop.tc.seed)
            except Exception as e:  # a failed picture never stops training
                print(f"warning: no sample picture at step {loop.step}: {e.__class__.__name__}: {e}")
        return {"validation_nll": nll, **extra}

    def state(self) -> dict:
        return {**super().state(), "arch": self.model.arch}

    def read(self, path: Path) -> dict:
        ck = super().read(path)
        arch = ck.get("arch", checkpoint.DEFAULT_ARCH)  # files from before there were families: graves
        if arch != self.model.arch:
            raise HandsynthError(f"{path}: the checkpoint is a {arch!r} network, this run trains {self.model.arch!r}")
        return ck

    def export(self, ckpt: dict, out: Path, metrics: dict) -> None:
        checkpoint.export(ckpt, out / "model.pt")


def trainer(corpus: Corpus, out, config_name: str = "full", tc: TrainConfig = TrainConfig(),
            sample_text: str = "handwriting synthesis", progress: bool = True,
            arch: str = checkpoint.DEFAULT_ARCH, init: dict | None = None) -> Loop:
    """A training loop for a synthesis network (``run()`` it, or ``resume(path)`` first)."""
    return Loop(SynthesisTask(corpus, config_name, tc, sample_text, arch, init), tc, out, progress)


def read_init(init) -> dict:
    """``--init``: a shipped model's name or a model file -> its contents."""
    from . import model_file
    return checkpoint.read(model_file(init)[0], "handsynth model")


def train(iam=None, samples=(), out="runs/train", config="full", resume=False, max_steps=None,
          max_minutes=None, batch_size=TrainConfig.batch_size, lr=TrainConfig.lr, seed=TrainConfig.seed,
          eval_every=TrainConfig.eval_every, attention_warmup=TrainConfig.attention_warmup,
          attention_floor=TrainConfig.attention_floor,
          schedule_steps=None, bf16=TrainConfig.bf16, cache_dir=None, progress=True,
          arch=checkpoint.DEFAULT_ARCH, unipen=None, unipen_share=TrainConfig.unipen_share, init=None,
          lr_warmup=TrainConfig.lr_warmup, unipen_characters=()) -> list[dict]:
    """The ``handsynth train`` command as a function: writes ``out/checkpoint.pt`` (resumable),
    ``out/model.pt`` (float16, the latest) and ``history.json``; returns the history. ``init``:
    warm-start from a model (a shipped name or a file) instead of random weights.
    ``unipen_characters``: UNIPEN's isolated digits ("1a") and/or capitals ("1b") as lines too. The same
    ``seed`` gives the same weights on a machine: the seed sets the initial weights (before the
    network is built), the data order (``loop.Loop.epoch_batches``) and the loop's random state,
    and the thread count is the machine's cores, never its load (``hardware.configure_threads``;
    the checkpoint records it, and a resume uses it)."""
    from .data.corpus import load_corpus

    checked_share(unipen_share)
    if not 0 <= attention_floor < 1:
        raise HandsynthError(f"--attention-floor {attention_floor} is out of range: use 0 to below 1")
    if attention_floor and not checkpoint.family(arch).guide_stays:
        raise HandsynthError(f"--attention-floor is not for the {arch!r} family: its guide blends window "
                             "positions and must hand over to the network's own")
    init = read_init(init) if init and not resume else None

    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    if distributed:  # start_or_resume shares the cores between the ranks (hardware.configure_threads)
        import torch.distributed as dist
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        corpus = load_corpus(iam, samples, Normalization(), cache_dir, progress=progress, unipen=unipen,
                             unipen_characters=unipen_characters)
        total = schedule_steps or max_steps or TrainConfig.max_steps
        tc = TrainConfig(batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every, max_steps=total,
                         attention_warmup=attention_warmup, attention_floor=attention_floor, bf16=bf16, unipen_share=unipen_share, lr_warmup=lr_warmup)
        return start_or_resume(lambda: trainer(corpus, out, config, tc, progress=progress, arch=arch, init=init), out,
                               resume, schedule_steps, max_steps, max_minutes)  # overwrites an existing run
    finally:
        if distributed:
            import torch.distributed as dist
            try:
                dist.barrier()  # rank 0 may still be writing the checkpoint
            finally:
                dist.destroy_process_group()
