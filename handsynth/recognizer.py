"""The legibility judge: a small online handwriting recogniser over pen offsets.

``offsets (N, 3) -> features (N, 4) -> 1-D convolutions (one with stride 2) -> BiLSTM -> linear
-> CTC`` over the corpus alphabet. The blank is code 0 and character ``i`` of the alphabet is code
``i + 1``, exactly the :class:`~handsynth.alphabet.Alphabet` encoding (its padding index doubles
as the blank). Decoding is greedy: the best code per frame, repeats collapsed, blanks dropped.

It is trained on the training forms of the corpus only (``corpus.indices("train")``) and its
checkpoint lists those forms, so ``handsynth eval`` can check that it never saw a held-out form.

Features per pen step (all in the corpus's normalised x-height units):
  - ``dx, dy`` standardised with the training lines' offset statistics (the first row, the
    arbitrary start position, is zeroed);
  - ``end_of_stroke``;
  - the height of the pen above the line's median height (``cumsum(dy) - median``), which tells
    an ``a`` from a ``g`` better than the offsets alone.
Training augments each line with a random horizontal and vertical scale and a slant, so the judge
reads other hands (and generated lines) rather than only the training writers.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .alphabet import Alphabet
from .errors import HandsynthError
from .train import atomic_save, read_checkpoint, restore_loop_state

DEFAULT_RECOGNIZER = Path(__file__).with_name("weights") / "recognizer.pt"
FEATURES = 4


@dataclass(frozen=True)
class RecognizerConfig:
    alphabet_size: int = 82        # characters + the blank 0 (set from the corpus)
    conv_channels: int = 128
    kernel: int = 5
    strides: tuple = (1, 2, 2)     # one convolution per entry; the product (4) shortens the sequence
    hidden: int = 192              # per direction
    layers: int = 2
    dropout: float = 0.2

    @classmethod
    def preset(cls, name: str, alphabet_size: int) -> "RecognizerConfig":
        sizes = {"full": dict(),
                 "tiny": dict(conv_channels=48, kernel=5, strides=(1, 1), hidden=48, layers=1, dropout=0.0)}
        if name not in sizes:
            raise HandsynthError(f"unknown recogniser config {name!r}; choose one of {', '.join(sizes)}")
        return cls(alphabet_size=alphabet_size, **sizes[name])

    @property
    def stride(self) -> int:
        return int(np.prod(self.strides))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecognizerConfig":
        return cls(**{**d, "strides": tuple(d["strides"])})


@dataclass(frozen=True)
class RecognizerTrainConfig:
    batch_size: int = 32
    lr: float = 2e-3              # peak of the cosine schedule
    lr_warmup: int = 200
    min_lr_ratio: float = 0.05
    max_steps: int = 12000        # length of the schedule
    clip: float = 5.0             # gradient norm clipping
    max_len: int = 1000           # longer lines are left out of training
    bf16: bool = True             # bfloat16 autocast for the matmuls (CTC in float32)
    augment: bool = True          # random scale and slant per training line
    seed: int = 0
    eval_every: int = 250         # steps between validation CER and checkpoint
    val_lines: int = 300          # validation lines read at each evaluation


# features --------------------------------------------------------------------------------------
def augment(off: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random horizontal and vertical scale (about +-10%) and slant (shear up to +-0.3)."""
    sx, sy = np.exp(rng.normal(0, 0.1, 2))
    shear = rng.uniform(-0.3, 0.3)
    out = off.astype(np.float32, copy=True)
    out[:, 0] = sx * (off[:, 0] + shear * off[:, 1])
    out[:, 1] = sy * off[:, 1]
    return out


def features(off: np.ndarray, mean, std) -> np.ndarray:
    """(N, 3) normalised offsets -> (N, 4) recogniser inputs (see the module docstring)."""
    off = np.asarray(off, np.float32)
    d = off[:, :2].copy()
    if len(d):
        d[0] = 0.0
    y = np.cumsum(d[:, 1])
    f = np.empty((len(off), FEATURES), np.float32)
    f[:, :2] = (d - mean) / std
    if len(d):
        f[0, :2] = 0.0
    f[:, 2] = off[:, 2] > 0.5
    f[:, 3] = y - (np.median(y) if len(y) else 0.0)
    return f


def pad_features(feats: list) -> tuple[torch.Tensor, torch.Tensor]:
    """List of (N_i, F) arrays -> (B, T, F) zero-padded tensor and (B,) lengths."""
    T = max(max(len(f) for f in feats), 1)
    x = np.zeros((len(feats), T, FEATURES), np.float32)
    for b, f in enumerate(feats):
        x[b, :len(f)] = f
    return torch.from_numpy(x), torch.tensor([len(f) for f in feats], dtype=torch.long)


