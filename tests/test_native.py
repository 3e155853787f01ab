"""The compiled step (handsynth/models/graves/native_step.c) against the PyTorch code it replaces,
for sampling (including its fused copy of the sampling policy's stop rule) and for training."""
import platform

import numpy as np
import pytest
import torch

import handsynth
from handsynth.models.graves import native
from handsynth.models.graves.kernel import WINDOW_EXP_FLOOR
from handsynth.models.graves.network import TorchStep
from handsynth.sampling import SamplingOptions, Tables, _noise, stop_rule

needs_native = pytest.mark.skipif(native.library() is None, reason=native.status())


def _generic():
    """The library built without AVX-512, so that its portable C paths are tested too."""
    if native.library() is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    return native._build(("-mno-avx512f",))


@pytest.fixture(scope="module", params=["this CPU's", "generic"])
def lib(request):
    built = native.library() if request.param == "this CPU's" else _generic()
    if built is None:
        pytest.skip(f"no {request.param} build here: {native.status()}")
    return built


@pytest.fixture(scope="module")
def hw():
    return handsynth.load_model()


def _tables(hw, texts, cap=160, seed=0):
    B, U = len(texts), max(map(len, texts))
    code = np.zeros((B, U), np.int64)
    for b, t in enumerate(texts):
        code[b, :len(t)] = hw.alphabet.encode(t)
    return Tables(code=code, n_texts=B, ends=np.array([len(t) for t in texts], np.int64), caps=np.full(B, cap, np.int64),
                   noise=torch.stack([_noise(seed, b, cap) for b in range(B)]).numpy(),
                   bias=np.full(B, 2.0, np.float32), prefix=np.zeros(B, np.int64), options=SamplingOptions(),
                   out_steps=np.zeros((B, cap, 3), np.float32), phi_all=np.zeros((B, cap, U + 1), np.float32),
                   passed=np.zeros(B, bool))


def _copy(tb):
    return Tables(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(tb).items()})


def test_native_step_equals_the_torch_step(hw, lib):
    """From the same state, one step each: the same window, cell states, draws and stop
    decisions (the C's fused stop rule against ``sampling.stop_rule`` on the PyTorch step's
    results), to rounding (exp's last bits, and the bfloat16 rounding of h that they can tip),
    at every step of lines being written, also after a row has left the batch."""
    texts = ["the window walks on", "a second line", "ab"]
    model, weights = hw.model, hw.model.step_weights(torch.bfloat16)
    onehot = model.onehot(torch.from_numpy(_tables(hw, texts).code))
    x = torch.zeros(len(texts), 3)
    x[:, 2] = 1.0
    ref = TorchStep(model, weights, model.initial_state(len(texts)), onehot, x, _tables(hw, texts))
    H, A3, L = model.config.hidden, 3 + model.config.alphabet_size, model.config.layers
    worst = {"phi": 0.0, "c": 0.0, "kappa": 0.0, "xy": 0.0}
    stops = 0
    for t in range(120):
        if t == 50:   # a row leaves the batch
            ref.select(np.array([True, False, True]))
        fast = native.NativeStep(lib, model, weights, ref.state, ref.x, _copy(ref.tb), WINDOW_EXP_FLOOR)
        fast.rows = ref.rows.copy()
        fast._point()
        n_fast = fast(t)
        ref(t)
        rows = ref.rows
        assert ref.stop is None   # the PyTorch step leaves the stop rule to the policy
        ref_stop = stop_rule(ref.tb, rows, t, ref.progress)
        worst["phi"] = max(worst["phi"], np.abs(fast.tb.phi_all[rows, t] - ref.tb.phi_all[rows, t]).max())
        worst["xy"] = max(worst["xy"], np.abs(fast.tb.out_steps[rows, t, :2] - ref.tb.out_steps[rows, t, :2]).max())
        worst["c"] = max(worst["c"], max((fast.c[i] - ref.state.c[i]).abs().max().item() for i in range(L)))
        worst["kappa"] = max(worst["kappa"], (fast.kappa - ref.state.kappa).abs().max().item())
        np.testing.assert_array_equal(fast.tb.out_steps[rows, t, 2], ref.tb.out_steps[rows, t, 2])
        np.testing.assert_array_equal(fast.tb.passed, ref.tb.passed)
        np.testing.assert_array_equal(fast.progress, ref.progress)
        np.testing.assert_array_equal(fast.stop, ref_stop)
        assert n_fast == ref_stop.sum()
        stops += int(ref_stop.sum())
        # the layer inputs hold what the torch state holds: x, w and h per layer
        np.testing.assert_allclose(fast.z[0][:, :3].float(), ref.x.to(torch.bfloat16).float(), atol=8e-3)
        np.testing.assert_allclose(fast.z[1][:, 3:A3].float(), ref.state.w.float(), atol=1e-2)
        for i in range(L):
            np.testing.assert_allclose(fast.zh[:, i * H:(i + 1) * H].float(), ref.state.h[i].float(), atol=2e-2)
    assert worst["phi"] < 1e-4 and worst["kappa"] < 1e-5 and worst["c"] < 3e-2 and worst["xy"] < 1e-2, worst
    assert stops > 0 and ref.state.kappa.max() > 5   # it really walked the text; "ab" ended


