"""The Graves (2013) synthesis network and its mixture-density head.

Layer 1 is an LSTM cell stepped together with the soft attention window over the text; layers
2..L are LSTMs that see the pen input, the window and the layer below (skip connections); the
head reads all layers and outputs ``1 + 6M`` numbers per step: the end-of-stroke logit, then M
mixture weights, means (x, y), log standard deviations (x, y) and correlations.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import native

LOG_2PI = math.log(2 * math.pi)
# the window's exponents -beta (kappa - u)^2 are clamped from below: exp(-60) is 1e-26 of a window
# weight, and exp's underflow path (exponents below about -87) is ten times slower
WINDOW_EXP_FLOOR = -60.0


@dataclass(frozen=True)
class ModelConfig:
    alphabet_size: int = 83     # characters + the padding symbol 0 (set from the corpus)
    hidden: int = 400
    layers: int = 3
    window_k: int = 10          # Gaussians in the attention window
    mixtures: int = 20          # bivariate Gaussians in the output mixture
    kappa_scale: float = 0.1    # window step per pen step is exp(kappa_hat) * kappa_scale

    @classmethod
    def preset(cls, name: str, alphabet_size: int) -> "ModelConfig":
        sizes = {"full": dict(hidden=400, layers=3, window_k=10, mixtures=20),
                 "small": dict(hidden=200, layers=3, window_k=10, mixtures=20),
                 "tiny": dict(hidden=32, layers=2, window_k=3, mixtures=4)}
        if name not in sizes:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(sizes)}")
        return cls(alphabet_size=alphabet_size, **sizes[name])

    @property
    def outputs(self) -> int:
        return 1 + 6 * self.mixtures

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class State:
    """Recurrent state for stepping the network one pen point at a time."""
    h: list          # per layer (B, H)
    c: list          # per layer (B, H)
    kappa: torch.Tensor  # (B, K) window positions
    w: torch.Tensor      # (B, A) last window vector

    def select(self, keep: torch.Tensor) -> "State":
        return State([h[keep] for h in self.h], [c[keep] for c in self.c], self.kappa[keep], self.w[keep])


class StepLinear:
    """x @ W^T + b for the sampling step, W (out, in) prepared once per batch in ``dtype``. In
    bfloat16 the weight is prepacked into oneDNN's blocked layout: measured here, a step's four
    matmuls then take 0.52 ms instead of 0.78 ms for 20 rows (0.16 vs 0.31 ms for one row), with
    the same results. Float32 stays on addmm, whose rows do not depend on the batch size. (The
    training loop's per-step matmuls gained nothing from it.)"""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype):
        self.dtype, self.in_features = dtype, weight.shape[1]
        self.bias, self.packed = bias.detach().to(dtype), None
        if dtype == torch.bfloat16 and torch.backends.mkldnn.is_available():
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(dtype).contiguous(), 16)
                probe = self(torch.zeros(1, self.in_features, dtype=dtype))   # 0 @ W + b must be b
                if not torch.equal(probe[0], self.bias):
                    self.packed = None
            except (AttributeError, RuntimeError, NotImplementedError):   # a build without the ops: addmm
                self.packed = None
        self.weight_t = None if self.packed is not None else weight.detach().t().contiguous().to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return torch.addmm(self.bias, x, self.weight_t)


