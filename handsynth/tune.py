"""Your own hand: a model adapted to a few sentences of one person's writing (``handsynth tune``).

The person's samples (the JSON format of docs/samples.md, or InkML) become training lines as the
corpus makes them (``data.corpus.samples_corpus``). One of them is held out; the network's weights
(``TuneConfig.parts``) are trained on the others with Adam at a small learning rate, pulled
towards the shipped weights (an L2 anchor, ``anchor``: the alphabet the person never wrote is
not forgotten), and the held-out line's likelihood, measured every ``eval_every`` steps, picks
the best step and stops the run when it has not improved ``patience`` times in a row. Ctrl-C
stops it too, keeping the best so far.

The result is a small file: the change to each weight matrix as a low-rank product (``rank``,
by SVD), biases whole, in float16, with the base model's name and the SHA-256 of its file. A
tuned file is a model like any other: ``handsynth write --model me.pt``, ``load_model("me.pt")``,
the server's ``model``; it is applied on top of the base model it names, and refused when that
file differs (the base was retrained).

The file keeps ``strength`` (default 0.5) of the tuned change: the model half way between the base
and the tuned weights (weight-space interpolation, as WiSE-FT, Wortsman et al. 2022). Measured on
16 held-out forms (docs/measurements.md), half the change keeps most of the style (writer
retrieval top-1 69% against 75% for the whole change and 56% for priming alone) and loses less
legibility: recogniser CER 6.3% against 11.0% (primed only: 7.1%), and on texts of capitals, digits
and symbols the person never wrote, Tesseract CER 40.0% against 47.8% (base model: 42.3%).

Writing with a tuned model still primes with the person's own sentences:
tuning and priming add up (docs/measurements.md). So by default (``primed``) each sentence is
also learnt as the continuation of another of the person's, as a primed model writes it, and the
held-out sentence is judged written after the first: on the 16 forms, top-1 81% with 2 sentences
(the real line's; unprimed tuning 62%, priming alone 56%) and 44% with 4 (38%, 25%).

The file also keeps the person's first two sentences joined as one line (``own_primer``), and a
tuned model writes primed with them when no style is given (``Handwriter.own_primer``): with 4
sentences to learn from, top-1 50% against 25% for priming with one sentence.
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .checkpoint import read, write_atomic
from .errors import HandsynthError
from .strokes import continued

KIND = "handsynth-tuned"
FORMAT = 1
PARTS = ("all", "upper", "head")   # which weights adapt: every one, the upper LSTM layers and the head, the head


@dataclass(frozen=True)
class TuneConfig:
    parts: str = "all"
    lr: float = 3e-5
    max_steps: int = 60
    max_minutes: float = 10.0
    eval_every: int = 5
    patience: int = 3          # evaluations without a better held-out likelihood before stopping (0: never)
    anchor: float = 0.0        # weight of the L2 pull towards the base weights (per parameter, mean)
    rank: int = 16             # rank of each weight matrix's change in the file (0: the whole change)
    strength: float = 0.5      # the share of the tuned change the file keeps (see the module docstring)
    primed: bool = True        # also train each line as the continuation of another (as a primed model writes
                               # it), and judge the held-out line primed with the first line (docs/measurements.md;
                               # the samples must be one person's: another's line as the primer teaches a mixed hand)
    seed: int = 0


@dataclass
class Tuned:
    """A tuned model's change to its base, and how it was made."""
    delta: dict                # parameter name -> the change (float32), whole
    base: dict                 # {"name": shipped name or None, "file": file name, "sha256": of the base file}
    config: TuneConfig
    history: list = field(default_factory=list)   # (step, held-out NLL per pen step)
    best_step: int = 0
    lines: int = 0             # lines trained on
    held_out: str = ""         # the held-out line's text
    stopped: str = ""          # why it stopped
    primer: tuple | None = None   # (text, offsets): the first sentences joined, the hand's own primer


def tuned_writer(hw, tuned: Tuned, rank: int | None = None, strength: float | None = None):
    """A copy of ``hw`` with ``tuned``'s change added, as its file would give it (``rank``: the
    change stored at this rank, default the config's; the float16 rounding included), times
    ``strength`` (default the config's; 1: as tuned; 0.5: half way between the base and the
    tuned model)."""
    config = replace(tuned.config, **({} if rank is None else {"rank": rank}),
                     **({} if strength is None else {"strength": strength}))
    return _copy_with(hw, tuned_document(replace(tuned, config=config)), "tuned")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _chosen(model, parts: str) -> list[str]:
    if parts not in PARTS:
        raise HandsynthError(f"parts {parts!r}: one of {', '.join(PARTS)}")
    names = [n for n, _ in model.named_parameters()]
    if parts == "all":
        return names
    if parts == "head":
        return [n for n in names if n.startswith("head.")]
    return [n for n in names if n.startswith(("upper.", "head."))]


