"""The work of a pen step between its matmuls, compiled: ``native_step.c`` through ctypes.

A pen step of sampling is four small matmuls and about fifty tiny tensor operations around them
(the LSTM cells, the attention window, the mixture draw, the stop rule). Each of those costs
5-20 us from Python, together twice the matmuls. Here they are a handful of C loops: the
matmuls stay in PyTorch (oneDNN, bfloat16 weights prepacked by ``StepLinear``), and everything
between them is one C call per layer (``NativeStep``). Training's layer 1 and window
(``kernel._Layer1Window``) likewise: one C call per pen step forward and one backward
(``TrainStep``).

The C file is compiled once per machine with the system's C compiler (``cc -O3 -march=native``)
into ``~/.cache/handsynth`` (``$XDG_CACHE_HOME``), keyed by the source, the compiler and the CPU.
Where there is no compiler, or with ``HANDSYNTH_NATIVE=0``, sampling runs the same step in
PyTorch and numpy (``network.TorchStep``), the reference the tests compare
this against. ``native.status()`` says which one runs and why.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from ...checkpoint import atomic_target
from ...errors import HandsynthError
from ...hardware import cpu_flags

SOURCE = Path(__file__).with_name("native_step.c")
MAX_LAYERS = 8
_P = ctypes.c_void_p
_state: dict = {}


class _Ctx(ctypes.Structure):
    """Mirrors ``Ctx`` in native_step.c."""
    _fields_ = [(n, ctypes.c_int32) for n in ("B", "H", "A", "K", "KP", "M", "U", "L", "cap", "finish_stroke")] + [
        ("steps_per_char", ctypes.c_double), ("kappa_scale", ctypes.c_float), ("exp_floor", ctypes.c_float),
        ("z", _P * MAX_LAYERS), ("zh", _P), ("c", _P * MAX_LAYERS)] + [
        (n, _P) for n in ("h0", "kappa", "w_win", "b_win", "phi", "code", "rows", "noise", "bias", "ends", "caps", "prefix",
                          "out_steps", "phi_all", "passed", "stop", "progress")]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "handsynth"


def _build(flags: tuple = ()) -> ctypes.CDLL:
    """Compile (or find in the cache) and load the library; ``flags`` are extra compiler flags
    (the tests build the generic C paths with ``-mno-avx512f``)."""
    name = os.environ.get("CC") or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    cc = shutil.which(name) if name else None
    if not cc:
        raise RuntimeError(f"no C compiler found ({name or 'cc, gcc or clang'})")
    st = os.stat(cc)
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, str(st.st_size), str(st.st_mtime_ns),
                                    platform.machine(), cpu_flags(), *flags]).encode())
    target = _cache_dir() / f"native_step-{key.hexdigest()[:16]}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError:   # no writable cache: a private temporary one
            target = Path(tempfile.gettempdir()) / f"handsynth-{os.getuid()}" / target.name
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # atomic: a concurrent build never loads a half-written file
        with atomic_target(target) as tmp:
            for arch in (["-march=native"], []):   # a compiler without -march=native: generic code
                r = subprocess.run([cc, "-O3", *arch, *flags, "-std=c11", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-lm"],
                                   capture_output=True, text=True, timeout=120)
                if r.returncode == 0:
                    break
            else:
                raise RuntimeError(f"{cc} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    lib = ctypes.CDLL(str(target))
    lib.hs_layer0.argtypes = [_P, _P]
    lib.hs_cell.argtypes = [_P, ctypes.c_int, _P]
    lib.hs_sample.argtypes = [_P, _P, ctypes.c_int]
    lib.hs_sample.restype = ctypes.c_int
    lib.hs_train_forward.argtypes = lib.hs_train_backward.argtypes = [_P, ctypes.c_int, _P]
    for f in (lib.hs_layer0, lib.hs_cell, lib.hs_train_forward, lib.hs_train_backward):
        f.restype = None
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled step (built on first use), or None where it cannot be built or is turned off."""
    if "lib" not in _state:
        if os.environ.get("HANDSYNTH_NATIVE", "1") == "0":
            _state["lib"], _state["why"] = None, "turned off (HANDSYNTH_NATIVE=0)"
        else:
            try:
                _state["lib"], _state["why"] = _build(), "compiled"
            except (OSError, RuntimeError, subprocess.SubprocessError, HandsynthError) as e:
                _state["lib"], _state["why"] = None, f"not available: {e}"
    return _state["lib"]


def status() -> str:
    """Which step runs here (compiled, or PyTorch and why), in words."""
    if library() is not None:
        return "compiled C step"
    return f"PyTorch step (the compiled C step is {_state['why']})"


