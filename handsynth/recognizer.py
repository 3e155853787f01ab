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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .alphabet import Alphabet
from .errors import HandsynthError
from .measures import cer
from .loop import BestExportTask, Loop, LoopConfig, checked_share, start_or_resume

DEFAULT_RECOGNIZER = Path(__file__).with_name("weights") / "recognizer.pt"
FEATURES = 4


class StridedConfig:
    """For a frozen config dataclass with a stack of convolutions (``kernel``, a ``strides`` tuple;
    the style encoder's too): its dict form (``strides`` as a list) and the lengths after the stack."""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["strides"] = list(self.strides)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**{**d, "strides": tuple(d["strides"])})

    def conv_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Sequence lengths (B,) after the convolutions (padding ``kernel // 2``), at least 1."""
        k, p = self.kernel, self.kernel // 2
        for s in self.strides:
            lengths = torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1
        return lengths.clamp(min=1)


@dataclass(frozen=True)
class RecognizerConfig(StridedConfig):
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


@dataclass(frozen=True)
class RecognizerTrainConfig(LoopConfig):
    """The recogniser's training: the loop's fields with its own defaults, plus augmentation and
    the validation lines read at each evaluation."""
    lr: float = 2e-3              # peak of the cosine schedule
    max_steps: int = 12000        # length of the schedule
    clip: float = 5.0             # gradient norm clipping
    max_len: int = 1000           # longer lines are left out of training
    augment: bool = True          # random scale and slant per training line
    val_lines: int = 300          # validation lines read at each evaluation

    def warmup_steps(self) -> int:
        return min(self.lr_warmup, self.max_steps // 5)  # short runs (tests) warm up for a fifth


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
    x = np.zeros((len(feats), T, feats[0].shape[1]), np.float32)
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
        return self.config.conv_lengths(lengths)

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

    def adopt(self, state: dict, old_chars: str) -> None:
        """Load the weights ``state`` of a recogniser of the same size that read the alphabet
        ``old_chars`` (warm start on a grown alphabet): only the output layer depends on it; each
        known character's row moves to its new code, a new character's row starts at zero
        weight with the lowest known bias (rarely emitted until trained)."""
        old_of = torch.from_numpy(self.alphabet.codes_in(old_chars))
        state = {k: v.float() for k, v in state.items()}
        known = (old_of >= 0)[:, None]
        W, b = state["out.weight"], state["out.bias"]
        state["out.weight"] = torch.where(known, W[old_of.clamp(min=0)], torch.zeros(1, W.shape[1]))
        state["out.bias"] = torch.where(known[:, 0], b[old_of.clamp(min=0)], b[1:].min())
        self.load_state_dict(state)

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


class Reader:
    """A recogniser as the sampler's proofreading pass uses it (``sampling.proofread``):
    ``reader(offsets list) -> readings``; ``chars``: the characters it can read (a line with
    others is not proofread)."""

    def __init__(self, rec: Recognizer):
        self.rec = rec
        self.chars = frozenset(rec.alphabet.chars)

    def __call__(self, offsets: list) -> list[str]:
        return recognize(self.rec, offsets)


# checkpoints -------------------------------------------------------------------------------------
def load_network(path: Path, what: str, command: str, build) -> nn.Module:
    """The network (in eval mode) that ``build(ck)`` makes from the file ``path`` (a training
    checkpoint or an export), with its weights in float32; ``what`` names it in the errors and
    ``handsynth {command}`` trains one (the style encoder's loader too)."""
    if not path.exists():
        raise HandsynthError(f"{path}: no such {what} file (train one with `handsynth {command}`)")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        net = build(ck)
        net.load_state_dict({k: v.float() for k, v in ck["model"].items()})
    except Exception as e:
        raise HandsynthError(f"{path}: not a handsynth {what} file ({e.__class__.__name__})") from None
    return net.eval()


def load_recognizer(path) -> Recognizer:
    """A recogniser (in eval mode) from a checkpoint or an exported ``recognizer.pt``."""
    def build(ck):
        meta = {k: ck[k] for k in ("step", "validation_cer", "train_forms", "train_lines") if k in ck}
        return Recognizer(RecognizerConfig.from_dict(ck["config"]), Alphabet(ck["alphabet"]), ck["offset_mean"],
                          ck["offset_std"], meta)
    return load_network(Path(path), "recogniser", "recognizer", build)


class RecognizerTask(BestExportTask):
    """Training the recogniser on the train split's transcribed lines: loss = CTC on augmented
    features; evaluation = CER on up to ``val_lines`` validation lines; export =
    ``recognizer.pt`` whenever the validation CER improves (always when there is none)."""

    name, kind, metric, export_name = "recogniser", "recognizer", "validation_cer", "recognizer.pt"

    def __init__(self, corpus, config_name: str, tc: RecognizerTrainConfig, init: dict | None = None):
        """``init``: a recogniser file's contents (``checkpoint.read``) to warm-start from: its
        size and offset statistics are kept, its alphabet grows to the corpus's, and the forms it
        was trained on stay listed as seen."""
        super().__init__(corpus, config_name)
        torch.manual_seed(tc.seed)  # the initial weights follow the seed
        if init is None:
            config = RecognizerConfig.preset(config_name, self.alphabet.size)
        else:
            self.warm_start(init)
            config = RecognizerConfig.from_dict({**init["config"], "alphabet_size": self.alphabet.size})
        self.model = Recognizer(config, self.alphabet, self.mean, self.std)
        self.share = tc.unipen_share
        if init is not None:
            self.model.adopt(init["model"], init["alphabet"])
        self.lines = self.train_lines(tc.max_len, keep=lambda i: bool(corpus.texts[i]))
        if len(self.lines) == 0:
            raise HandsynthError("no training lines for the recogniser (none in the train split)")
        val = list(corpus.indices("validation"))
        self.val_idx = [val[k] for k in np.random.default_rng(0).permutation(len(val))[:tc.val_lines]]
        seen = set(init.get("train_forms", ())) if init else set()   # a warm start's forms stay seen
        self.train_forms = sorted({corpus.form_ids[i] for i in self.lines} | seen)
        self.ctc = nn.CTCLoss(blank=0, reduction="mean", zero_infinity=True)

    def loss(self, model, idx, step: int, tc: RecognizerTrainConfig):
        """Mean CTC loss of the lines ``idx``, each augmented by a draw fixed by (seed, step)."""
        rng = np.random.default_rng([tc.seed, step, 1]) if tc.augment else None
        x, lengths = self.model.featurize([self.corpus.offsets[i] for i in idx], rng)
        targets = [torch.from_numpy(self.alphabet.encode(self.corpus.texts[i])) for i in idx]
        logp, out_len = model(x, lengths)
        with torch.autocast("cpu", enabled=False):  # CTC in float32
            loss = self.ctc(logp.float().transpose(0, 1), torch.cat(targets), out_len,
                            torch.tensor([len(t) for t in targets]))
        return loss, lengths.sum()

    def evaluate(self, loop: Loop) -> dict:
        if not self.val_idx:
            return {"validation_cer": float("nan")}
        hyps = recognize(self.model, [self.corpus.offsets[i] for i in self.val_idx])
        return {"validation_cer": cer(hyps, [self.corpus.texts[i] for i in self.val_idx])}

    def export(self, ckpt: dict, out: Path, metrics: dict) -> None:
        """The shippable part: float16 weights + config, alphabet, statistics, training forms."""
        keys = ("kind", "config", "alphabet", "offset_mean", "offset_std", "norm", "step", "train_forms",
                "train_lines", "validation_cer")
        checkpoint.export({**ckpt, "validation_cer": metrics["validation_cer"]}, out / self.export_name, keys)


def train_recognizer(corpus, out_dir, config: str = "full", max_steps: int | None = None,
                     max_minutes: float | None = None, batch_size: int = RecognizerTrainConfig.batch_size,
                     lr: float = RecognizerTrainConfig.lr, seed: int = RecognizerTrainConfig.seed,
                     eval_every: int = RecognizerTrainConfig.eval_every, bf16: bool | None = RecognizerTrainConfig.bf16,
                     augment: bool = RecognizerTrainConfig.augment, resume=False,
                     schedule_steps: int | None = None, progress: bool = True, init=None,
                     unipen_share: float = RecognizerTrainConfig.unipen_share) -> list[dict]:
    """Train the recogniser on ``corpus.indices("train")`` lines only. Writes ``out_dir/checkpoint.pt``
    (resumable), ``out_dir/recognizer.pt`` (float16, the best validation CER so far) and
    ``history.json``. The run stops at step ``max_steps`` or after ``max_minutes``; the cosine
    schedule is ``schedule_steps`` long (default: ``max_steps``, or 12000; on resume, the
    checkpoint's unless ``schedule_steps`` is given). ``resume``: True (``out_dir/checkpoint.pt``)
    or a checkpoint path. ``init``: warm-start from a recogniser file (``"shipped"``: the shipped
    one) instead of random weights (ignored on resume). ``unipen_share``: of each epoch's lines,
    where the corpus mixes in UNIPEN (``CorpusTask.epoch_lines``). Returns the history."""
    tc = RecognizerTrainConfig(batch_size=batch_size, lr=lr, seed=seed, eval_every=eval_every, bf16=bf16,
                               augment=augment, unipen_share=checked_share(unipen_share),
                               max_steps=schedule_steps or max_steps or RecognizerTrainConfig.max_steps)
    if init and not resume:
        init = checkpoint.read(DEFAULT_RECOGNIZER if init == "shipped" else init, "recogniser")
        if init.get("kind") != RecognizerTask.kind:
            raise HandsynthError("--init: not a recogniser file")
    else:
        init = None
    return start_or_resume(lambda: Loop(RecognizerTask(corpus, config, tc, init), tc, out_dir, progress), out_dir,
                           resume, schedule_steps, max_steps, max_minutes, refuse_existing=RecognizerTask.name)