def tune(hw, samples: list, config: TuneConfig = TuneConfig(), progress=None, stop=None) -> Tuned:
    """Adapt ``hw`` (a ``Handwriter``, left unchanged) to ``samples`` (``data.samples.Sample``,
    at least two lines: the last is held out). ``progress(step, max_steps, held_out_nll)`` is
    called after each evaluation; ``stop()``, asked after every step, ends the run as Ctrl-C
    does when it returns True. Returns the change at the best evaluation."""
    from .data.corpus import samples_corpus

    corpus = samples_corpus(samples)
    if len(corpus.texts) < 2:
        raise HandsynthError(f"tuning needs at least 2 usable sample lines (one is held out to stop at the best "
                             f"step); got {len(corpus.texts)} of {len(samples)}"
                             + (f" (dropped: {dict(corpus.dropped)})" if corpus.dropped else ""))
    return tune_lines(hw, corpus.offsets, corpus.texts, config, progress, stop)


def tune_lines(hw, offsets: list, texts: list, config: TuneConfig = TuneConfig(), progress=None,
               stop=None) -> Tuned:
    """``tune`` for lines already normalised as the corpus's (``offsets`` (N, 3) each, and their
    texts); the last line is held out."""
    from .data.corpus import make_batch

    if hw.path is None:
        raise HandsynthError("tuning needs a model loaded from a file (its base is named in the result)")
    if getattr(hw.model, "arch", "") != "graves":
        raise HandsynthError(f"tuning is built for the LSTM family, not {hw.model.arch!r}")
    if len(texts) < 2:
        raise HandsynthError("tuning needs at least 2 lines (one is held out to stop at the best step)")
    if hw.name is None and is_tuned(read(hw.path)):
        raise HandsynthError(f"{hw.path} is itself a tuned model: tune from the model it was tuned from")
    for t in texts:
        hw.alphabet.normalize(t, skip_unknown=False)   # a character the model cannot write: said now
    if not (1 <= config.max_steps <= 100_000 and config.eval_every >= 1 and config.lr > 0 and config.rank >= 0
            and math.isfinite(config.lr) and config.max_minutes > 0 and 0 < config.strength <= 1):
        raise HandsynthError("tune: steps, evaluation interval and minutes must be positive, the rank 0 or more, "
                             "the strength above 0 and at most 1")
    torch.manual_seed(config.seed)
    model = copy.deepcopy(hw.model).float()
    names = set(_chosen(model, config.parts))
    params = [p for n, p in model.named_parameters() if n in names]
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    base = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    n_params = sum(p.numel() for p in params)
    opt = torch.optim.Adam(params, lr=config.lr)
    lines, line_texts = list(offsets[:-1]), list(texts[:-1])
    if config.primed:
        n = len(lines)   # line i continues line i - 1 (the first continues the last); alone too
        pairs = [(lines[i - 1], line_texts[i - 1], lines[i], line_texts[i]) for i in range(n)] if n > 1 else []
        train = primed_batch(pairs, lines, line_texts, hw)
        held = primed_batch([(offsets[0], texts[0], offsets[-1], texts[-1])], [], [], hw)
    else:
        train = make_batch(lines, line_texts, hw.alphabet, hw.mean, hw.std)
        held = make_batch(list(offsets[-1:]), list(texts[-1:]), hw.alphabet, hw.mean, hw.std)

    def held_out() -> float:
        model.eval()
        with torch.no_grad():
            s, n = model.loss(held)
        return float(s / n)

    kept = (held_out(), 0, None)   # (held-out NLL, step, state): the best so far, replaced in one assignment
    history, misses = [(0, kept[0])], 0
    if progress:
        progress(0, config.max_steps, kept[0])
    started, stopped = time.monotonic(), f"{config.max_steps} steps"
    try:
        for step in range(1, config.max_steps + 1):
            model.train()
            s, n = model.loss(train)
            loss = s / n
            if config.anchor:
                loss = loss + config.anchor * sum(((p - base[k]) ** 2).sum() for k, p in model.named_parameters()
                                                  if k in base) / n_params
            opt.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                stopped = "a non-finite loss"
                break
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % config.eval_every == 0 or step == config.max_steps:
                h = held_out()
                if h < kept[0]:   # the state first, then the record: an interrupt between keeps the best
                    kept = (h, step, {k: p.detach().clone() for k, p in model.named_parameters() if k in names})
                    misses = 0
                else:
                    misses += 1
                history.append((step, h))
                if progress:
                    progress(step, config.max_steps, h)
                if config.patience and misses >= config.patience:
                    stopped = f"no better held-out likelihood in {misses} evaluations"
                    break
            if time.monotonic() - started > 60 * config.max_minutes:
                stopped = f"the time limit of {config.max_minutes:g} minutes"
                break
            if stop is not None and stop():
                stopped = "stopped (the best step so far is kept)"
                break
    except KeyboardInterrupt:
        stopped = "interrupted (the best step so far is kept)"
        if all(s != kept[1] for s, _ in history):   # interrupted between keeping a state and recording it
            history.append((kept[1], kept[0]))
    best_step, best_state = kept[1], kept[2]
    delta = {k: (best_state[k] - base[k]) if best_state else torch.zeros_like(base[k]) for k in base}
    return Tuned(delta, {"name": hw.name, "file": Path(hw.path).name, "path": str(Path(hw.path).resolve()),
                         "sha256": file_sha256(hw.path)}, config,
                 history, best_step, len(texts) - 1, texts[-1], stopped, own_primer(offsets, texts))


