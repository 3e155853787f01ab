"""The transformer family: a GPT-style decoder over polar pen tokens with cross-attention to the
text in every layer (the reference design's part 2).

- **Tokens**: each pen offset (standardised, as the corpus's batches hold them) is one token of
  ``tokenizer.PolarTokenizer`` (angle bin x radius bin x end of stroke), fitted to the training
  lines by ``Model.fit`` and stored in the config, so a model file carries its bins. Two more
  ids: ``START`` (the input before the first step) and ``END`` (the line is done: the model
  signals the end itself, which its attention cannot).
- **Text**: character embeddings plus learned character positions, ``text_layers`` of
  bidirectional self-attention; every decoder layer cross-attends to the result.
- **Decoder**: pre-norm blocks (causal self-attention, cross-attention, MLP), learned step
  positions, ``torch.nn.functional.scaled_dot_product_attention`` in training.
- **Sampling** (``TransformerStep``): a KV cache per layer (self-attention keys and values
  appended per step, the text's computed once), all of a page's lines in one batch, the primer
  fed as a prefix (its tokens after its text, as in training on a longer line); the alignment the
  policy reads is the last layer's cross-attention averaged over heads; END sets ``passed`` and
  from then on the alignment is all "after the end".
- **Neatness**: each step is drawn in two parts (``factored_draw``): its kind (pen-down move,
  move then lift, END) at the model's own odds, then the move among that kind's tokens, where
  ``bias`` b maps to a temperature ``1 / (1 + TEMPERATURE_SLOPE * b)`` and a nucleus
  ``top_p = max(MIN_TOP_P, 1 - TOP_P_SLOPE * b)`` (as the LSTM's bias sharpens its mixture, not
  its pen lifts). END is drawn only once the alignment is on the text's last characters.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...alphabet import Alphabet
from ...errors import HandsynthError
from .. import SynthesisModel
from .tokenizer import PolarTokenizer

TEMPERATURE_SLOPE = 0.35
TOP_P_SLOPE = 0.05
MIN_TOP_P = 0.5
NUCLEUS_K = 256           # tokens sorted for the nucleus when they hold its mass (nucleus_draw)
END_WITHIN = 2            # END may be drawn once the alignment is on the text's last END_WITHIN characters
# The CPU preset, sized by benchmarks/transformer_throughput.py and scripts/tokenizer_stats.py
# (docs/measurements.md): a quarter of the reference's vocabulary (64 angle x 32 radius bins x 2:
# the head and embedding were most of a small model's time), d 256, 4 layers.
CPU_PRESET = dict(d_model=256, layers=4, heads=4, d_ff=1024, angle_bins=64, radius_bins=32)
FIT_LINES = 2000          # training lines the tokenizer's radius bins are fitted to
GUIDE_WIDTH = 0.2         # guided attention (training's warm-up): the diagonal's width, as a share of the line


@dataclass(frozen=True)
class TransformerConfig:
    alphabet_size: int = 83     # characters + the padding symbol 0
    d_model: int = 384
    layers: int = 6
    heads: int = 6
    d_ff: int = 1536
    text_layers: int = 1
    max_steps: int = 2048       # pen tokens in a context (primer + line + START)
    max_chars: int = 256        # characters of primer text + line
    angle_bins: int = 128
    radius_bins: int = 64
    tokenizer: dict | None = None   # the fitted bins (PolarTokenizer.to_dict), set by Model.fit

    @classmethod
    def preset(cls, name: str, alphabet_size: int) -> "TransformerConfig":
        sizes = {"tiny": dict(d_model=32, layers=2, heads=2, d_ff=64, angle_bins=16, radius_bins=8, max_steps=1024),
                 "small": dict(d_model=192, layers=4, heads=4, d_ff=768),
                 "cpu": dict(CPU_PRESET),
                 "full": dict(d_model=384, layers=6, heads=6, d_ff=1536)}
        if name not in sizes:
            raise HandsynthError(f"unknown transformer preset {name!r}: use {', '.join(sizes)}")
        return cls(alphabet_size=alphabet_size, **sizes[name])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        return cls(**d)


class _Attention(nn.Module):
    """Multi-head attention: queries from ``x``, keys and values from ``x`` (self) or a memory."""

    def __init__(self, d: int, heads: int, cross: bool):
        super().__init__()
        self.heads, self.cross = heads, cross
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)

    def split(self, x):   # (B, L, d) -> (B, H, L, dh)
        B, L, d = x.shape
        return x.view(B, L, self.heads, d // self.heads).transpose(1, 2)

    def keys_values(self, src):
        k, v = self.kv(src).chunk(2, -1)
        return self.split(k), self.split(v)

    def merge(self, y):   # (B, H, L, dh) -> (B, L, d)
        B, H, L, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(B, L, H * dh))


class _Block(nn.Module):
    """Pre-norm: self-attention (causal in the decoder), cross-attention to the text (decoder
    only), MLP."""

    def __init__(self, d: int, heads: int, d_ff: int, cross: bool):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(d), _Attention(d, heads, False)
        self.ln2 = nn.LayerNorm(d) if cross else None
        self.cross_attn = _Attention(d, heads, True) if cross else None
        self.ln3 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Linear(d_ff, d))

    def forward(self, x, causal: bool, self_mask=None, memory=None, memory_mask=None, weights: bool = False):
        """``weights``: also return the cross-attention's weights averaged over heads (B, T, U)
        (computed explicitly instead of by the fused kernel)."""
        h = self.ln1(x)
        a = self.self_attn
        q = a.split(a.q(h))
        k, v = a.keys_values(h)
        x = x + a.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=self_mask, is_causal=causal))
        w = None
        if self.cross_attn is not None:
            c = self.cross_attn
            q = c.split(c.q(self.ln2(x)))
            k, v = c.keys_values(memory)
            if weights:
                scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
                p = torch.softmax(scores.float().masked_fill(~memory_mask, float("-inf")), -1)
                x = x + c.merge((p.to(v.dtype) @ v))
                w = p.mean(1)
            else:
                x = x + c.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=memory_mask))
        x = x + self.mlp(self.ln3(x))
        return (x, w) if weights else x


class Transformer(SynthesisModel):
    arch = "transformer"
    Config = TransformerConfig
    alignment = "cross-attention (last layer, heads averaged)"
    guide_stays = True   # the guided-attention penalty may stay on at a floor

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = cfg = config
        self.tokenizer = PolarTokenizer.from_dict(cfg.tokenizer) if cfg.tokenizer else None
        vocab = cfg.angle_bins * cfg.radius_bins * 2
        if self.tokenizer is not None and self.tokenizer.vocab_size != vocab:
            raise HandsynthError("the config's tokenizer does not match its angle and radius bins")
        self.vocab, self.END, self.START = vocab, vocab, vocab + 1   # the head predicts tokens and END
        # each head output's kind for sampling (factored_draw): 0 pen-down move, 1 move and lift, 2 END
        self.kinds = torch.cat([torch.arange(vocab) // (cfg.angle_bins * cfg.radius_bins), torch.tensor([2])])
        d = cfg.d_model
        self.chars = nn.Embedding(cfg.alphabet_size, d, padding_idx=0)
        self.char_pos = nn.Embedding(cfg.max_chars, d)
        self.text = nn.ModuleList([_Block(d, cfg.heads, cfg.d_ff, cross=False) for _ in range(cfg.text_layers)])
        self.text_ln = nn.LayerNorm(d)
        self.tokens = nn.Embedding(vocab + 2, d)
        self.step_pos = nn.Embedding(cfg.max_steps, d)
        self.blocks = nn.ModuleList([_Block(d, cfg.heads, cfg.d_ff, cross=True) for _ in range(cfg.layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab + 1)   # every token and END (never START)
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    # -- data -----------------------------------------------------------------------------------
    @classmethod
    def fit(cls, config: TransformerConfig, offsets: list) -> TransformerConfig:
        """The config with its tokenizer fitted to training lines (standardised offsets)."""
        rng = np.random.default_rng(0)
        pick = rng.choice(len(offsets), min(len(offsets), FIT_LINES), replace=False)
        tok = PolarTokenizer.fit([offsets[i] for i in pick], config.angle_bins, config.radius_bins)
        return replace(config, tokenizer=tok.to_dict())

    def adopt(self, state: dict, old_chars: str, new_chars: str, fill: dict | None = None) -> None:
        """Warm start on a grown alphabet (e.g. IAM-OnDB's model on the UNIPEN mix): only the
        character embedding depends on the alphabet; each known character's row moves to its new
        place, a new character starts from the mean of the known ones plus a little noise (or,
        with ``fill``, a state of this network's shape, from that state's row). The
        tokenizer's bins stay the model's own (they are in its config)."""
        A = self.config.alphabet_size
        old_of = torch.from_numpy(Alphabet(new_chars).codes_in(old_chars))
        if len(old_of) != A:
            raise HandsynthError(f"warm start: {len(new_chars)} characters for a network of {A - 1}")
        state = {k: v.float() for k, v in state.items()}
        E = state["chars.weight"]
        g = torch.Generator().manual_seed(0)
        fresh = (fill["chars.weight"].float() if fill is not None
                 else E[1:].mean(0, keepdim=True) + E[1:].std() * 0.1 * torch.randn(A, E.shape[1], generator=g))
        state["chars.weight"] = torch.where((old_of >= 0)[:, None], E[old_of.clamp(min=0)], fresh)
        state["chars.weight"][0] = E[0]   # the padding symbol
        self.load_state_dict(state)

    def _tok(self) -> PolarTokenizer:
        if self.tokenizer is None:
            raise HandsynthError("the transformer's tokenizer is not fitted (Model.fit before training)")
        return self.tokenizer

    def encode_text(self, codes: torch.Tensor):
        """(B, U) character codes -> (B, U, d) text memory and its (B, 1, 1, U) attention mask."""
        U = codes.shape[1]
        if U > self.config.max_chars:
            raise HandsynthError(f"{U} characters are more than this transformer's {self.config.max_chars}")
        mask = (codes > 0)[:, None, None, :]
        x = self.chars(codes) + self.char_pos(torch.arange(U))
        for blk in self.text:
            x = blk(x, causal=False, self_mask=mask)
        return self.text_ln(x), mask

    def line_tokens(self, offsets: np.ndarray) -> np.ndarray:
        return self._tok().encode(offsets, feedback=True)

    # -- training -------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, codes: torch.Tensor, attention: bool = False):
        """(B, T) input token ids, (B, U) codes -> (B, T, vocab + 1) next-token logits; with
        ``attention``, also the last layer's cross-attention (B, T, U), heads averaged (the
        alignment sampling reads)."""
        T = inputs.shape[1]
        if T > self.config.max_steps:
            raise HandsynthError(f"{T} pen steps are more than this transformer's context of {self.config.max_steps}")
        memory, mask = self.encode_text(codes)
        x = self.tokens(inputs) + self.step_pos(torch.arange(T))
        w = None
        for i, blk in enumerate(self.blocks):
            if attention and i == len(self.blocks) - 1:
                x, w = blk(x, causal=True, memory=memory, memory_mask=mask, weights=True)
            else:
                x = blk(x, causal=True, memory=memory, memory_mask=mask)
        logits = self.head(self.ln(x))
        return (logits, w) if attention else logits

    def loss(self, batch, warmup: float = 0.0):
        """Cross-entropy of each line's tokens and its END, given START and the tokens before.
        During the warm-up (``warmup`` > 0, the share of it still ahead) plus ``warmup`` times
        the guided-attention penalty (``guided_attention``): the last layer's cross-attention
        is drawn towards the diagonal, as the LSTM's window is guided, which the text's
        attention otherwise finds only late."""
        B, T = batch.mask.shape
        n = batch.mask.sum(1).long().tolist()
        target = torch.full((B, T + 1), -100, dtype=torch.long)
        inputs = torch.full((B, T + 1), self.END, dtype=torch.long)
        inputs[:, 0] = self.START
        for b in range(B):
            tok = torch.from_numpy(self.line_tokens(batch.targets[b, :n[b]].numpy()))
            target[b, :n[b]] = tok
            target[b, n[b]] = self.END
            inputs[b, 1:n[b] + 1] = tok
        if warmup > 0:
            logits, attn = self(inputs, batch.text, attention=True)
        else:
            logits, attn = self(inputs, batch.text), None
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                              reduction="sum")
        if attn is not None:
            nll = nll + warmup * guided_attention(attn, torch.tensor(n) + 1, (batch.text > 0).sum(1))
        return nll, torch.tensor(float(sum(n) + B))

    # -- sampling -------------------------------------------------------------------------------
    def start(self, tables, primers: list):
        """The batch's lines ready to write; one primer for the whole batch (its tokens are the
        prefix every row's cache starts from), so a batch mixing styles is refused."""
        self.eval()
        if any(p is not primers[0] for p in primers):
            raise HandsynthError("the transformer writes one style per batch: sample other styles' lines apart")
        return TransformerStep(self, tables, primers[0] if primers else None)


