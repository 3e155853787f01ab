"""The style judge: a small contrastive encoder of a writer's hand, for writer retrieval.

``offsets (N, 3) -> features (N, 10) -> 1-D convolutions (stride 8 in all) -> BiGRU ->
attentive + mean pooling over time -> linear -> L2-normalised embedding``. Two lines by the same
hand should have a high cosine similarity whatever they say; lines by different hands a low one.

It is trained on the training forms of the corpus only (``corpus.indices("train")``; the lines
of one form are one writer's) and its checkpoint lists those forms, so ``handsynth eval`` can
check that it never saw a held-out form. Each training step draws ``forms`` forms and
``lines_per_form`` of each form's lines (from a generator seeded by (seed, step), so a resumed
run draws the same batches) and minimises the supervised-contrastive loss (Khosla et al. 2020)
with temperature ``temperature``: every line's positives are the other lines of its form, its
negatives every line of the other forms. The lines of a form say different things, so the
words do not identify the form; the hand does.

Features per pen step, in the corpus's normalised units (each line is rotated flat and scaled to
unit x-height by ``strokes.normalize_line``; the features add no per-line standardisation, so
slant, width per x-height, stroke shapes and pen-lift habits survive):
  - ``dx, dy`` standardised with the *training corpus's* offset statistics (the first row, the
    arbitrary start position, is zeroed);
  - ``end_of_stroke`` and ``pen_up`` (the move into this point is a jump with the pen lifted);
  - the height of the pen above the line's median height;
  - the direction of the move (cos, sin) and the log of its length;
  - the turn from the previous move (cos, sin of the angle; zero unless both moves are drawn).
Training crops each line to a random contiguous stretch (``crop``: at least that share of it),
never scaling or shearing it: size and slant are what the encoder should see.

Retrieval (``retrieval``): each query line is ranked against forms through a gallery of lines;
a form's score is the mean (``score="mean"``, the default) or the max cosine similarity of the
query with that form's gallery lines. A query is a hit at k when fewer than k other forms score
at least as high as its own (ties count against it). Top-k is averaged over each form's queries,
then over forms. Mean scoring is the default because it measured better: the shipped encoder
(468k parameters, 3,200 steps of 32 forms x 2 lines, 24 minutes on one CPU thread) retrieves the
98 validation forms (99 candidates, chance 1%) at top-1 57.0% / top-5 90.2% with every line as
the query in turn, 60.2% / 88.8% with each form's first line; max scoring 50.4% / 87.8% and
50.0% / 85.7%. On the 80 test forms: 66.2% / 95.2% (mean), 62.5% / 95.3% (max).

Forms are not writers: IAM-OnDB's writers each wrote several forms and the split is by form, so
a held-out form's writer may have written training forms, and two held-out forms may share a
writer (counted as a miss). Lines of different forms with the same text are not drawn together
(mean cosine -0.31 over the 10 such held-out pairs, 0.06 over all pairs of different forms).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .errors import HandsynthError
from .loop import BestExportTask, Loop, LoopConfig, start_or_resume
from .recognizer import StridedConfig, load_network, pad_features

DEFAULT_STYLE_ENCODER = Path(__file__).with_name("weights") / "style_encoder.pt"
FEATURES = 10
KIND = "style_encoder"


@dataclass(frozen=True)
class StyleEncoderConfig(StridedConfig):
    conv_channels: int = 128
    kernel: int = 5
    strides: tuple = (2, 2, 2)     # one convolution per entry; the product (8) shortens the sequence
    hidden: int = 128              # GRU units per direction
    layers: int = 1
    dim: int = 128                 # embedding size
    dropout: float = 0.1

    @classmethod
    def preset(cls, name: str) -> "StyleEncoderConfig":
        sizes = {"full": dict(),
                 "tiny": dict(conv_channels=32, kernel=5, strides=(1, 2), hidden=32, layers=1, dim=32, dropout=0.0)}
        if name not in sizes:
            raise HandsynthError(f"unknown style encoder config {name!r}; choose one of {', '.join(sizes)}")
        return cls(**sizes[name])


@dataclass(frozen=True)
class StyleEncoderTrainConfig(LoopConfig):
    """The style encoder's training: the loop's fields with its own defaults (``batch_size`` is
    ``forms * lines_per_form``, the lines of one step), plus the contrastive batch, the loss's
    temperature, the crop augmentation and which validation scores are computed."""
    batch_size: int = 64
    lr: float = 2e-3              # peak of the cosine schedule
    max_steps: int = 6000         # length of the schedule
    clip: float = 5.0             # gradient norm clipping
    max_len: int = 1000           # longer lines are left out of training
    bf16: bool = False            # float32: the GRU is no faster in bfloat16 on CPUs without AMX
    eval_every: int = 200
    forms: int = 32               # P: forms per step
    lines_per_form: int = 2       # K: lines of each form per step
    temperature: float = 0.1      # of the supervised-contrastive loss
    crop: float = 0.5             # each training line is cut to a random stretch of at least this share (1: off)

    def warmup_steps(self) -> int:
        return min(self.lr_warmup, self.max_steps // 5)  # short runs (tests) warm up for a fifth


# features --------------------------------------------------------------------------------------
def features(off: np.ndarray, mean, std) -> np.ndarray:
    """(N, 3) normalised offsets -> (N, 10) encoder inputs (see the module docstring)."""
    off = np.asarray(off, np.float32)
    n = len(off)
    f = np.zeros((n, FEATURES), np.float32)
    if n == 0:
        return f
    d = off[:, :2].copy()
    d[0] = 0.0
    eos = (off[:, 2] > 0.5).astype(np.float32)
    y = np.cumsum(d[:, 1])
    f[:, :2] = (d - mean) / std
    f[0, :2] = 0.0
    f[:, 2] = eos
    f[1:, 3] = eos[:-1]
    f[:, 4] = y - np.median(y)
    length = np.hypot(d[:, 0], d[:, 1])
    moved = length > 1e-6
    safe = np.where(moved, length, 1.0)
    cos, sin = np.where(moved, d[:, 0] / safe, 0.0), np.where(moved, d[:, 1] / safe, 0.0)
    f[:, 5], f[:, 6] = cos, sin
    f[:, 7] = np.log(length + 0.01)
    # the turn from the previous move: cos/sin of the angle between them, both drawn in one stroke
    pen_up = f[:, 3] > 0.5
    turn = np.zeros(n, bool)
    turn[1:] = moved[1:] & moved[:-1] & ~pen_up[1:] & ~pen_up[:-1]
    pc, ps = np.r_[0.0, cos[:-1]], np.r_[0.0, sin[:-1]]
    f[:, 8] = np.where(turn, cos * pc + sin * ps, 0.0)
    f[:, 9] = np.where(turn, sin * pc - cos * ps, 0.0)
    return f


def crop(off: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A random contiguous stretch of a line: at least ``share`` of its pen steps (all when 1)."""
    n = len(off)
    if share >= 1 or n < 8:
        return off
    keep = max(4, round(n * rng.uniform(share, 1.0)))
    start = int(rng.integers(0, n - keep + 1))
    return off[start:start + keep]