# the network -----------------------------------------------------------------------------------
class Recognizer(nn.Module):
    """Conv1d stack -> BiLSTM -> per-frame scores over ``alphabet_size`` codes (0 = blank). Holds
    its alphabet and the offset statistics it standardises with, so a checkpoint alone is usable."""

    def __init__(self, config: RecognizerConfig, alphabet: Alphabet, mean, std, meta: dict | None = None):
        super().__init__()
        if alphabet.size != config.alphabet_size:
            raise ValueError(f"alphabet has {alphabet.size} codes, config expects {config.alphabet_size}")
        self.config = cfg = config
        self.alphabet = alphabet
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.meta = meta or {}
        convs, c_in = [], FEATURES
        for s in cfg.strides:
            convs.append(nn.Conv1d(c_in, cfg.conv_channels, cfg.kernel, stride=s, padding=cfg.kernel // 2))
            c_in = cfg.conv_channels
        self.convs = nn.ModuleList(convs)
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.conv_channels, cfg.hidden, cfg.layers, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.out = nn.Linear(2 * cfg.hidden, cfg.alphabet_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        k, p = self.config.kernel, self.config.kernel // 2
        for s in self.config.strides:
            lengths = torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1
        return lengths.clamp(min=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, 4), lengths (B,) -> (log-probabilities (B, T', C) in float32, lengths (B,))."""
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = torch.relu(conv(h))
        h = self.drop(h.transpose(1, 2))
        out_len = self.output_lengths(lengths).clamp(max=h.shape[1])
        packed = nn.utils.rnn.pack_padded_sequence(h, out_len.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=out_len.max().item())
        logits = self.out(self.drop(h))
        return torch.log_softmax(logits.float(), dim=-1), out_len

    def featurize(self, offsets: list, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [features(augment(o, rng) if rng is not None else o, self.mean, self.std) for o in offsets]
        return pad_features(feats)


# decoding and scoring ------------------------------------------------------------------------------
def greedy_decode(scores, lengths=None) -> list[list[int]]:
    """Best code per frame, repeats collapsed, blanks (0) dropped. ``scores`` (B, T, C) logits or
    log-probabilities (tensor or array); ``lengths`` the valid frames per row (default: all)."""
    best = torch.as_tensor(scores).argmax(-1).cpu().numpy()
    lengths = [best.shape[1]] * len(best) if lengths is None else [int(n) for n in lengths]
    out = []
    for row, n in zip(best, lengths):
        row = row[:n]
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append([int(c) for c in row[keep] if c != 0])
    return out


@torch.no_grad()
def recognize(rec: Recognizer, offsets: list, batch_size: int = 32) -> list[str]:
    """Read each line of (N, 3) normalised offsets; returns the transcriptions, in order."""
    was_training = rec.training
    rec.eval()
    result = [""] * len(offsets)
    order = sorted((i for i in range(len(offsets)) if len(offsets[i])), key=lambda i: len(offsets[i]))
    try:
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            x, lengths = rec.featurize([offsets[i] for i in chunk])
            logp, out_len = rec(x, lengths)
            for i, codes in zip(chunk, greedy_decode(logp, out_len)):
                result[i] = rec.alphabet.decode(codes)
    finally:
        rec.train(was_training)
    return result


def edit_distance(a, b) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each costing 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(hyps: list[str], refs: list[str]) -> float:
    """Character error rate: total edit distance over total reference characters."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    total = sum(len(r) for r in refs)
    edits = sum(edit_distance(h, r) for h, r in zip(hyps, refs))
    if total == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / total


# checkpoints -------------------------------------------------------------------------------------
def load_recognizer(path) -> Recognizer:
    """A recogniser (in eval mode) from a checkpoint or an exported ``recognizer.pt``."""
    path = Path(path)
    if not path.exists():
        raise HandsynthError(f"{path}: no such recogniser file (train one with `handsynth recognizer`)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        config = RecognizerConfig.from_dict(ck["config"])
        meta = {k: ck[k] for k in ("step", "validation_cer", "train_forms", "train_lines") if k in ck}
        rec = Recognizer(config, Alphabet(ck["alphabet"]), ck["offset_mean"], ck["offset_std"], meta)
        rec.load_state_dict({k: v.float() for k, v in ck["model"].items()})
    except Exception as e:
        raise HandsynthError(f"{path}: not a handsynth recogniser file ({e.__class__.__name__})") from None
    rec.eval()
    return rec


def _lr_at(step: int, tc: RecognizerTrainConfig) -> float:
    warmup = min(tc.lr_warmup, tc.max_steps // 5)  # short runs (tests) warm up for a fifth
    if step < warmup:
        return tc.lr * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, tc.max_steps - warmup))
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


class _Run:
    """The state of one training run: model, optimiser, data position; saved and resumed whole."""

    def __init__(self, corpus, out: Path, config_name: str, tc: RecognizerTrainConfig):
        self.corpus, self.out, self.config_name, self.tc = corpus, out, config_name, tc
        self.alphabet = corpus.alphabet()
        self.mean, self.std = corpus.offset_stats()
        torch.manual_seed(tc.seed)  # the initial weights follow the seed
        self.model = Recognizer(RecognizerConfig.preset(config_name, self.alphabet.size), self.alphabet,
                                self.mean, self.std)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=tc.lr)
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best = float("inf")
        self.history: list[dict] = []
        train = corpus.indices("train")
        self.train_idx = np.array([i for i in train if len(corpus.offsets[i]) <= tc.max_len
                                   and corpus.texts[i]], dtype=np.int64)
        if len(self.train_idx) == 0:
            raise HandsynthError("no training lines for the recogniser (none in the train split)")
        val = list(corpus.indices("validation"))
        self.val_idx = [val[k] for k in np.random.default_rng(0).permutation(len(val))[:tc.val_lines]]
        self.train_forms = sorted({corpus.form_ids[i] for i in self.train_idx})

    def checkpoint(self) -> dict:
        return {"kind": "recognizer", "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best": self.best, "rng": torch.get_rng_state(), "config": self.model.config.to_dict(),
                "config_name": self.config_name, "train_config": dataclasses.asdict(self.tc),
                "alphabet": self.alphabet.chars, "offset_mean": self.mean.tolist(),
                "offset_std": self.std.tolist(), "norm": dataclasses.asdict(self.corpus.norm),
                "train_forms": self.train_forms, "train_lines": int(len(self.train_idx)),
                "history": json.dumps(self.history)}

    def export(self, ckpt: dict, validation_cer: float) -> None:
        """The shippable part: float16 weights + config, alphabet, statistics, training forms."""
        keep = {k: ckpt[k] for k in ("kind", "config", "alphabet", "offset_mean", "offset_std", "norm", "step",
                                     "train_forms", "train_lines")}
        keep["validation_cer"] = validation_cer
        keep["model"] = {k: v.to(torch.float16) for k, v in ckpt["model"].items()}
        atomic_save(keep, self.out / "recognizer.pt")

    def save(self, validation_cer: float) -> None:
        ckpt = self.checkpoint()
        atomic_save(ckpt, self.out / "checkpoint.pt")
        no_validation = math.isnan(validation_cer)  # no validation lines: export the latest
        if no_validation or validation_cer < self.best or not (self.out / "recognizer.pt").exists():
            self.best = self.best if no_validation else min(self.best, validation_cer)
            self.export(ckpt, validation_cer)

    def resume(self, path: Path) -> None:
        ck = read_checkpoint(path, self.alphabet.chars, self.model.config.to_dict(), "recogniser")
        if ck.get("kind") != "recognizer":
            raise HandsynthError(f"{path}: not a recogniser training checkpoint")
        restore_loop_state(self, ck)
        self.best = ck["best"]
        self.mean = self.model.mean = np.array(ck["offset_mean"], np.float32)
        self.std = self.model.std = np.array(ck["offset_std"], np.float32)
        self.tc = RecognizerTrainConfig(**ck["train_config"])

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        from .data.corpus import bucket_batches

        rng = np.random.default_rng([self.tc.seed, epoch])
        lengths = np.array([len(self.corpus.offsets[i]) for i in self.train_idx])
        return [self.train_idx[b] for b in bucket_batches(lengths, self.tc.batch_size, rng)]

    def next_batch(self) -> np.ndarray:
        batches = self.epoch_batches(self.epoch)
        if self.batch_in_epoch >= len(batches):
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            batches = self.epoch_batches(self.epoch)
        self.batch_in_epoch += 1
        return batches[self.batch_in_epoch - 1]

    def train_step(self, idx: np.ndarray, ctc: nn.CTCLoss) -> float | None:
        """One optimiser step on the lines ``idx``; None (and no update) when not finite."""
        rng = np.random.default_rng([self.tc.seed, self.step, 1]) if self.tc.augment else None
        x, lengths = self.model.featurize([self.corpus.offsets[i] for i in idx], rng)
        targets = [torch.from_numpy(self.alphabet.encode(self.corpus.texts[i])) for i in idx]
        self.model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.tc.bf16):
            logp, out_len = self.model(x, lengths)
        loss = ctc(logp.float().transpose(0, 1), torch.cat(targets), out_len,
                   torch.tensor([len(t) for t in targets]))
        self.opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.clip)
        if not torch.isfinite(norm):
            self.opt.zero_grad(set_to_none=True)
            return None
        self.opt.step()
        return loss.item()

    def validation_cer(self) -> float:
        if not self.val_idx:
            return float("nan")
        hyps = recognize(self.model, [self.corpus.offsets[i] for i in self.val_idx])
        return cer(hyps, [self.corpus.texts[i] for i in self.val_idx])

    def run(self, max_steps: int | None, max_minutes: float | None, progress: bool) -> list[dict]:
        from tqdm import tqdm

        if self.step == 0:
            torch.manual_seed(self.tc.seed)
        ctc = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)
        stop_at = max_steps or self.tc.max_steps
        t0 = time.time()
        bar = tqdm(total=stop_at, initial=self.step, disable=not progress, unit="step", dynamic_ncols=True,
                   desc="recogniser")
        last_eval, bad, loss = self.step, 0, float("nan")
        while self.step < stop_at:
            if max_minutes is not None and time.time() - t0 > max_minutes * 60:
                break
            idx = self.next_batch()
            for g in self.opt.param_groups:
                g["lr"] = _lr_at(self.step, self.tc)
            result = self.train_step(idx, ctc)
            if result is None:
                bad += 1
                if bad >= 20:
                    bar.close()
                    raise HandsynthError(f"recogniser training diverged at step {self.step}; the last good "
                                         f"checkpoint is {self.out / 'checkpoint.pt'}; try a lower --lr")
                continue
            bad, loss = 0, result
            self.step += 1
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{_lr_at(self.step, self.tc):.1e}")
            bar.update(1)
            if self.step % self.tc.eval_every == 0:
                self._evaluate(loss, t0, bar.write if progress else None)
                last_eval = self.step
        bar.close()
        if self.step != last_eval or not (self.out / "checkpoint.pt").exists():
            self._evaluate(loss, t0, print if progress else None)
        (self.out / "history.json").write_text(json.dumps(self.history, indent=1))
        return self.history

    def _evaluate(self, loss: float, t0: float, say) -> None:
        v = self.validation_cer()
        rec = {"step": self.step, "epoch": self.epoch, "minutes": round((time.time() - t0) / 60, 2),
               "train_loss": round(loss, 4), "validation_cer": round(v, 4)}
        self.history.append(rec)
        if say:
            say(json.dumps(rec))
        self.save(v)


def train_recognizer(corpus, out_dir, config: str = "full", max_steps: int | None = None,
                     max_minutes: float | None = None, batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                     eval_every: int = 250, bf16: bool = True, augment: bool = True, resume=False,
                     schedule_steps: int | None = None, progress: bool = True) -> list[dict]:
    """Train the recogniser on ``corpus.indices("train")`` lines only. Writes ``out_dir/checkpoint.pt``
    (resumable), ``out_dir/recognizer.pt`` (float16, the best validation CER so far) and
    ``history.json``. The run stops at step ``max_steps`` or after ``max_minutes``; the cosine
    schedule is ``schedule_steps`` long (default: ``max_steps``, or 12000; on resume, the
    checkpoint's unless ``schedule_steps`` is given). ``resume``: True (``out_dir/checkpoint.pt``)
    or a checkpoint path. Returns the history."""
    out = Path(out_dir)
    if not resume and (out / "checkpoint.pt").exists():
        raise HandsynthError(f"{out} already holds a recogniser checkpoint: pass --resume to continue it, "
                             "or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    tc = RecognizerTrainConfig(batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every, bf16=bf16,
                               augment=augment,
                               max_steps=schedule_steps or max_steps or RecognizerTrainConfig.max_steps)
    with torch.enable_grad():  # load_model() switches gradients off process-wide
        run = _Run(corpus, out, config, tc)
        if resume:
            run.resume(out / "checkpoint.pt" if resume is True else Path(resume))
            if schedule_steps:  # a deliberate change of the schedule's length on resume
                run.tc = dataclasses.replace(run.tc, max_steps=schedule_steps)
        return run.run(max_steps, max_minutes, progress)
