"""The Graves (2013) synthesis network and its mixture-density head: the ``graves`` family.

Layer 1 is an LSTM cell stepped together with the soft attention window over the text; layers
2..L are LSTMs that see the pen input, the window and the layer below (skip connections); the
head reads all layers and outputs ``1 + 6M`` numbers per step: the end-of-stroke logit, then M
mixture weights, means (x, y), log standard deviations (x, y) and correlations.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...alphabet import Alphabet
from ...errors import HandsynthError
from .. import SynthesisModel
from . import native
from .kernel import WINDOW_EXP_FLOOR, _Layer1Window, _layer1_pass, _positions, _Scratch

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GravesConfig:
    alphabet_size: int = 83     # characters + the padding symbol 0 (set from the corpus)
    hidden: int = 400
    layers: int = 3
    window_k: int = 10          # Gaussians in the attention window
    mixtures: int = 20          # bivariate Gaussians in the output mixture
    kappa_scale: float = 0.1    # window step per pen step is exp(kappa_hat) * kappa_scale

    @classmethod
    def preset(cls, name: str, alphabet_size: int) -> "GravesConfig":
        sizes = {"full": dict(hidden=400, layers=3, window_k=10, mixtures=20),
                 "small": dict(hidden=200, layers=3, window_k=10, mixtures=20),
                 "tiny": dict(hidden=32, layers=2, window_k=3, mixtures=4)}
        if name not in sizes:
            raise HandsynthError(f"unknown graves preset {name!r}: use {', '.join(sizes)}")
        return cls(alphabet_size=alphabet_size, **sizes[name])

    @property
    def outputs(self) -> int:
        return 1 + 6 * self.mixtures

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GravesConfig":
        return cls(**d)


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


class Synthesizer(SynthesisModel):
    arch = "graves"
    Config = GravesConfig
    mixes_styles = True

    def __init__(self, config: GravesConfig):
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

    def forward(self, inputs: torch.Tensor, text: torch.Tensor, return_phi: bool = False,
                forced_kappa: torch.Tensor | None = None, blend: float = 0.0):
        """Teacher-forced pass over whole lines.

        inputs (B, T, 3), text (B, U) codes (0 = padding: its all-zero one-hot row gets no
        weight). ``forced_kappa`` (B, T, K), mixed with the learned window position by ``blend``
        in [0, 1], is the attention warm-up.
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

    def __getstate__(self):
        """Copies and pickles leave out the sampling step's prepared weights (``step_weights``):
        they are rebuilt on first use, and bfloat16 ones in oneDNN's blocked layout cannot be
        copied at all."""
        state = dict(self.__dict__)
        state.pop("_step_weights", None)
        return state

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
    def step(self, x: torch.Tensor, state: State, onehot: torch.Tensor, weights: dict | None = None):
        """One pen step for sampling: x (B, 3) -> (head output (B, 1 + 6M) float32, new state,
        phi (B, U + 1)). ``weights`` from ``step_weights()`` saves preparing them at every step.
        ``onehot``'s padding rows are zero, so padding gets no weight."""
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

    # the family interface (handsynth.models.SynthesisModel) -------------------------------------
    def loss(self, batch, warmup: float = 0.0):
        """(summed NLL, pen steps) of a batch. ``warmup`` > 0 blends a constant-speed guide into
        the window position with that share (the attention warm-up, ``guided_kappa``)."""
        forced = guided_kappa(batch, self.config.window_k) if warmup > 0 else None
        out = self(batch.inputs, batch.text, forced_kappa=forced, blend=warmup)
        with torch.autocast("cpu", enabled=False):   # the likelihood in float32
            nll = -(log_likelihood(out, batch.targets) * batch.mask)
        return nll.sum(), batch.mask.sum()

    @torch.no_grad()
    def adopt(self, state: dict, old_chars: str, new_chars: str, fill: dict | None = None) -> None:
        """Warm start on a grown alphabet: the one-hot window vector enters the first layer after
        the 3 pen inputs and every upper layer between them and the layer below; each known
        character's input columns move to its new place, a new character starts from the mean
        of the known characters' columns plus a little noise (it then learns apart from them),
        or, with ``fill`` (a state of this network's shape), from that state's columns."""
        A = self.config.alphabet_size
        old_of = torch.from_numpy(Alphabet(new_chars).codes_in(old_chars))
        if len(old_of) != A:
            raise HandsynthError(f"warm start: {len(new_chars)} characters for a network of {A - 1}")
        known = old_of >= 0
        g = torch.Generator().manual_seed(0)
        state = {k: v.float() for k, v in state.items()}
        for name in ["cell1.weight_ih"] + [f"upper.{i}.weight_ih_l0" for i in range(self.config.layers - 1)]:
            W = state[name]
            chars = W[:, 3:3 + len(old_chars) + 1]
            mean = chars[:, 1:].mean(1, keepdim=True)
            spread = chars[:, 1:].std() * 0.1
            fresh = (fill[name].float()[:, 3:3 + A] if fill is not None
                     else mean + spread * torch.randn(W.shape[0], A, generator=g))
            grown = torch.where(known[None, :], chars[:, old_of.clamp(min=0)], fresh)
            state[name] = torch.cat([W[:, :3], grown, W[:, 3 + len(old_chars) + 1:]], 1)
        self.load_state_dict(state)

    def start(self, tables, primers: list):
        """A batch of lines ready to write (see ``SynthesisModel.start``): the compiled step
        where it runs, else the PyTorch one. Each text (row r writes text r % tables.n_texts) is
        primed once, texts of one primer together; its candidates share the state."""
        self.eval()
        B, U = tables.code.shape
        n = tables.n_texts
        dtype = torch.bfloat16 if tables.options.bf16 else torch.float32
        weights = self.step_weights(dtype)
        onehot = self.onehot(torch.from_numpy(tables.code))
        state = self.initial_state(B)
        x = torch.zeros(B, 3)
        x[:, 2] = 1.0  # the start token
        by_primer: dict[int, tuple] = {}
        for k, p in enumerate(primers):
            if p is not None and len(p):
                by_primer.setdefault(id(p), (p, []))[1].append(k)
        text_of_row = np.arange(B) % n
        for p, ks in by_primer.values():
            p = torch.from_numpy(p)
            inputs = torch.cat([x[:1], p[:-1]]).expand(len(ks), len(p), 3)  # start token, then the primer
            primed = self.prime(inputs, onehot[ks], weights)
            rows = np.flatnonzero(np.isin(text_of_row, ks))
            place = {k: i for i, k in enumerate(ks)}
            got = primed.select(torch.tensor([place[k] for k in text_of_row[rows]]))
            r = torch.from_numpy(rows)
            for mine, theirs in zip(state.h + state.c + [state.kappa, state.w], got.h + got.c + [got.kappa, got.w]):
                mine[r] = theirs.to(mine.dtype)
            x[r] = p[-1]
        lib = native.library() if native.supports(self.config, dtype, U + 1) else None
        if lib is not None:
            return native.NativeStep(lib, self, weights, state, x, tables, WINDOW_EXP_FLOOR)
        return TorchStep(self, weights, state, onehot, x, tables)