def guided_attention(attn: torch.Tensor, steps: torch.Tensor, chars: torch.Tensor,
                     width: float = GUIDE_WIDTH) -> torch.Tensor:
    """The guided-attention penalty (Tachibana et al. 2018): the attention weight (B, T, U) of
    each row's first ``steps`` steps over its ``chars`` characters, weighted by
    ``1 - exp(-(u/U - t/T)^2 / (2 width^2))`` (0 on the diagonal, near 1 far from it), summed.
    A line written at an even pace attends to its characters in turn; the penalty only says
    where to start looking."""
    B, T, U = attn.shape
    t = (torch.arange(T, dtype=torch.float32)[None, :, None] + 0.5) / steps.float()[:, None, None]
    u = (torch.arange(U, dtype=torch.float32)[None, None, :] + 0.5) / chars.float().clamp(min=1)[:, None, None]
    w = 1 - torch.exp(-((u - t) ** 2) / (2 * width ** 2))
    valid = (torch.arange(T)[None, :, None] < steps[:, None, None]) & (torch.arange(U)[None, None, :] < chars[:, None, None])
    return (attn.float() * w * valid).sum()


def factored_draw(logits: torch.Tensor, kinds: torch.Tensor, bias: np.ndarray, u_kind: np.ndarray,
                  u: np.ndarray) -> np.ndarray:
    """One token per row, in two draws: first what kind of step it is, a pen-down move, a move
    that lifts the pen after it or END (``kinds``: 0, 1, 2 per token), from the model's own
    probabilities at temperature 1 (uniform ``u_kind``); then the move itself among that kind's
    tokens, sharpened by ``bias`` (``nucleus_draw``, uniform ``u``). As the LSTM's bias sharpens
    its mixture but not its end-of-stroke probability: with the joint token, a low temperature
    starved the pen lifts, whose mass is spread over many more bins than the pen-down moves'."""
    p = torch.softmax(logits.float(), -1)
    mass = torch.zeros(p.shape[0], 3).index_add_(1, kinds, p)
    cum = mass.cumsum(-1)
    target = torch.from_numpy(np.asarray(u_kind, np.float32))[:, None] * cum[:, -1:]
    kind = torch.searchsorted(cum, target, right=True).clamp(max=2)   # a kind with mass (right: never an empty one)
    return nucleus_draw(logits.masked_fill(kinds[None, :] != kind, float("-inf")), bias, u)