def own_primer(offsets: list, texts: list) -> tuple:
    """A tuned hand's own primer, kept in its file: (text, offsets) of the person's first
    sentences joined as a style of several sentences primes (``styles.join_sentences``)."""
    from .styles import join_sentences, join_texts

    return join_texts(texts), np.asarray(join_sentences(offsets), np.float32)


def primed_batch(pairs: list, lines: list, texts: list, hw):
    """A batch of ``pairs`` (primer offsets, its text, line offsets, its text), each one row of the
    primer then the line (``continued``) whose likelihood counts only the line's own steps after the
    jump to it, and of ``lines`` (with ``texts``) alone."""
    from .data.corpus import make_batch
    from .sampling import primed_text

    rows = [continued(p, o) for p, _, o, _ in pairs] + list(lines)
    batch = make_batch(rows, [primed_text(pt, t) for _, pt, _, t in pairs] + list(texts), hw.alphabet, hw.mean, hw.std)
    for b, (p, _, _, _) in enumerate(pairs):
        batch.mask[b, :len(p) + 1] = 0.0
    return batch


def low_rank(delta: torch.Tensor, rank: int):
    """A matrix change as float16 factors ``(u, v)`` with ``u @ v`` its best rank-``rank``
    approximation, or the whole change (a vector, or when the factors would not be smaller)."""
    if delta.dim() != 2 or rank <= 0 or rank * sum(delta.shape) >= delta.numel():
        return delta.to(torch.float16)
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, len(s))
    root = s[:r].sqrt()
    return ((u[:, :r] * root).to(torch.float16), (root[:, None] * vh[:r]).to(torch.float16))


def expand(stored) -> torch.Tensor:
    if isinstance(stored, (tuple, list)):
        return stored[0].float() @ stored[1].float()
    return stored.float()


def tuned_document(tuned: Tuned) -> dict:
    """What a tuned file holds (``save_tuned`` writes it, ``tuned_bytes`` serialises it)."""
    stored = {k: low_rank(v * tuned.config.strength, tuned.config.rank) for k, v in tuned.delta.items()}
    doc = {"kind": KIND, "format": FORMAT, "model": {}, "base": tuned.base, "config": asdict(tuned.config),
           "history": tuned.history, "best_step": tuned.best_step, "lines": tuned.lines,
           "held_out": tuned.held_out, "stopped": tuned.stopped}
    if tuned.primer is not None:
        doc["primer"] = {"text": tuned.primer[0], "offsets": torch.from_numpy(np.ascontiguousarray(tuned.primer[1]))}
    for k, v in stored.items():   # "model" holds plain tensors (weights_only); factors as NAME.u / NAME.v
        if isinstance(v, tuple):
            doc["model"][k + ".u"], doc["model"][k + ".v"] = v
        else:
            doc["model"][k] = v
    return doc


def tuned_bytes(tuned: Tuned) -> bytes:
    """The tuned file's contents (``save_tuned`` writes them; the server sends them)."""
    import io

    buf = io.BytesIO()
    torch.save(tuned_document(tuned), buf)
    return buf.getvalue()


def save_tuned(tuned: Tuned, path) -> dict:
    """Write the tuned file (atomically); returns its size."""
    data = tuned_bytes(tuned)
    write_atomic(path, data)
    return {"bytes": len(data)}


def is_tuned(ck: dict) -> bool:
    return isinstance(ck, dict) and ck.get("kind") == KIND