class Synthesizer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = cfg = config
        A, H = cfg.alphabet_size, cfg.hidden
        self.cell1 = nn.LSTMCell(3 + A, H)
        self.window = nn.Linear(H, 3 * cfg.window_k)
        self.upper = nn.ModuleList([nn.LSTM(3 + A + H, H, batch_first=True) for _ in range(cfg.layers - 1)])
        self.head = nn.Linear(cfg.layers * H, cfg.outputs)
        with torch.no_grad():  # start with a window that moves about one character per 11 steps
            self.window.bias[2 * cfg.window_k:].fill_(math.log(1 / 11 / cfg.kappa_scale))

    # ------------------------------------------------------------------------------------------
    def initial_state(self, batch: int) -> State:
        cfg, p = self.config, self.head.weight
        z = lambda *s: torch.zeros(*s, dtype=p.dtype, device=p.device)  # noqa: E731
        return State([z(batch, cfg.hidden) for _ in range(cfg.layers)],
                     [z(batch, cfg.hidden) for _ in range(cfg.layers)],
                     z(batch, cfg.window_k), z(batch, cfg.alphabet_size))

    def onehot(self, text: torch.Tensor) -> torch.Tensor:
        """(B, U) codes -> (B, U, A) one-hot with padding rows zeroed."""
        oh = F.one_hot(text, self.config.alphabet_size).to(self.head.weight.dtype)
        oh[..., 0] = 0
        return oh

    def _window(self, h1, kappa, onehot, weights=None):
        """One step of the attention window. Returns (w, kappa, phi) with phi over U+1 positions
        (the last one is 'after the text', used by the stop rule). ``onehot``'s padding rows are
        zero, so padding gets no weight. ``weights``: the window layer's (W^T, b) from
        ``step_weights``."""
        K = self.config.window_k
        W, b = weights if weights is not None else (self.window.weight.t(), self.window.bias)
        p = torch.addmm(b, h1.to(W.dtype), W).float().exp()
        kappa = torch.add(kappa, p[:, 2 * K:], alpha=self.config.kappa_scale)
        U = onehot.shape[1]
        d = kappa.unsqueeze(2) - _positions(U + 1, kappa.dtype)
        E = (d * d * p[:, K:2 * K].unsqueeze(2)).clamp(max=-WINDOW_EXP_FLOOR).neg().exp()
        phi = torch.bmm(p[:, :K].unsqueeze(1), E).squeeze(1)
        w = torch.bmm(phi[:, None, :U].to(onehot.dtype), onehot).squeeze(1).float()
        return w, kappa, phi

    def forward(self, inputs: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                return_phi: bool = False, forced_kappa: torch.Tensor | None = None, blend: float = 0.0):
        """Teacher-forced pass over whole lines.

        inputs (B, T, 3), text (B, U) codes (0 = padding), text_mask (B, U) (not needed: padding
        code 0 has an all-zero one-hot row, so it gets no weight). ``forced_kappa`` (B, T, K), mixed
        with the learned window position by ``blend`` in [0, 1], is the attention warm-up.
        Returns the head's output (B, T, 1 + 6M), and phi (B, T, U + 1) if asked.
        """
        onehot = self.onehot(text)
        # layer 1 and the window step through time in _Layer1Window (time-major); its outputs
        # and the upper layers' are in the matmul dtype (bfloat16 under autocast)
        mm_dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else inputs.dtype
        x = inputs.transpose(0, 1)
        bias = (self.cell1.bias_ih + self.cell1.bias_hh).unsqueeze(1)
        W = torch.cat([self.cell1.weight_ih, self.cell1.weight_hh, bias], 1).t()
        fk = forced_kappa.transpose(0, 1).to(inputs.dtype) if forced_kappa is not None else None
        h1, wseq, phi = _Layer1Window.apply(x, W, self.window.weight.t(),
                                            self.window.bias, onehot, fk, float(blend),
                                            self.config.kappa_scale, mm_dtype, return_phi)
        xm = x.to(mm_dtype)
        outs, below = [h1], h1
        for lstm in self.upper:  # batch_first LSTMs take the time-major tensors as transposed views
            below, _ = lstm(torch.cat([xm, wseq, below], 2).transpose(0, 1))
            below = below.transpose(0, 1)
            outs.append(below)
        out = self.head(torch.cat(outs, 2)).transpose(0, 1)
        return (out, phi.transpose(0, 1)) if return_phi else out

    @torch.no_grad()
    def step_weights(self, dtype: torch.dtype = torch.float32) -> dict:
        """The weights of a sampling step, prepared once per batch: per layer the input and
        recurrent weights stacked into one matmul (``StepLinear``) with the summed bias, its gate
        columns ordered [i, f, o, g] with g's doubled (see ``_cell``); the head likewise.
        ``dtype`` bfloat16 halves the memory each step streams (the model is trained with
        bfloat16 matmuls); the window, whose position accumulates over the line, stays in float32.
        Kept until a parameter changes (preparing them costs about 20 ms)."""
        key = (dtype, tuple((p.data_ptr(), p._version) for p in self.parameters()))
        cached = self.__dict__.get("_step_weights")
        if cached is not None and cached[0] == key:
            return cached[1]
        H = self.config.hidden
        order = torch.cat([torch.arange(2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        scale = torch.ones(4 * H, 1)
        scale[3 * H:] = 2   # the g columns doubled: tanh(g) = 2 sigmoid(2g) - 1 (exact in any dtype)
        layers = [(self.cell1.weight_ih, self.cell1.weight_hh, self.cell1.bias_ih, self.cell1.bias_hh)]
        layers += [(m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0) for m in self.upper]
        weights = {"layers": [StepLinear(torch.cat([wi, wh], 1)[order] * scale, (bi + bh)[order] * scale[:, 0], dtype)
                              for wi, wh, bi, bh in layers],
                   "window": (self.window.weight.detach().t().contiguous(), self.window.bias.detach().clone()),
                   "head": StepLinear(self.head.weight, self.head.bias, dtype)}
        self.__dict__["_step_weights"] = (key, weights)
        return weights

    @staticmethod
    def _cell(parts, c, linear: StepLinear, H, h_dtype=torch.float32):
        """One LSTM cell step from ``step_weights``: gates = linear([*parts]) (the last part is
        the layer's own h; parts already in the matmul dtype make the concatenation a plain
        copy), gate order [i, f, o, g] with g doubled, so one sigmoid serves all four gates:
        tanh(x) = 2 sigmoid(2x) - 1, and on this CPU tanh costs over 3x a sigmoid. (For tanh(c),
        a quarter of the size, the trick's extra operations cost as much as they save.) Returns h
        (in ``h_dtype``) and c (float32)."""
        z = torch.cat(parts, 1, out=c.new_empty(c.shape[0], linear.in_features, dtype=linear.dtype))
        s = linear(z).float().sigmoid_()
        i = s[:, :H]
        c = torch.mul(s[:, H:2 * H], c).sub_(i).addcmul_(i, s[:, 3 * H:], value=2)   # f c + i tanh(g)
        return torch.mul(s[:, 2 * H:3 * H], c.tanh(), out=c.new_empty(c.shape, dtype=h_dtype)), c

    def _layer1_step(self, x, h, c, kappa, w, onehot, weights):
        """Layer 1 and the window for one pen step."""
        h, c = self._cell([x, w, h], c, weights["layers"][0], self.config.hidden)   # h in float32 for the window
        w, kappa, phi = self._window(h, kappa, onehot, weights["window"])
        return h, c, kappa, w, phi

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: State, onehot: torch.Tensor, text_mask: torch.Tensor | None = None,
             weights: dict | None = None):
        """One pen step for sampling: x (B, 3) -> (head output (B, 1 + 6M) float32, new state,
        phi (B, U + 1)). ``weights`` from ``step_weights()`` saves preparing them at every step.
        ``onehot``'s padding rows are zero, so ``text_mask`` is not needed here (kept for symmetry
        with ``forward``)."""
        weights = weights or self.step_weights()
        H, dt = self.config.hidden, weights["head"].dtype
        x = x.to(dt)   # h, w and x only ever feed matmuls: the state keeps them in the matmul dtype
        h, c, kappa, w, phi = self._layer1_step(x, state.h[0], state.c[0], state.kappa, state.w, onehot, weights)
        h, w = h.to(dt), w.to(dt)
        hs, cs = [h], [c]
        for i, linear in enumerate(weights["layers"][1:], 1):
            h, c = self._cell([x, w, h, state.h[i]], state.c[i], linear, H, dt)
            hs.append(h)
            cs.append(c)
        out = weights["head"](torch.cat(hs, 1, out=h.new_empty(h.shape[0], H * len(hs), dtype=dt))).float()
        return out, State(hs, cs, kappa, w), phi

    @torch.no_grad()
    def prime(self, inputs: torch.Tensor, onehot: torch.Tensor, weights: dict | None = None) -> State:
        """The state after feeding ``inputs`` (B, T, 3), the same as T calls of ``step`` but
        cheaper: layer 1 and the window step through time as in training (``_layer1_pass``, with
        the matmul dtype of ``weights``, float32 without), the upper layers (nn.LSTM) then run over
        the whole sequence at once, and the head is skipped (priming needs no outputs)."""
        cfg = self.config
        A3, T = 3 + cfg.alphabet_size, inputs.shape[1]
        mm_dtype = weights["head"].dtype if weights else torch.float32
        bias = (self.cell1.bias_ih + self.cell1.bias_hh).unsqueeze(1)
        W = torch.cat([self.cell1.weight_ih, self.cell1.weight_hh, bias], 1).t()
        Z, (_, Cs, _, Hs, _, _, _), _, _, kappa, _ = _layer1_pass(
            inputs.transpose(0, 1).float(), W, self.window.weight.t(), self.window.bias, onehot, None, 0.0,
            cfg.kappa_scale, mm_dtype, False, _Scratch())   # its own buffers: priming may run in several threads
        below, wseq = Hs.transpose(0, 1), Z[1:, :, 3:A3].transpose(0, 1).float()
        h_out, c_out = [Hs[T - 1].clone()], [Cs[T - 1].clone()]
        for lstm in self.upper:  # float32, as in forward
            below, (hn, cn) = lstm(torch.cat([inputs, wseq, below], 2))
            h_out.append(hn[0])
            c_out.append(cn[0])
        return State(h_out, c_out, kappa.clone(), wseq[:, -1].clone())


# layer 1 and the window over whole lines, with a hand-written backward ---------------------------
class _Scratch:
    """Buffers reused from one training step to the next. Writing to freshly allocated memory
    costs a page fault per 4 KB on first touch; for the per-pen-step writes of _Layer1Window that
    was over half of each operation's time (sigmoid of one step's gates: 12 us into reused
    memory, 60-110 us into fresh). ``owner`` is the autograd node whose backward still needs the
    buffers; while it lives, a second forward takes fresh memory instead."""

    def __init__(self):
        self.store: dict = {}
        self.owner = None

    def free(self) -> bool:
        return self.owner is None or self.owner() is None

    def take(self, name: str, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised (shape) tensor backed by the buffer ``name`` (grown when too small)."""
        n = math.prod(shape)
        buf = self.store.get((name, dtype))
        if buf is None or buf.numel() < n:
            buf = self.store[(name, dtype)] = torch.empty(n, dtype=dtype)
        return buf[:n].view(shape)


_FORWARD_SCRATCH, _BACKWARD_SCRATCH = _Scratch(), _Scratch()
_POSITIONS: dict = {}


def _positions(n: int, dtype: torch.dtype) -> torch.Tensor:
    """0, 1, ..., n - 1: the text positions the window weighs (cached; sampling asks every step)."""
    u = _POSITIONS.get((n, dtype))
    if u is None:
        u = _POSITIONS[(n, dtype)] = torch.arange(n, dtype=dtype)
    return u


def _cell_step(gates, c, a, c_out, tc_out, h_out, H):
    """One LSTM cell step of the training loop, into preallocated rows: ``a`` gets
    [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)], then c, tanh(c) and h. Returns (h, c).
    ``gates`` holds 2g in place of g (the caller doubles those weight columns), so one sigmoid
    serves all four gates: tanh(x) = 2 sigmoid(2x) - 1, and on this CPU tanh costs over 3x a
    sigmoid. Gates from a bfloat16 matmul are widened into ``a`` first: with a bfloat16 input,
    ``sigmoid(out=float32)`` computes and rounds in bfloat16 (a forget gate of 0.993 would land on
    a 0.004 grid), and a fresh (B, 4H) tensor per step would cost page faults."""
    a.copy_(gates)
    a.sigmoid_()
    a[:, 2 * H:3 * H].mul_(2).sub_(1)
    c = torch.mul(a[:, H:2 * H], c, out=c_out).addcmul_(a[:, :H], a[:, 2 * H:3 * H])
    return torch.mul(a[:, 3 * H:], torch.tanh(c, out=tc_out), out=h_out), c


def _cell_grad_factors(acts, Cs, TCs, ws):
    """Whole-sequence factors of the cell's backward: d gates = [dc * g * i', dc * c_prev * f',
    dc * i * g', dh * tanh(c) * o'] = [dc * Q[:, 0..2], dh * Ro], and dc += dh * Oc per step."""
    T, B, G = acts.shape
    H, dt = G // 4, acts.dtype
    i, f, g, o = acts.split(H, 2)
    Q = ws.take("Q", (T, B, 3, H), dt)
    sd = torch.sub(1, acts, out=ws.take("sd", acts.shape, dt)).mul_(acts)  # sigmoid' (the g part unused)
    torch.mul(g, sd[..., :H], out=Q[:, :, 0])
    torch.mul(Cs[:-1], sd[1:, :, H:2 * H], out=Q[1:, :, 1])
    Q[0, :, 1].zero_()
    torch.mul(g, g, out=Q[:, :, 2]).neg_().add_(1).mul_(i)
    Ro = torch.mul(TCs, sd[..., 3 * H:], out=ws.take("Ro", TCs.shape, dt))
    Oc = torch.mul(TCs, TCs, out=ws.take("Oc", TCs.shape, dt)).neg_().add_(1).mul_(o)
    return Q, Ro, Oc, torch.mul(f, 1, out=ws.take("f", TCs.shape, dt))


def _cell_grad_step(t, dh, dc, factors, dG, H):
    """The cell's backward for step t: writes d gates into dG (B, 4H); dc carries to t - 1."""
    Q, Ro, Oc, f = factors
    dc.addcmul_(dh, Oc[t])
    torch.mul(Q[t], dc.unsqueeze(1), out=dG[:, :3 * H].view(dG.shape[0], 3, H))
    torch.mul(dh, Ro[t], out=dG[:, 3 * H:])
    dc.mul_(f[t])


def _layer1_pass(x, W_rec, W_win, b_win, onehot, forced, blend, kappa_scale, mm_dtype, want_phi, ws: _Scratch):
    """Layer 1 and the window stepped through T pen steps without autograd: ``_Layer1Window``'s
    forward (arguments as there; buffers from ``ws``), also used for priming. Returns Z, the
    buffers the backward needs (acts, Cs, TCs, Hs, P, Ks, Es), Phi (T, B, 1, U + 1), the character
    codes (B, U + 1), the final learned window position (B, K), and the compiled step that ran
    (``native.TrainStep``; None when the PyTorch loop ran)."""
    T, B, _ = x.shape
    H, (U, A), K = W_rec.shape[1] // 4, onehot.shape[1:], W_win.shape[1] // 3
    dt, A3 = x.dtype, 3 + A
    W, Ww, bw = W_rec.detach().to(mm_dtype, copy=True), W_win.detach().to(dt), b_win.detach().to(dt)
    W[:, 2 * H:3 * H] *= 2      # 2g for _cell_step (exact in any dtype); the backward uses W_rec
    oh = torch.cat([onehot.detach().to(dt), onehot.new_zeros(B, 1, A, dtype=dt)], 1)
    code = oh.argmax(2)     # (B, U + 1) character codes; padding and 'after the text' -> 0
    Z = ws.take("Z", (T + 1, B, A3 + H + 1), mm_dtype)      # Z[t] = [x_t, w_{t-1}, h_{t-1}, 1]
    Z[0, :, 3:].zero_()
    Z[T, :, :3].zero_()
    Z[:T, :, :3] = x
    Z[:, :, -1] = 1
    acts, Cs, TCs = ws.take("acts", (T, B, 4 * H), dt), ws.take("c", (T, B, H), dt), ws.take("tc", (T, B, H), dt)
    Hs, P, Ks = ws.take("h", (T, B, H), dt), ws.take("p", (T, B, 3 * K), dt), ws.take("k", (T, B, K), dt)
    Es, w = ws.take("E", (T, B, K, U + 1), dt), ws.take("w", (B, 1, A), dt)
    Phi = x.new_empty(T, B, 1, U + 1) if want_phi else ws.take("phi", (T, B, 1, U + 1), dt)
    gb = ws.take("gates", (B, 4 * H), mm_dtype)
    lib = native.train_library(dt, mm_dtype, H, A, K, U + 1)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        if lib is not None:   # the work between the matmuls compiled (native_step.c)
            step = native.TrainStep(lib, Z, acts, Cs, TCs, Hs, P, Ks, Es, Phi, Ww, bw, code,
                                    forced, float(blend), kappa_scale, WINDOW_EXP_FLOOR)
            for t in range(T):
                step.forward(t, torch.mm(Z[t], W, out=gb))
            return Z, (acts, Cs, TCs, Hs, P, Ks, Es), Phi, code, step.kappa, step
        c, kappa, u = x.new_zeros(B, H), x.new_zeros(B, K), _positions(U + 1, dt)
        for t in range(T):
            h, c = _cell_step(torch.mm(Z[t], W, out=gb), c, acts[t], Cs[t], TCs[t], Hs[t], H)
            Z[t + 1, :, A3:-1] = h
            p = torch.addmm(bw, h, Ww, out=P[t]).exp_()     # the window's matmul in float32, as sampling's
            if forced is None:
                kappa = k = torch.add(kappa, p[:, 2 * K:], alpha=kappa_scale, out=Ks[t])
            else:
                kappa = torch.add(kappa, p[:, 2 * K:], alpha=kappa_scale)
                k = torch.lerp(kappa, forced[t], blend, out=Ks[t])
            d = k.unsqueeze(2) - u
            E = torch.exp(d.mul_(d).mul_(p[:, K:2 * K].unsqueeze(2)).clamp_(max=-WINDOW_EXP_FLOOR).neg_(), out=Es[t])
            phi = torch.bmm(p[:, :K].unsqueeze(1), E, out=Phi[t])
            Z[t + 1, :, 3:A3] = torch.bmm(phi, oh, out=w).squeeze(1)
    return Z, (acts, Cs, TCs, Hs, P, Ks, Es), Phi, code, kappa, None


class _Layer1Window(torch.autograd.Function):
    """Layer 1 and the attention window stepped through T pen steps (time-major), for training.

    The same recurrence as ``Synthesizer._cell`` + ``Synthesizer._window`` (tests check it
    against stepping, and its gradients numerically), written so that each pen step costs a
    handful of operations: the forward runs without autograd's bookkeeping and writes what the
    backward needs into reused (T, ...) buffers; the backward folds everything that does not
    depend on the gradient flowing back through time into whole-sequence tensors before its
    loop, and computes the weight gradients afterwards as one GEMM each instead of one per step.

    Inputs: x (T, B, 3) pen offsets; W (3 + A + H + 1, 4H) the stacked pen-input, window and
    recurrent weights and the bias (row order of Z below); W_win (H, 3K), b_win (3K,) the window
    layer; onehot (B, U, A) (padding rows zero); forced (T, B, K) or None and blend, the attention
    warm-up; mm_dtype for the matmuls (bfloat16 under autocast). Returns h (T, B, H) and w (T, B,
    A) in mm_dtype (views of the matmul input buffer Z: use them before the next call), and phi
    (T, B, U + 1) when ``want_phi`` (it carries no gradient).
    """

    @staticmethod
    def forward(ctx, x, W_rec, W_win, b_win, onehot, forced, blend, kappa_scale, mm_dtype, want_phi):
        ws = _FORWARD_SCRATCH if _FORWARD_SCRATCH.free() else _Scratch()
        ws.owner = weakref.ref(ctx)
        Z, buffers, Phi, code, _, ctx.native = _layer1_pass(x.detach(), W_rec, W_win, b_win, onehot, forced, blend,
                                                            kappa_scale, mm_dtype, want_phi, ws)
        ctx.save_for_backward(W_rec)
        ctx.buffers = (Z, *buffers, code, W_win.detach())
        ctx.blend, ctx.kappa_scale, ctx.has_forced = blend, kappa_scale, forced is not None
        phi_out = Phi.squeeze(2) if want_phi else x.new_zeros(0)
        ctx.mark_non_differentiable(phi_out)
        A3 = 3 + onehot.shape[2]
        return Z[1:, :, A3:-1], Z[1:, :, 3:A3], phi_out

    @staticmethod
    def backward(ctx, gH, gW, _gphi):
        W_rec, = ctx.saved_tensors
        Z, acts, Cs, TCs, Hs, P, Ks, Es, code, W_win = ctx.buffers
        T, B, G = acts.shape
        H, K, U1, dt, mm_dtype = G // 4, W_win.shape[1] // 3, code.shape[1], acts.dtype, Z.dtype
        A3 = Z.shape[2] - H - 1
        gH = gH if gH is not None else Hs.new_zeros(T, B, H)
        gW = gW if gW is not None else Hs.new_zeros(T, B, A3 - 3)
        ws = _BACKWARD_SCRATCH
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            WT = W_rec.detach().to(mm_dtype, copy=True).t()
            WT[:, 3] = 0        # w's column 0 (padding) is always 0: no gradient flows back through it
            gW = gW.to(dt, copy=True)
            gW[:, :, 0] = 0
            WwT = W_win.to(dt).t()
            dGb = ws.take("dG", (T, B, G), mm_dtype)
            dA = ws.take("dA", (T, B, 3 * K), dt)
            if ctx.native is not None and gH.dtype == mm_dtype:
                # compiled (native_step.c): per step, everything but the gradient's matmul
                ctx.native.start_backward(gH, gW, dA, dGb)
                dz = ws.take("dz", (B, WT.shape[1]), mm_dtype)
                for t in range(T - 1, -1, -1):
                    ctx.native.backward(t, dz if t < T - 1 else None)
                    if t > 0:
                        torch.mm(dGb[t], WT, out=dz)
            else:
                _layer1_window_backward_loop(ctx, gH, gW, WT, WwT, dGb, dA, ws)
            G2 = dGb.view(T * B, G)
            dW_rec = torch.mm(Z[:T].view(T * B, -1).t(), G2).to(dt)     # the bias row included
            dx = torch.mm(G2, WT[:, :3]).to(dt).view(T, B, 3) if ctx.needs_input_grad[0] else None
            dA2 = dA.view(T * B, 3 * K)
            dW_win = torch.mm(Hs.view(T * B, H).t(), dA2)
            db_win = dA2.sum(0)
        return dx, dW_rec, dW_win, db_win, None, None, None, None, None, None


def _layer1_window_backward_loop(ctx, gH, gW, WT, WwT, dGb, dA, ws):
    """_Layer1Window's backward through time in PyTorch operations: writes d loss / d gates
    (dGb) and d loss / d window logits (dA) per step."""
    Z, acts, Cs, TCs, Hs, P, Ks, Es, code, W_win = ctx.buffers
    T, B, G = acts.shape
    H, K, U1, dt = G // 4, W_win.shape[1] // 3, code.shape[1], acts.dtype
    A3 = Z.shape[2] - H - 1
    lam = 1.0 - ctx.blend if ctx.has_forced else 1.0    # d k / d kappa
    # the window: per step, the gradient w.r.t. its (alpha, beta, kappa) logits is
    # M[t] (B, 3K, U+1) applied to d loss / d phi, with M built here for all steps at once
    alpha, beta, kstep = P[..., :K], P[..., K:2 * K], P[..., 2 * K:] * ctx.kappa_scale
    d = torch.sub(Ks.unsqueeze(3), _positions(U1, dt), out=ws.take("d", Es.shape, dt))
    M = ws.take("M", (T, B, 3, K, U1), dt)
    EA = torch.mul(Es, alpha.unsqueeze(3), out=M[:, :, 0])
    EAd = torch.mul(EA, d, out=ws.take("EAd", d.shape, dt))
    torch.mul(EAd, d, out=M[:, :, 1]).mul_(-beta.unsqueeze(3))
    torch.mul(EAd, (-2 * lam) * beta.unsqueeze(3), out=M[:, :, 2])
    M = M.view(T, B, 3 * K, U1)
    factors = _cell_grad_factors(acts, Cs, TCs, ws)
    Mp = ws.take("Mp", (B, 3 * K, U1), dt)
    dh_next, dw_next = Hs.new_zeros(B, H), Hs.new_zeros(B, A3 - 3)
    dc, dkappa = Hs.new_zeros(B, H), Hs.new_zeros(B, K)
    for t in range(T - 1, -1, -1):
        dw = dw_next.add(gW[t])
        dphi = torch.gather(dw, 1, code)          # d loss / d phi: dw at each position's character
        r = torch.sum(torch.mul(M[t], dphi.unsqueeze(1), out=Mp), 2, out=dA[t])
        dkappa.add_(r[:, 2 * K:])
        torch.mul(dkappa, kstep[t], out=r[:, 2 * K:])
        dh = torch.addmm(dh_next.add_(gH[t]), r, WwT)
        _cell_grad_step(t, dh, dc, factors, dGb[t], H)    # d gates straight into the matmul dtype
        dz = torch.mm(dGb[t], WT).to(dt)
        dw_next, dh_next = dz[:, 3:A3], dz[:, A3:-1]


# mixture-density head ---------------------------------------------------------------------------
def mixture_params(out: torch.Tensor, bias: float | torch.Tensor = 0.0):
    """Head output (..., 1 + 6M) -> (eos_logit, log_pi, mu1, mu2, log_s1, log_s2, rho), with
    Graves' sampling bias: pi = softmax(pi_hat * (1 + b)), sigma = exp(sigma_hat - b)."""
    out = out.float()
    M = (out.shape[-1] - 1) // 6
    e_hat = out[..., 0]
    pi_hat, mu1, mu2, ls1, ls2, rho_hat = out[..., 1:].split(M, -1)
    if isinstance(bias, torch.Tensor):
        bias = bias.reshape(bias.shape + (1,) * (pi_hat.dim() - bias.dim()))
    log_pi = torch.log_softmax(pi_hat * (1 + bias), -1)
    rho = torch.tanh(rho_hat) * (1 - 1e-5)
    return e_hat, log_pi, mu1, mu2, ls1 - bias, ls2 - bias, rho


def log_likelihood(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """log p(target | out) per step (...,): mixture of bivariate Gaussians over (dx, dy) via
    log-sum-exp, plus the Bernoulli end_of_stroke term."""
    e_hat, log_pi, mu1, mu2, ls1, ls2, rho = mixture_params(out)
    x1, x2, e = target[..., 0:1].float(), target[..., 1:2].float(), target[..., 2].float()
    z1, z2 = (x1 - mu1) * torch.exp(-ls1), (x2 - mu2) * torch.exp(-ls2)
    one_m_rho2 = 1 - rho ** 2
    log_n = (-LOG_2PI - ls1 - ls2 - 0.5 * torch.log(one_m_rho2)
             - (z1 ** 2 + z2 ** 2 - 2 * rho * z1 * z2) / (2 * one_m_rho2))
    log_xy = torch.logsumexp(log_pi + log_n, -1)
    log_e = -F.binary_cross_entropy_with_logits(e_hat, e, reduction="none")
    return log_xy + log_e


def sample_mixture(out, bias=0.0, noise=None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw one (dx, dy, end_of_stroke) per row of ``out`` (B, 1 + 6M), with Graves' bias (a
    number or one per row): the same distribution as ``mixture_params`` describes. ``noise``
    (B, 6): uniforms in columns 0-3 and standard normals in 4-5, drawn from ``rng`` when not
    given. Works in numpy: per pen step of sampling this is a few dozen operations on tiny
    arrays, where numpy's per-call cost is a fraction of torch's."""
    out = np.asarray(out, np.float32)
    B, M = out.shape[0], (out.shape[1] - 1) // 6
    b = np.broadcast_to(np.asarray(bias, np.float32), (B,))
    if noise is None:
        rng = rng if rng is not None else np.random.default_rng()
        noise = np.concatenate([rng.random((B, 4)), rng.standard_normal((B, 2))], 1)
    noise = np.asarray(noise, np.float32)
    pi_hat = out[:, 1:1 + M] * (1 + b[:, None])
    cdf = np.exp(pi_hat - pi_hat.max(1, keepdims=True)).cumsum(1)
    k = np.minimum((cdf < noise[:, :1] * cdf[:, -1:]).sum(1), M - 1)
    cols = 1 + k + M * np.arange(1, 6)[:, None]          # (5, B): mu1, mu2, log s1, log s2, rho_hat
    m1, m2, ls1, ls2, rho_hat = out[np.arange(B), cols]
    s1, s2, r = np.exp(ls1 - b), np.exp(ls2 - b), np.tanh(rho_hat) * (1 - 1e-5)
    n1, n2 = noise[:, 4], noise[:, 5]
    x = m1 + s1 * n1
    y = m2 + s2 * (r * n1 + np.sqrt(1 - r * r) * n2)
    e = (noise[:, 1] < 1 / (1 + np.exp(-out[:, 0]))).astype(np.float32)
    return np.stack([x, y, e], 1)


def load_checkpoint_model(path, map_location="cpu") -> tuple[Synthesizer, dict]:
    """A model from a checkpoint or exported weights file (config, alphabet and normalisation
    travel in the file). Returns (model in eval mode, the file's metadata dict)."""
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    config = ModelConfig(**ckpt["config"])
    model = Synthesizer(config)
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
    model.eval()
    return model, ckpt