class TorchStep:
    """One pen step for the rows still being written, in PyTorch and numpy: the network's step,
    the mixture draw, recording, and the window's end signal (a ``models.Stepper``; the
    sampler applies the stop rule). ``native.NativeStep`` does the same with the work between
    the matmuls compiled, and the stop rule fused."""

    stop = None

    def __init__(self, model, weights, state, onehot, x, tables):
        self.model, self.weights, self.state, self.onehot, self.x, self.tb = model, weights, state, onehot, x, tables
        self.rows = np.arange(x.shape[0])
        self.outside = np.where(tables.code > 0, 0.0, -np.inf).astype(np.float32)  # padding never counts as 'inside'

    def __call__(self, t: int) -> None:
        tb, rows, U = self.tb, self.rows, self.tb.code.shape[1]
        out, self.state, phi = self.model.step(self.x, self.state, self.onehot, self.weights)
        ph = phi.numpy()
        xs = sample_mixture(out.numpy(), tb.bias[rows], tb.noise[rows, t])
        tb.out_steps[rows, t] = xs
        tb.phi_all[rows, t] = ph
        # Graves' stop rule: phi after the last character outweighs every character's phi
        last = ph[np.arange(len(rows)), tb.ends[rows]]
        inside = (ph[:, :U] + self.outside[rows]).max(1)
        tb.passed[rows] |= last > inside
        self.progress = np.maximum(ph[:, :U].argmax(1) - tb.prefix[rows], 0)
        self.x = torch.from_numpy(xs)

    def select(self, keep: np.ndarray):
        k = torch.from_numpy(keep)
        self.rows = self.rows[keep]
        self.state, self.onehot, self.x = self.state.select(k), self.onehot[k], self.x[k]


def guided_kappa(batch, K: int) -> torch.Tensor:
    """The attention warm-up's constant-speed window position (B, T, K)."""
    T = batch.inputs.shape[1]
    rate = batch.text_mask.sum(1) / batch.mask.sum(1).clamp(min=1)
    return (torch.arange(T, dtype=torch.float32)[None, :] * rate[:, None]).unsqueeze(2).expand(-1, -1, K)


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
