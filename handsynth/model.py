"""The Graves (2013) synthesis network and its mixture-density head.

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

LOG_2PI = math.log(2 * math.pi)


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

    def _window(self, h1, kappa, onehot, text_mask, forced_kappa=None, blend=0.0, weights=None):
        """One step of the attention window. Returns (w, kappa, phi) with phi over U+1 positions
        (the last one is 'after the text', used by the stop rule). ``weights``: the window layer's
        (W^T, b), already in the matmul dtype (the training loop casts them once)."""
        K = self.config.window_k
        if weights is None:
            p = self.window(h1).float().exp()
        else:
            W, b = weights
            p = ((h1.to(W.dtype) @ W).float() + b).exp()
        alpha, beta, kstep = p[:, :K], p[:, K:2 * K], p[:, 2 * K:]
        kappa = kappa + kstep * self.config.kappa_scale
        k = kappa if forced_kappa is None else blend * forced_kappa + (1 - blend) * kappa
        U = onehot.shape[1]
        u = torch.arange(U + 1, device=h1.device, dtype=k.dtype)
        phi = (alpha.unsqueeze(2) * torch.exp(-beta.unsqueeze(2) * (k.unsqueeze(2) - u) ** 2)).sum(1)
        weight = phi[:, :U] if text_mask is None else phi[:, :U] * text_mask  # padding rows of onehot are 0
        w = torch.bmm(weight.unsqueeze(1).to(onehot.dtype), onehot).squeeze(1).float()
        return w, kappa, phi

    def forward(self, inputs: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                return_phi: bool = False, forced_kappa: torch.Tensor | None = None, blend: float = 0.0):
        """Teacher-forced pass over whole lines.

        inputs (B, T, 3), text (B, U) codes, text_mask (B, U). ``forced_kappa`` (B, T, K), mixed
        with the learned window position by ``blend`` in [0, 1], is the attention warm-up.
        Returns the head's output (B, T, 1 + 6M), and phi (B, T, U + 1) if asked.
        """
        B, T, _ = inputs.shape
        onehot = self.onehot(text)
        mask = text_mask.to(inputs.dtype)
        # layer 1: the pen-input part of the gates for all steps at once; in the loop one matmul
        # of [window, h] against the stacked window and recurrent weights
        W_ih, W_hh = self.cell1.weight_ih, self.cell1.weight_hh
        gx = F.linear(inputs, W_ih[:, :3], self.cell1.bias_ih + self.cell1.bias_hh)
        W_rec = torch.cat([W_ih[:, 3:], W_hh], 1).t()
        W_win = (self.window.weight.t(), self.window.bias)
        if torch.is_autocast_enabled("cpu"):
            # cast the loop's weights and the one-hot text once; inside the loop autocast is off,
            # so no op pays for dispatch and casting at every one of the T steps
            dt = torch.get_autocast_dtype("cpu")
            W_rec, W_win, onehot = W_rec.to(dt), (W_win[0].to(dt), W_win[1]), onehot.to(dt)
        gx = gx.float().unbind(1)  # unbind, not gx[:, t]: one backward stack, not T full-size zeros
        st = self.initial_state(B)
        h, c, kappa, w = st.h[0], st.c[0], st.kappa, st.w
        hs, ws, phis = [], [], []
        fks = forced_kappa.unbind(1) if forced_kappa is not None else [None] * T
        with torch.autocast("cpu", enabled=False):
            for t in range(T):
                gates = gx[t] + (torch.cat([w, h], 1).to(W_rec.dtype) @ W_rec).float()
                i, f, g, o = gates.chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                w, kappa, phi = self._window(h, kappa, onehot, mask, fks[t], blend, W_win)
                hs.append(h)
                ws.append(w)
                if return_phi:
                    phis.append(phi)
        h1, wseq = torch.stack(hs, 1), torch.stack(ws, 1)
        outs, below = [h1], h1
        for lstm in self.upper:
            below, _ = lstm(torch.cat([inputs, wseq.to(inputs.dtype), below.to(inputs.dtype)], 2))
            outs.append(below)
        out = self.head(torch.cat([o.to(inputs.dtype) for o in outs], 2))
        return (out, torch.stack(phis, 1)) if return_phi else out

    @torch.no_grad()
    def step_weights(self, dtype: torch.dtype = torch.float32) -> dict:
        """The weights of a sampling step, prepared once per batch: per layer the input and
        recurrent weights stacked into one (in, 4H) matrix with the summed bias, so a layer is one
        matmul; the head likewise. ``dtype`` bfloat16 halves the memory each step streams (the
        model is trained with bfloat16 matmuls); the window, whose position accumulates over the
        line, stays in float32."""
        layers = [(self.cell1.weight_ih, self.cell1.weight_hh, self.cell1.bias_ih, self.cell1.bias_hh)]
        layers += [(m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0) for m in self.upper]
        return {"layers": [(torch.cat([wi, wh], 1).t().contiguous().to(dtype), (bi + bh).to(dtype))
                           for wi, wh, bi, bh in layers],
                "window": (self.window.weight.t().contiguous(), self.window.bias),
                "head": (self.head.weight.t().contiguous().to(dtype), self.head.bias.to(dtype))}

    @staticmethod
    def _cell(inp, h, c, W, b, H):
        """One LSTM cell step from stacked weights: gates = [inp, h] @ W + b (in W's dtype)."""
        gates = torch.addmm(b, torch.cat([inp, h], 1).to(W.dtype), W).float()
        s = gates.sigmoid()
        c = torch.addcmul(s[:, H:2 * H] * c, s[:, :H], gates[:, 2 * H:3 * H].tanh())
        return s[:, 3 * H:] * c.tanh(), c

    def _layer1_step(self, x, h, c, kappa, w, onehot, weights):
        """Layer 1 and the window for one pen step."""
        W, b = weights["layers"][0]
        h, c = self._cell(torch.cat([x, w], 1), h, c, W, b, self.config.hidden)
        w, kappa, phi = self._window(h, kappa, onehot, None, weights=weights["window"])
        return h, c, kappa, w, phi

    @torch.no_grad()
    def step(self, x: torch.Tensor, state: State, onehot: torch.Tensor, text_mask: torch.Tensor | None = None,
             weights: dict | None = None):
        """One pen step for sampling: x (B, 3) -> (head output (B, 1 + 6M) float32, new state,
        phi (B, U + 1)). ``weights`` from ``step_weights()`` saves preparing them at every step.
        ``onehot``'s padding rows are zero, so ``text_mask`` is not needed here (kept for symmetry
        with ``forward``)."""
        weights = weights or self.step_weights()
        H = self.config.hidden
        h, c, kappa, w, phi = self._layer1_step(x, state.h[0], state.c[0], state.kappa, state.w, onehot, weights)
        hs, cs = [h], [c]
        for i, (W, b) in enumerate(weights["layers"][1:], 1):
            h, c = self._cell(torch.cat([x, w, h], 1), state.h[i], state.c[i], W, b, H)
            hs.append(h)
            cs.append(c)
        Wh, hb = weights["head"]
        out = torch.addmm(hb, torch.cat(hs, 1).to(Wh.dtype), Wh).float()
        return out, State(hs, cs, kappa, w), phi

    @torch.no_grad()
    def prime(self, inputs: torch.Tensor, onehot: torch.Tensor, weights: dict | None = None) -> State:
        """The state after feeding ``inputs`` (B, T, 3), the same as T calls of ``step`` but
        cheaper: layer 1 and the window step through time, the upper layers (nn.LSTM) then run
        over the whole sequence at once, and the head is skipped (priming needs no outputs)."""
        weights = weights or self.step_weights()
        B, T, _ = inputs.shape
        st = self.initial_state(B)
        h, c, kappa, w = st.h[0], st.c[0], st.kappa, st.w
        hs, ws = [], []
        for x in inputs.unbind(1):
            h, c, kappa, w, _ = self._layer1_step(x, h, c, kappa, w, onehot, weights)
            hs.append(h)
            ws.append(w)
        below, wseq = torch.stack(hs, 1), torch.stack(ws, 1)
        h_out, c_out = [h], [c]
        for lstm in self.upper:  # float32, as in forward
            below, (hn, cn) = lstm(torch.cat([inputs, wseq, below], 2))
            h_out.append(hn[0])
            c_out.append(cn[0])
        return State(h_out, c_out, kappa, w)


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