@needs_native
def test_native_batch_equals_lines_one_by_one(hw):
    """Rows leave the batch as they finish: each keeps its own state and tables."""
    texts = ["one line", "and another, longer one", "third"]
    opts = SamplingOptions(seed=11)
    together = hw.lines(texts, options=opts, line_seeds=[0, 1, 2])
    assert len({len(line.offsets) for line in together}) == 3
    for k, text in enumerate(texts):
        alone = hw.lines([text], options=opts, line_seeds=[k])[0]
        n = min(len(alone.offsets), len(together[k].offsets))
        assert abs(len(alone.offsets) - len(together[k].offsets)) <= 2
        np.testing.assert_allclose(alone.offsets[:n], together[k].offsets[:n], atol=1e-3)


@needs_native
def test_native_lines_are_deterministic_and_finish(hw):
    texts = ["hello there", "a native line"]
    a = hw.lines(texts, options=SamplingOptions(seed=4))
    b = hw.lines(texts, options=SamplingOptions(seed=4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.offsets, y.offsets)
        assert not x.hit_cap and x.offsets[-1, 2] == 1.0
        assert 8 * len(x.text) < len(x.offsets) < 22 * len(x.text)


def test_without_a_compiler_sampling_runs_in_torch(hw, monkeypatch, tmp_path):
    """A failed build leaves a clear status and sampling on the PyTorch step."""
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert native.library() is None
    assert "not available" in native.status()
    line = hw.lines(["still writes"], options=SamplingOptions(seed=1))[0]
    assert not line.hit_cap and len(line.offsets) > 50
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("HANDSYNTH_NATIVE", "0")
    assert native.library() is None and "HANDSYNTH_NATIVE=0" in native.status()


def _layer1_run(hw, lib, forced, blend, T=40, B=3, seed=0):
    """Layer 1 + window of the shipped network through _Layer1Window (float32, bfloat16
    matmuls, as training runs it): outputs and gradients for a fixed random loss."""
    from handsynth.models.graves.kernel import _Layer1Window
    m, g = hw.model, torch.Generator().manual_seed(seed)
    text = torch.from_numpy(np.stack([hw.alphabet.encode(t.ljust(14)[:14]) for t in
                                      ["a line of text", "another", "short"][:B]]))
    text[2, 5:] = 0   # padding
    onehot = m.onehot(text)
    x = torch.randn(T, B, 3, generator=g).requires_grad_()
    bias = (m.cell1.bias_ih + m.cell1.bias_hh).unsqueeze(1)
    W = torch.cat([m.cell1.weight_ih, m.cell1.weight_hh, bias], 1).t().detach().requires_grad_()
    Ww, bw = m.window.weight.t().detach().requires_grad_(), m.window.bias.detach().requires_grad_()
    gh, gw = torch.randn(T, B, m.config.hidden, generator=g), torch.randn(T, B, m.config.alphabet_size, generator=g)
    saved = dict(native._state)
    native._state.update(lib=lib, why="chosen for the comparison")
    try:
        h, w, phi = _Layer1Window.apply(x, W, Ww, bw, onehot, forced, blend, m.config.kappa_scale, torch.bfloat16, True)
        used = h.grad_fn.native is not None
        loss = (h.float() * gh).sum() + (w.float() * gw).sum()
        grads = torch.autograd.grad(loss, [x, W, Ww, bw])
    finally:
        native._state.clear()
        native._state.update(saved)
    return used, [h.float(), w.float(), phi] + list(grads)


@pytest.mark.parametrize("warmup", [False, True])
def test_native_training_pass_equals_the_torch_pass(hw, lib, warmup):
    """The compiled training loop of layer 1 + window (forward and backward) against the same
    Function in PyTorch operations (itself checked against finite differences in float64): the
    outputs and every gradient agree to bfloat16 rounding, with and without the attention
    warm-up's forced window position."""
    T, B, K = 20, 3, hw.model.config.window_k
    forced = torch.rand(T, B, K, generator=torch.Generator().manual_seed(1)).cumsum(0) * 0.3 if warmup else None
    used, fast = _layer1_run(hw, lib, forced, 0.4 if warmup else 0.0, T=T)
    unused, ref = _layer1_run(hw, None, forced, 0.4 if warmup else 0.0, T=T)
    assert used and not unused
    named = dict(zip(["h", "w", "phi", "d x", "d W"], zip(fast, ref)))
    for part, cols in (("alpha", slice(0, K)), ("beta", slice(K, 2 * K)), ("kappa", slice(2 * K, 3 * K))):
        # each of the window's three outputs on its own
        named[f"d W_window {part}"] = fast[5][:, cols], ref[5][:, cols]
        named[f"d b_window {part}"] = fast[6][cols], ref[6][cols]
    errors = {name: ((a - b).norm() / b.norm()).item() for name, (a, b) in named.items()}
    assert all(b.abs().max() > 0 for a, b in named.values())
    # bfloat16 rounding (a last-bit difference tips a rounding of h, which then travels along the
    # line) gives up to 0.25% over these 20 steps; a 1% error in any one part fails
    assert max(errors.values()) < 6e-3, errors