def supports(config, dtype: torch.dtype, positions: int) -> bool:
    """Whether the compiled step handles this network (its buffers are sized for the shipped
    sizes and well beyond) over this many text positions at this matmul dtype (bfloat16: the
    float32 path stays in PyTorch, whose rows do not depend on the batch size)."""
    return (dtype == torch.bfloat16 and config.layers <= MAX_LAYERS and config.hidden <= 4096
            and config.window_k <= 80 and config.alphabet_size <= 512 and config.mixtures <= 256
            and positions <= 1024)


def _padded_window(W_win: torch.Tensor, b_win: torch.Tensor):
    """The window layer (H, 3K) and its bias in float32 with the 3K outputs zero-padded to a
    multiple of 16 (whole vectors for native_step.c's window_logits)."""
    pad = -W_win.shape[1] % 16
    return (torch.nn.functional.pad(W_win.detach().float(), (0, pad)).contiguous(),
            torch.nn.functional.pad(b_win.detach().float(), (0, pad)).contiguous())


class NativeStep:
    """The sampling step for a batch of rows with the compiled glue: same interface as
    ``network.TorchStep`` (a ``models.Stepper``; ``stop``, the fused stop rule, and
    ``progress`` per row; ``select(keep)`` drops rows)."""

    def __init__(self, lib, model, weights: dict, state, x: torch.Tensor, tables, exp_floor: float):
        cfg = model.config
        H, A, L, dt = cfg.hidden, cfg.alphabet_size, cfg.layers, torch.bfloat16
        B = x.shape[0]
        self.lib, self.tb, self.linears, self.head = lib, tables, weights["layers"], weights["head"]
        self.z = [torch.cat([x, state.w, state.h[0]], 1).to(dt).contiguous()]
        self.z += [torch.cat([x, state.w, state.h[i - 1], state.h[i]], 1).to(dt).contiguous() for i in range(1, L)]
        self.zh = torch.cat(state.h, 1).to(dt).contiguous()
        self.c = [c.float().contiguous().clone() for c in state.c]
        self.kappa = state.kappa.float().contiguous().clone()
        self.h0 = torch.empty(B, H)
        self.phi = torch.empty(B, tables.code.shape[1] + 1)
        self.w_win, self.b_win = _padded_window(*weights["window"])
        KP = self.w_win.shape[1]
        self.rows = np.arange(B, dtype=np.int64)
        self._stop, self._progress = np.zeros(B, np.uint8), np.zeros(B, np.int64)
        o = tables.options
        self.ctx = _Ctx(B=B, H=H, A=A, K=cfg.window_k, KP=KP, M=cfg.mixtures, U=tables.code.shape[1], L=L,
                        cap=tables.out_steps.shape[1], finish_stroke=int(o.finish_stroke),
                        steps_per_char=o.steps_per_char, kappa_scale=cfg.kappa_scale, exp_floor=exp_floor)
        for name in ("code", "noise", "bias", "ends", "caps", "prefix", "out_steps", "phi_all", "passed"):
            arr = getattr(tables, name)
            assert arr.flags.c_contiguous and arr.dtype == {"code": np.int64, "ends": np.int64, "caps": np.int64, "prefix": np.int64,
                                                            "passed": np.bool_}.get(name, np.float32), name
            setattr(self.ctx, name, arr.ctypes.data)
        self.ctx.w_win, self.ctx.b_win = self.w_win.data_ptr(), self.b_win.data_ptr()
        self.ctx.stop, self.ctx.progress = self._stop.ctypes.data, self._progress.ctypes.data
        self._point()
        self.ref = ctypes.byref(self.ctx)

    def _point(self):
        """Point the context at the current row buffers."""
        ctx = self.ctx
        ctx.B = len(self.rows)
        for i, (z, c) in enumerate(zip(self.z, self.c)):
            ctx.z[i], ctx.c[i] = z.data_ptr(), c.data_ptr()
        ctx.zh, ctx.h0, ctx.kappa, ctx.phi = self.zh.data_ptr(), self.h0.data_ptr(), self.kappa.data_ptr(), self.phi.data_ptr()
        ctx.rows = self.rows.ctypes.data

    def __call__(self, t: int) -> int:
        lib, ref = self.lib, self.ref
        g = self.linears[0](self.z[0])
        lib.hs_layer0(ref, g.data_ptr())
        for i in range(1, len(self.z)):
            g = self.linears[i](self.z[i])
            lib.hs_cell(ref, i, g.data_ptr())
        out = self.head(self.zh)
        return lib.hs_sample(ref, out.data_ptr(), t)

    @property
    def stop(self) -> np.ndarray:
        return self._stop[:len(self.rows)].view(np.bool_)

    @property
    def progress(self) -> np.ndarray:
        return self._progress[:len(self.rows)]

    def select(self, keep: np.ndarray):
        k = torch.from_numpy(keep)
        self.rows = self.rows[keep]
        self.z, self.c = [z[k] for z in self.z], [c[k] for c in self.c]
        self.zh, self.kappa = self.zh[k], self.kappa[k]
        self._point()