# the network -----------------------------------------------------------------------------------
class StyleEncoder(nn.Module):
    """Conv1d stack -> BiGRU -> attentive and mean pooling -> linear -> unit-length embedding.
    Holds the offset statistics it standardises with, so a checkpoint alone is usable."""

    def __init__(self, config: StyleEncoderConfig, mean, std, meta: dict | None = None):
        super().__init__()
        self.config = cfg = config
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)
        self.meta = meta or {}
        convs, norms, c_in = [], [], FEATURES
        for s in cfg.strides:
            convs.append(nn.Conv1d(c_in, cfg.conv_channels, cfg.kernel, stride=s, padding=cfg.kernel // 2))
            norms.append(nn.LayerNorm(cfg.conv_channels))
            c_in = cfg.conv_channels
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.conv_channels, cfg.hidden, cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.attend = nn.Sequential(nn.Linear(2 * cfg.hidden, cfg.hidden), nn.Tanh(), nn.Linear(cfg.hidden, 1))
        self.out = nn.Linear(4 * cfg.hidden, cfg.dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.config.conv_lengths(lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, T, 10), lengths (B,) -> embeddings (B, dim), float32, unit length."""
        h, n = x, lengths
        k, p = self.config.kernel, self.config.kernel // 2
        for conv, norm, s in zip(self.convs, self.norms, self.config.strides):
            h = torch.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2)))
            n = (torch.div(n + 2 * p - k, s, rounding_mode="floor") + 1).clamp(min=1, max=h.shape[1])
            h = h * (torch.arange(h.shape[1])[None, :, None] < n[:, None, None])  # padding stays zero
        h = self.drop(h)
        out_len = n
        packed = nn.utils.rnn.pack_padded_sequence(h, out_len.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=int(out_len.max()))
        h = h.float()
        mask = torch.arange(h.shape[1])[None, :] < out_len[:, None]            # (B, T')
        a = self.attend(h).squeeze(-1).float().masked_fill(~mask, float("-inf"))
        attended = (torch.softmax(a, dim=1).unsqueeze(-1) * h).sum(1)
        mean = (h * mask.unsqueeze(-1)).sum(1) / out_len[:, None].to(h.dtype)
        e = self.out(self.drop(torch.cat([attended, mean], -1))).float()
        return nn.functional.normalize(e, dim=-1)

    def featurize(self, offsets: list) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_features([features(o, self.mean, self.std) for o in offsets])


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# embedding, loss and retrieval ---------------------------------------------------------------------
@torch.no_grad()
def embed(encoder: StyleEncoder, offsets_list: list, batch_size: int = 64) -> np.ndarray:
    """Each line of (N, 3) normalised offsets -> its unit-length style embedding: an (n, dim)
    float32 array, in order. A line without pen steps gets the zero vector (similar to nothing)."""
    was_training = encoder.training
    encoder.eval()
    out = np.zeros((len(offsets_list), encoder.config.dim), np.float32)
    order = sorted((i for i in range(len(offsets_list)) if len(offsets_list[i])), key=lambda i: len(offsets_list[i]))
    try:
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            x, lengths = encoder.featurize([offsets_list[i] for i in chunk])
            out[chunk] = encoder(x, lengths).numpy()
    finally:
        encoder.train(was_training)
    return out


def supcon_loss(emb: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised-contrastive loss of unit-length embeddings (B, d) with integer labels (B,):
    for each anchor, the mean over its positives (same label, not itself) of
    ``-log softmax(sim / temperature)`` over all other lines. Anchors without a positive are left out."""
    emb = emb.float()
    sim = emb @ emb.T / temperature
    eye = torch.eye(len(emb), dtype=torch.bool)
    sim = sim.masked_fill(eye, float("-inf"))
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not has.any():
        return emb.sum() * 0.0
    per_anchor = -(logp.masked_fill(~pos, 0.0).sum(1)[has]) / n_pos[has]
    return per_anchor.mean()


def retrieval(query_emb, query_forms, gallery_emb, gallery_forms, ks=(1, 5), score: str = "mean",
              exclude=None) -> dict:
    """Writer retrieval: rank every form of the gallery for each query line by the mean (or max,
    ``score="max"``) cosine similarity of the query with that form's gallery lines.

    ``exclude``: an optional (n_queries, n_gallery) bool array of gallery lines to leave out for
    each query (e.g. the query itself when the gallery holds it). A query counts as a hit at k
    when fewer than k other forms score at least as high as its own form; queries whose form has
    no (remaining) gallery line are skipped. Returns ``{"top1": .., "top5": .., "n_forms": ..,
    "n_queries": .., "n_gallery_forms": .., "chance_top1": ..}`` with one ``top{k}`` per k:
    hits averaged over each form's queries, then over the ``n_forms`` query forms."""
    if score not in ("mean", "max"):
        raise ValueError(f"score must be 'mean' or 'max', not {score!r}")
    q = np.asarray(query_emb, np.float64)
    g = np.asarray(gallery_emb, np.float64)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"embeddings of shapes {q.shape} and {g.shape} do not match")
    query_forms, gallery_forms = list(query_forms), list(gallery_forms)
    if len(query_forms) != len(q) or len(gallery_forms) != len(g):
        raise ValueError("one form id per embedding needed")
    forms = sorted(set(gallery_forms))
    col = {f: j for j, f in enumerate(forms)}
    member = np.zeros((len(g), len(forms)), bool)
    member[np.arange(len(g)), [col[f] for f in gallery_forms]] = True
    sim = q @ g.T                                                   # (Q, G)
    keep = np.ones_like(sim, bool) if exclude is None else ~np.asarray(exclude, bool)
    if keep.shape != sim.shape:
        raise ValueError(f"exclude has shape {keep.shape}, expected {sim.shape}")
    counts = keep.astype(np.float64) @ member                        # (Q, F) gallery lines per form
    if score == "mean":
        scores = np.where(keep, sim, 0.0) @ member / np.maximum(counts, 1)
    else:
        masked = np.where(keep, sim, -np.inf)
        scores = np.stack([masked[:, member[:, j]].max(1) if member[:, j].any() else np.full(len(q), -np.inf)
                           for j in range(len(forms))], 1)
    scores = np.where(counts > 0, scores, -np.inf)
    hits: dict[int, dict] = {k: {} for k in ks}
    n_queries = 0
    for i, f in enumerate(query_forms):
        j = col.get(f)
        if j is None or counts[i, j] == 0:
            continue
        n_queries += 1
        others = int((scores[i] >= scores[i, j]).sum()) - 1             # forms tied with or above its own
        for k in ks:
            hits[k].setdefault(f, []).append(others < k)
    per_form = {k: [float(np.mean(v)) for v in hits[k].values()] for k in ks}
    n_forms = len(per_form[ks[0]]) if ks else 0
    result = {f"top{k}": float(np.mean(per_form[k])) if n_forms else float("nan") for k in ks}
    result.update(n_forms=n_forms, n_queries=n_queries, n_gallery_forms=len(forms),
                  chance_top1=1.0 / len(forms) if forms else float("nan"))
    return result


def validation_retrieval(emb: np.ndarray, forms: list, score: str = "mean", ks=(1, 5)) -> dict:
    """Retrieval among held-out lines: every line of a form with at least two lines is a query in
    turn, the gallery all the other lines (``"all"``: the average over all queries, per form then
    over forms); and the protocol with one query per form, its first line (``"first"``)."""
    forms = list(forms)
    n = len(forms)
    every = retrieval(emb, forms, emb, forms, ks, score, exclude=np.eye(n, dtype=bool))
    first_of: dict = {}
    for i, f in enumerate(forms):
        first_of.setdefault(f, i)
    size = Counter(forms)
    queries = [i for f, i in first_of.items() if size[f] >= 2]
    chosen = set(queries)
    gallery = [i for i in range(n) if i not in chosen]
    first = retrieval(emb[queries], [forms[i] for i in queries], emb[gallery], [forms[i] for i in gallery], ks, score)
    return {"all": every, "first": first}


# checkpoints -------------------------------------------------------------------------------------
def load_style_encoder(path=None) -> StyleEncoder:
    """A style encoder (in eval mode) from a checkpoint or an exported ``style_encoder.pt``
    (default: the shipped one)."""
    def build(ck):
        if ck.get("kind") != KIND:
            raise ValueError("not a style encoder")
        meta = {k: ck[k] for k in ("step", "validation", "train_forms", "train_lines") if k in ck}
        return StyleEncoder(StyleEncoderConfig.from_dict(ck["config"]), ck["offset_mean"], ck["offset_std"], meta)
    return load_network(Path(path) if path is not None else DEFAULT_STYLE_ENCODER, "style encoder", "style-encoder",
                        build)


class StyleEncoderTask(BestExportTask):
    """Training the style encoder on the train split's forms: loss = supervised-contrastive over
    ``forms`` x ``lines_per_form`` lines drawn per step (the loop's length-bucketed batch is not
    used: a contrastive batch needs several lines of each form); evaluation = writer retrieval
    among the validation lines; export = ``style_encoder.pt`` whenever the validation top-1
    (every line as the query in turn, mean scoring) improves (always when there is none)."""

    name, kind, metric, export_name = "style encoder", KIND, "validation_top1", "style_encoder.pt"
    higher_is_better, best = True, -1.0

    def __init__(self, corpus, config_name: str, tc: StyleEncoderTrainConfig):
        super().__init__(corpus, config_name)
        torch.manual_seed(tc.seed)  # the initial weights follow the seed
        self.model = StyleEncoder(StyleEncoderConfig.preset(config_name), self.mean, self.std)
        self.lines = self.train_lines(tc.max_len)
        by_form: dict = {}
        for i in self.lines:
            by_form.setdefault(corpus.form_ids[i], []).append(int(i))
        self.train_forms = sorted(by_form)
        self.form_lines = [np.array(by_form[f]) for f in self.train_forms if len(by_form[f]) >= 2]
        if len(self.form_lines) < 2:
            raise HandsynthError("the style encoder needs at least two training forms with two lines or more "
                                 f"(found {len(self.form_lines)})")
        self.val_idx = [int(i) for i in corpus.indices("validation")]

    def draw(self, step: int, tc: StyleEncoderTrainConfig) -> tuple[list, np.ndarray]:
        """The lines (corpus indices) of one step and their form labels: ``forms`` forms, each
        with ``lines_per_form`` of its lines (fewer when it has fewer), fixed by (seed, step)."""
        rng = np.random.default_rng([tc.seed, step, 2])
        chosen = rng.choice(len(self.form_lines), size=min(tc.forms, len(self.form_lines)), replace=False)
        idx, labels = [], []
        for label, f in enumerate(chosen):
            lines = self.form_lines[f]
            take = rng.choice(lines, size=min(tc.lines_per_form, len(lines)), replace=False)
            idx += [int(i) for i in take]
            labels += [label] * len(take)
        return idx, np.array(labels)

    def loss(self, model, idx, step: int, tc: StyleEncoderTrainConfig):
        """Supervised-contrastive loss of the step's drawn lines (``idx`` from the loop is unused),
        each cropped by a draw fixed by (seed, step)."""
        lines, labels = self.draw(step, tc)
        rng = np.random.default_rng([tc.seed, step, 3])
        offsets = [crop(self.corpus.offsets[i], tc.crop, rng) for i in lines]
        x, lengths = self.model.featurize(offsets)
        emb = model(x, lengths)
        with torch.autocast("cpu", enabled=False):
            loss = supcon_loss(emb, torch.from_numpy(labels), tc.temperature)
        return loss, lengths.sum()

    def evaluate(self, loop: Loop) -> dict:
        forms = [self.corpus.form_ids[i] for i in self.val_idx]
        if len(set(forms)) < 2:
            return {"validation_top1": float("nan")}
        emb = embed(self.model, [self.corpus.offsets[i] for i in self.val_idx])
        mean, top = validation_retrieval(emb, forms, "mean"), validation_retrieval(emb, forms, "max")
        return {"validation_top1": mean["all"]["top1"], "validation_top5": mean["all"]["top5"],
                "validation_top1_first": mean["first"]["top1"], "validation_top5_first": mean["first"]["top5"],
                "validation_top1_max": top["all"]["top1"], "validation_top5_max": top["all"]["top5"],
                "validation_forms": mean["all"]["n_forms"], "validation_gallery_forms": mean["all"]["n_gallery_forms"]}

    def export(self, ckpt: dict, out: Path, metrics: dict) -> None:
        """The shippable part: float16 weights + config, statistics, training forms, validation scores."""
        keys = ("kind", "config", "offset_mean", "offset_std", "norm", "step", "train_forms", "train_lines",
                "validation")
        validation = {k: v for k, v in metrics.items() if k.startswith("validation")}
        checkpoint.export({**ckpt, "validation": validation}, out / self.export_name, keys)


def train_style_encoder(corpus, out_dir, config: str = "full", max_steps: int | None = None,
                        max_minutes: float | None = None, forms: int = StyleEncoderTrainConfig.forms,
                        lines_per_form: int = StyleEncoderTrainConfig.lines_per_form,
                        lr: float = StyleEncoderTrainConfig.lr, seed: int = StyleEncoderTrainConfig.seed,
                        eval_every: int = StyleEncoderTrainConfig.eval_every,
                        temperature: float = StyleEncoderTrainConfig.temperature,
                        crop: float = StyleEncoderTrainConfig.crop, bf16: bool = StyleEncoderTrainConfig.bf16,
                        resume=False, schedule_steps: int | None = None, progress: bool = True) -> list[dict]:
    """Train the style encoder on ``corpus.indices("train")`` forms only. Writes
    ``out_dir/checkpoint.pt`` (resumable), ``out_dir/style_encoder.pt`` (float16, the best
    validation top-1 so far) and ``history.json``. The run stops at step ``max_steps`` or after
    ``max_minutes``; the cosine schedule is ``schedule_steps`` long (default: ``max_steps``, or
    6000; on resume, the checkpoint's unless ``schedule_steps`` is given). ``resume``: True
    (``out_dir/checkpoint.pt``) or a checkpoint path. Returns the history."""
    tc = StyleEncoderTrainConfig(batch_size=forms * lines_per_form, forms=forms, lines_per_form=lines_per_form,
                                 lr=lr, seed=seed, eval_every=eval_every, temperature=temperature, crop=crop,
                                 bf16=bf16,
                                 max_steps=schedule_steps or max_steps or StyleEncoderTrainConfig.max_steps)
    return start_or_resume(lambda: Loop(StyleEncoderTask(corpus, config, tc), tc, out_dir, progress), out_dir,
                           resume, schedule_steps, max_steps, max_minutes, refuse_existing=StyleEncoderTask.name)