def apply_tuned(ck: dict, path, load_model, shipped):
    """A ``Handwriter`` for a tuned file (read by ``checkpoint.read``): its base model (loaded
    by ``load_model``: a name among ``shipped``, or the path it was tuned from) with the change
    added."""
    base = _base(ck, path)
    name = base.get("name")
    if name in shipped:
        source = name
    elif isinstance(base.get("path"), str) and Path(base["path"]).is_file():   # a model of the user's own
        source = Path(base["path"])
        if is_tuned(read(source)):
            raise HandsynthError(f"{path}: tuned from another tuned model; tune from a trained model instead")
    else:
        raise HandsynthError(f"{path}: tuned from {base.get('file') or 'a model'}, which is neither a shipped model "
                             f"(known: {', '.join(shipped)}) nor where it was")
    hw = load_model(source)
    if file_sha256(hw.path) != base.get("sha256"):
        raise HandsynthError(f"{path}: tuned from another version of {base.get('file') or name!r}; "
                             f"tune again with this one")
    add_change(hw.model, ck, path)
    hw.own_primer = read_primer(ck, hw.alphabet, path)
    hw.path, hw.name = Path(path), None
    return hw


def with_change(hw, ck: dict, label: str, base_sha256: str):
    """A copy of ``hw`` (a loaded base model whose file has SHA-256 ``base_sha256``) with the
    tuned file ``ck``'s change added, as the server applies a tuned file a browser sends back;
    ``hw`` is left as it is."""
    base = _base(ck, label)
    if base.get("sha256") != base_sha256:
        raise HandsynthError(f"{label}: tuned from another model ({base.get('file') or 'unknown'}) than this one; "
                             f"learn the hand again")
    return _copy_with(hw, ck, label)


def _base(ck: dict, label) -> dict:
    """A tuned file's record of its base model, once the file is one this version can read."""
    if ck.get("format") != FORMAT or not isinstance(ck.get("model"), dict):
        raise HandsynthError(f"{label}: not a tuned model file this version of handsynth can read")
    return ck.get("base") if isinstance(ck.get("base"), dict) else {}


def _copy_with(hw, ck: dict, label):
    """A copy of ``hw`` whose model has ``ck``'s change added (``hw`` is left as it is)."""
    out = copy.copy(hw)
    out.model = copy.deepcopy(hw.model)
    add_change(out.model, ck, label)
    out.own_primer = read_primer(ck, hw.alphabet, label)
    out.batcher = None
    return out


MAX_PRIMER_STEPS = 20_000


def read_primer(ck: dict, alphabet, label):
    """A tuned file's own primer (``sampling.Primer``) once checked, or None for a file without
    one (made before tuned files kept it)."""
    from .sampling import Primer

    p = ck.get("primer")
    if p is None:
        return None
    off, text = (p.get("offsets"), p.get("text")) if isinstance(p, dict) else (None, None)
    if not (isinstance(off, torch.Tensor) and isinstance(text, str) and off.dim() == 2 and off.shape[1] == 3
            and 2 <= off.shape[0] <= MAX_PRIMER_STEPS and 0 < len(text) <= MAX_PRIMER_STEPS
            and torch.isfinite(off).all() and bool(((off[:, 2] == 0) | (off[:, 2] == 1)).all())):
        raise HandsynthError(f"{label}: not a usable tuned model file (its own sentences do not fit)")
    try:
        text = alphabet.normalize(text, skip_unknown=False)
    except HandsynthError:
        raise HandsynthError(f"{label}: not a usable tuned model file (its sentences have characters the "
                             f"model cannot write)") from None
    return Primer(off.float().numpy().copy(), text)


def add_change(model, ck: dict, label) -> None:
    """Add a tuned file's change (``ck["model"]``: whole changes and NAME.u / NAME.v factors) to
    ``model``'s weights in place, each checked to fit first (nothing is added if one does not)."""
    params = dict(model.named_parameters())
    stored = ck["model"]
    changes = {}
    for key, v in stored.items():
        if not isinstance(v, torch.Tensor):
            raise HandsynthError(f"{label}: not a usable tuned model file ({key} is not a tensor)")
        if key.endswith(".v"):
            continue
        if key.endswith(".u"):
            k = key[:-2]
            if k + ".v" not in stored:
                raise HandsynthError(f"{label}: not a usable tuned model file ({k} has half its factors)")
            changes[k] = (v, stored[k + ".v"])
        else:
            changes[key] = v
    expanded = {}
    for k, v in changes.items():
        if k not in params:
            raise HandsynthError(f"{label}: not a usable tuned model file (no weight {k!r} in the base model)")
        try:
            d = expand(v)
        except RuntimeError:
            d = None
        if d is None or d.shape != params[k].shape or not torch.isfinite(d).all():
            raise HandsynthError(f"{label}: not a usable tuned model file (the change to {k} does not fit)")
        expanded[k] = d
    with torch.no_grad():
        for k, d in expanded.items():
            params[k].add_(d.to(params[k].dtype))
    model.eval()