class _TrainCtx(ctypes.Structure):
    """Mirrors ``TrainCtx`` in native_step.c."""
    _fields_ = [(n, ctypes.c_int32) for n in ("T", "B", "H", "A", "K", "KP", "U1", "has_forced")] + [
        (n, ctypes.c_float) for n in ("kappa_scale", "blend", "exp_floor")] + [
        (n, _P) for n in ("Z", "acts", "Cs", "TCs", "Hs", "P", "Ks", "Es", "Phi", "w_win", "b_win", "w_win_t", "code",
                          "forced", "kappa", "gH", "gW", "dA", "dG", "dc", "dkappa")]


def train_library(dtype: torch.dtype, mm_dtype: torch.dtype, H: int, A: int, K: int, U1: int):
    """The compiled library if it handles this training pass of layer 0 and the window (float32
    activations, bfloat16 matmuls, sizes within its buffers), else None."""
    if dtype != torch.float32 or mm_dtype != torch.bfloat16:
        return None
    if H > 4096 or A > 512 or 3 * K > 240 or U1 > 1024:
        return None
    return library()


class TrainStep:
    """_Layer1Window's per-pen-step work between its matmuls, compiled: ``forward(t, gates)``
    after step t's matmul; ``backward(t, dz)`` after step t + 1's gradient matmul (set up by
    ``start_backward``). Holds the tensors it points at."""

    def __init__(self, lib, Z, acts, Cs, TCs, Hs, P, Ks, Es, Phi, W_win, b_win, code, forced, blend: float,
                 kappa_scale: float, exp_floor: float):
        T, B, G = acts.shape
        H, K, U1 = G // 4, W_win.shape[1] // 3, code.shape[1]
        self.lib, self.T, self.B = lib, T, B
        self.w_win, self.b_win = _padded_window(W_win, b_win)
        KP = self.w_win.shape[1]
        self.w_win_t = W_win.float().t().contiguous()
        self.code = code.contiguous()
        self.forced = forced.float().contiguous() if forced is not None else None
        self.kappa = torch.zeros(B, K)
        self.keep = [Z, acts, Cs, TCs, Hs, P, Ks, Es, Phi]
        for t in self.keep:
            assert t.is_contiguous()
        self.ctx = _TrainCtx(T=T, B=B, H=H, A=Z.shape[2] - H - 4, K=K, KP=KP, U1=U1, has_forced=int(forced is not None),
                             kappa_scale=kappa_scale, blend=blend, exp_floor=exp_floor)
        for name, t in zip(("Z", "acts", "Cs", "TCs", "Hs", "P", "Ks", "Es", "Phi"), self.keep):
            setattr(self.ctx, name, t.data_ptr())
        for name in ("w_win", "b_win", "w_win_t", "code", "kappa"):
            setattr(self.ctx, name, getattr(self, name).data_ptr())
        self.ctx.forced = self.forced.data_ptr() if self.forced is not None else None
        self.ref = ctypes.byref(self.ctx)

    def forward(self, t: int, gates: torch.Tensor):
        self.lib.hs_train_forward(self.ref, t, gates.data_ptr())

    def start_backward(self, gH: torch.Tensor, gW: torch.Tensor, dA: torch.Tensor, dG: torch.Tensor):
        """gH (T, B, H) bfloat16, gW (T, B, A) float32 with column 0 zero; dA (T, B, 3K) float32
        and dG (T, B, 4H) bfloat16 are written."""
        H, K = self.ctx.H, self.ctx.K
        self.dc, self.dkappa = torch.zeros(self.B, H), torch.zeros(self.B, K)
        self.grads = [gH.contiguous(), gW.contiguous(), dA, dG]
        assert self.grads[0].dtype == torch.bfloat16 and dG.dtype == torch.bfloat16 and dA.is_contiguous()
        for name, t in zip(("gH", "gW", "dA", "dG"), self.grads):
            setattr(self.ctx, name, t.data_ptr())
        self.ctx.dc, self.ctx.dkappa = self.dc.data_ptr(), self.dkappa.data_ptr()

    def backward(self, t: int, dz: torch.Tensor | None):
        self.lib.hs_train_backward(self.ref, t, dz.data_ptr() if dz is not None else None)
