"""The Graves network's layer 1 and attention window over whole lines, with a hand-written
backward (``_Layer1Window``): the training pass's kernel. Its per-pen-step work runs in C
(``native.TrainStep``) where the compiled step is available, in the PyTorch loop here otherwise
(the reference the tests compare the C against, itself checked against finite differences)."""
from __future__ import annotations

import math
import weakref

import torch

from . import native

# the window's exponents -beta (kappa - u)^2 are clamped from below: exp(-60) is 1e-26 of a window
# weight, and exp's underflow path (exponents below about -87) is ten times slower
WINDOW_EXP_FLOOR = -60.0

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
        H, K, dt, mm_dtype = G // 4, W_win.shape[1] // 3, acts.dtype, Z.dtype
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