def nucleus_draw(logits: torch.Tensor, bias: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One token per row from ``logits`` (B, V): temperature and nucleus from ``bias``, drawn by
    the inverse CDF at the row's uniform ``u`` (so a line's randomness is its own)."""
    b = torch.from_numpy(np.asarray(bias, np.float32))[:, None]
    p = torch.softmax(logits.float() / (1 / (1 + TEMPERATURE_SLOPE * b)), -1)
    top_p = torch.clamp(1 - TOP_P_SLOPE * b, min=MIN_TOP_P)
    # the nucleus lies within the NUCLEUS_K likeliest tokens wherever they hold top_p of the mass
    # (then only they are sorted: a sixth of a step's time at 4,097 tokens); otherwise sort all
    sp, idx = p.topk(min(NUCLEUS_K, p.shape[1]), -1)
    if not bool((sp.sum(-1, keepdim=True) >= top_p).all()):
        sp, idx = p.sort(-1, descending=True)
    c = sp.cumsum(-1)
    sp = torch.where(c - sp < top_p, sp, torch.zeros_like(sp))   # the nucleus (always the top token)
    c = sp.cumsum(-1)
    target = torch.from_numpy(np.asarray(u, np.float32))[:, None] * c[:, -1:]
    k = torch.searchsorted(c, target).clamp(max=sp.shape[1] - 1)
    return idx.gather(1, k).squeeze(1).numpy()


class TransformerStep:
    """A page's lines being written (a ``models.Stepper``): a KV cache per layer, the text's keys
    and values computed once, one token per live row per call."""

    stop = None

    @torch.no_grad()
    def __init__(self, model: Transformer, tables, primer):
        self.model, self.tb = model, tables
        B, U = tables.code.shape
        codes = torch.from_numpy(tables.code)
        memory, self.mask = model.encode_text(codes)
        self.cross = [blk.cross_attn.keys_values(memory) for blk in model.blocks]
        prefix = [model.START]
        if primer is not None and len(primer):
            prefix += model.line_tokens(primer).tolist()
        cap = tables.out_steps.shape[1]
        length = len(prefix) + cap
        if length > model.config.max_steps:
            raise HandsynthError(f"the style sample and the line need {length} pen steps; this transformer's "
                                 f"context holds {model.config.max_steps}")
        H, d = model.config.heads, model.config.d_model
        self.k = [torch.zeros(B, H, length, d // H) for _ in model.blocks]
        self.v = [torch.zeros(B, H, length, d // H) for _ in model.blocks]
        # each self-attention's query, key and value projections as one matmul
        self.qkv = [(torch.cat([blk.self_attn.q.weight, blk.self_attn.kv.weight]),
                     torch.cat([blk.self_attn.q.bias, blk.self_attn.kv.bias])) for blk in model.blocks]
        self.pos = 0
        self.rows = np.arange(B)
        self.progress = np.zeros(B, np.int64)
        self.done = np.zeros(B, bool)
        self.logits, self.attn = self._feed(torch.tensor(prefix).expand(B, len(prefix)))

    def _feed(self, tokens: torch.Tensor):
        """Append (B, L) tokens at ``pos``: fills the cache, returns the last position's logits
        and its last-layer cross-attention (B, U) averaged over heads."""
        m = self.model
        B, L = tokens.shape
        at = self.pos
        x = m.tokens(tokens) + m.step_pos(torch.arange(at, at + L))
        # one new token sees the whole cache: no mask needed
        allowed = None if L == 1 else torch.arange(at + L)[None, :] <= torch.arange(at, at + L)[:, None]
        last = len(m.blocks) - 1
        weights = None
        for i, blk in enumerate(m.blocks):
            a = blk.self_attn
            q, k, v = F.linear(blk.ln1(x), *self.qkv[i]).split(x.shape[-1], -1)
            self.k[i][:, :, at:at + L] = a.split(k)
            self.v[i][:, :, at:at + L] = a.split(v)
            y = F.scaled_dot_product_attention(a.split(q), self.k[i][:, :, :at + L], self.v[i][:, :, :at + L],
                                               attn_mask=allowed)
            x = x + a.merge(y)
            if i == last:   # only the last position matters from here on
                x = x[:, -1:]
            c = blk.cross_attn
            q = c.split(c.q(blk.ln2(x)))
            ck, cv = self.cross[i]
            if i == last:   # its weights are the alignment the policy reads
                s = (q @ ck.transpose(-1, -2)) / math.sqrt(q.shape[-1])
                w = torch.softmax(s.masked_fill(~self.mask, float("-inf")), -1)
                x = x + c.merge(w @ cv)
                weights = w
            else:
                x = x + c.merge(F.scaled_dot_product_attention(q, ck, cv, attn_mask=self.mask))
            x = x + blk.mlp(blk.ln3(x))
        self.pos += L
        return m.head(m.ln(x))[:, -1], weights[:, :, -1].mean(1)

    @torch.no_grad()
    def __call__(self, t: int) -> None:
        m, tb, rows = self.model, self.tb, self.rows
        U = tb.code.shape[1]
        # END only once the alignment has reached the text's last characters (a line the model
        # would end early, as a partly trained one does, writes on; the LSTM's stop rule waits
        # for its window to pass the end the same way)
        early = self.attn.argmax(1).numpy() < tb.ends[rows] - END_WITHIN
        if early.any():
            self.logits[torch.from_numpy(early), m.END] = float("-inf")
        tok = factored_draw(self.logits, m.kinds, tb.bias[rows], tb.noise[rows, t, 1], tb.noise[rows, t, 0])
        end = (tok == m.END) | self.done
        safe = np.where(end, 0, tok)
        out = m._tok().decode(safe)
        # END: no move and the pen up (in standardised units: the move that unstandardises to zero)
        out[end, :2] = tb.zero
        out[end, 2] = 1.0
        tb.out_steps[rows, t] = out
        attn = self.attn.numpy()
        phi = np.zeros((len(rows), U + 1), np.float32)
        phi[:, :U] = attn
        phi[end] = 0.0
        phi[end, tb.ends[rows[end]]] = 1.0   # all "after the end" once the model has ended the line
        tb.phi_all[rows, t] = phi
        self.done |= end
        tb.passed[rows] |= self.done
        self.progress = np.where(self.done, tb.ends[rows] - tb.prefix[rows],
                                 np.maximum(attn.argmax(1) - tb.prefix[rows], 0))
        feed = torch.from_numpy(np.where(end, m.END, tok).astype(np.int64))[:, None]
        self.logits, self.attn = self._feed(feed)

    def select(self, keep: np.ndarray) -> None:
        idx = torch.from_numpy(np.flatnonzero(keep))
        self.rows, self.progress, self.done = self.rows[keep], self.progress[keep], self.done[keep]
        self.k = [k[idx] for k in self.k]
        self.v = [v[idx] for v in self.v]
        self.cross = [(k[idx], v[idx]) for k, v in self.cross]
        self.mask = self.mask[idx]
        self.logits, self.attn = self.logits[idx], self.attn[idx]
