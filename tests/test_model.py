import math

import numpy as np
import torch

from handsynth.models.graves import GravesConfig, Synthesizer, log_likelihood, mixture_params, sample_mixture


def test_log_likelihood_matches_hand_computed_value():
    M = 2
    out = torch.zeros(1, 1 + 6 * M)
    out[0, 0] = 0.3                         # eos logit
    out[0, 1:3] = torch.tensor([0.2, -0.4])  # pi_hat
    out[0, 3:5] = torch.tensor([0.1, -1.0])  # mu1
    out[0, 5:7] = torch.tensor([0.5, 0.2])   # mu2
    out[0, 7:9] = torch.tensor([0.0, -0.5])  # log sigma1
    out[0, 9:11] = torch.tensor([0.3, 0.1])  # log sigma2
    out[0, 11:13] = torch.tensor([0.4, -0.8])  # rho_hat
    target = torch.tensor([[0.25, -0.3, 1.0]])
    got = float(log_likelihood(out, target)[0])

    pi = np.exp([0.2, -0.4]) / np.exp([0.2, -0.4]).sum()
    dens = 0.0
    for k, (m1, m2, s1, s2, r) in enumerate(zip([0.1, -1.0], [0.5, 0.2], np.exp([0.0, -0.5]),
                                                 np.exp([0.3, 0.1]), np.tanh([0.4, -0.8]))):
        z = ((0.25 - m1) / s1) ** 2 + ((-0.3 - m2) / s2) ** 2 - 2 * r * (0.25 - m1) * (-0.3 - m2) / (s1 * s2)
        dens += pi[k] * math.exp(-z / (2 * (1 - r * r))) / (2 * math.pi * s1 * s2 * math.sqrt(1 - r * r))
    e = 1 / (1 + math.exp(-0.3))
    expected = math.log(dens) + math.log(e)
    assert abs(got - expected) < 1e-5


def test_log_likelihood_is_stable_far_from_every_component():
    out = torch.zeros(1, 121)
    out[0, 81:121] = -6.0  # tiny sigmas
    ll = log_likelihood(out, torch.tensor([[40.0, -40.0, 0.0]]))
    assert torch.isfinite(ll).all() and float(ll) < -1e5


def test_bias_sharpens():
    out = torch.randn(1, 121)
    _, lp0, *_ , ls0, _ = mixture_params(out, 0.0)
    _, lp2, *_ , ls2, _ = mixture_params(out, 2.0)
    assert float(lp2.exp().max()) > float(lp0.exp().max())
    assert torch.allclose(ls2, ls0 - 2.0)
    rng = np.random.default_rng(0)
    many = np.concatenate([sample_mixture(out, 5.0, rng=rng) for _ in range(200)])
    few = np.concatenate([sample_mixture(out, 0.0, rng=rng) for _ in range(200)])
    assert many.shape == (200, 3) and set(np.unique(many[:, 2])) <= {0.0, 1.0}
    assert many[:, :2].std() < few[:, :2].std()


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    cfg = GravesConfig(alphabet_size=12, hidden=16, layers=3, window_k=3, mixtures=4)
    m = Synthesizer(cfg).eval()
    x = torch.randn(2, 25, 3)
    x[..., 2] = (torch.rand(2, 25) < 0.2).float()
    text = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0]])
    return m, x, text, (text > 0).float()


def test_kappa_never_moves_backwards_and_phi_walks():
    m, x, text, mask = _model_and_batch()
    state = m.initial_state(2)
    onehot = m.onehot(text)
    kappas = []
    for t in range(25):
        _, state, phi = m.step(x[:, t], state, onehot)
        kappas.append(state.kappa.clone())
        assert phi.shape == (2, 6)
    k = torch.stack(kappas)
    assert (k[1:] - k[:-1] >= 0).all()
    assert (k[-1] > k[0]).all()


def test_step_by_step_equals_teacher_forced_forward():
    m, x, text, mask = _model_and_batch(1)
    with torch.no_grad():
        full, phi = m(x, text, return_phi=True)
    state = m.initial_state(2)
    onehot = m.onehot(text)
    for t in range(25):
        out, state, ph = m.step(x[:, t], state, onehot)
        torch.testing.assert_close(out, full[:, t], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ph, phi[:, t], atol=1e-5, rtol=1e-4)


def test_full_config_has_reference_size():
    m = Synthesizer(GravesConfig.preset("full", 82))
    n = sum(p.numel() for p in m.parameters())
    assert 3.3e6 < n < 4.2e6
    assert m.config.outputs == 121
    out = m(torch.zeros(1, 4, 3), torch.tensor([[1, 2]]))
    assert out.shape == (1, 4, 121)


def test_sample_mixture_draws_from_the_described_mixture():
    M = 2
    out = np.zeros((4000, 1 + 6 * M), np.float32)
    out[:, 0] = 0.3                      # eos probability sigmoid(0.3) = 0.574
    out[:, 1:3] = [8.0, -8.0]            # nearly all weight on component 0
    out[:, 3:5] = [1.0, 50.0]            # mu1
    out[:, 5:7] = [-2.0, 50.0]           # mu2
    out[:, 7:9] = [math.log(0.5), 0.0]   # log sigma1
    out[:, 9:11] = [math.log(2.0), 0.0]  # log sigma2
    out[:, 11:13] = [math.atanh(0.6), 0.0]
    xs = sample_mixture(out, 0.0, rng=np.random.default_rng(1))
    assert abs(xs[:, 0].mean() - 1.0) < 0.05 and abs(xs[:, 1].mean() + 2.0) < 0.15
    assert abs(xs[:, 0].std() - 0.5) < 0.03 and abs(xs[:, 1].std() - 2.0) < 0.1
    assert abs(np.corrcoef(xs[:, 0], xs[:, 1])[0, 1] - 0.6) < 0.05
    assert abs(xs[:, 2].mean() - 1 / (1 + math.exp(-0.3))) < 0.03
    biased = sample_mixture(out, 1.0, rng=np.random.default_rng(1))  # sigma / e
    assert abs(biased[:, 0].std() - 0.5 / math.e) < 0.02


def test_prime_equals_stepping_through_the_inputs():
    m, x, text, mask = _model_and_batch(2)
    onehot = m.onehot(text)
    state = m.initial_state(2)
    for t in range(x.shape[1]):
        _, state, _ = m.step(x[:, t], state, onehot)
    primed = m.prime(x, onehot)
    for a, b in zip(state.h + state.c + [state.kappa, state.w], primed.h + primed.c + [primed.kappa, primed.w]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # and sampling continues the same from either state
    out_a, _, _ = m.step(x[:, 0], state, onehot)
    out_b, _, _ = m.step(x[:, 0], primed, onehot)
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-4)


def _layer1_inputs(dtype=torch.float64, T=6):
    g = torch.Generator().manual_seed(0)
    B, H, A, K = 2, 4, 5, 2
    r = lambda *s, scale=1.0: (scale * torch.randn(*s, generator=g, dtype=dtype)).requires_grad_()  # noqa: E731
    x, W = r(T, B, 3), r(3 + A + H + 1, 4 * H, scale=0.5)   # the last row of W is the bias
    Ww, bw = r(H, 3 * K, scale=0.5), r(3 * K, scale=0.3)
    onehot = torch.nn.functional.one_hot(torch.tensor([[1, 2, 3], [4, 1, 0]]), A).to(dtype)
    onehot[..., 0] = 0
    forced = torch.rand(T, B, K, generator=g, dtype=dtype).cumsum(0)
    return (x, W, Ww, bw), onehot, forced


def test_layer1_window_backward_matches_numerical_gradients():
    """The hand-written backward of layer 1 + window (training's hot loop) against finite
    differences, with and without the attention warm-up's forced window position."""
    from handsynth.models.graves.kernel import _Layer1Window
    params, onehot, forced = _layer1_inputs()
    for fk, blend in ((None, 0.0), (forced, 0.3)):
        def f(*p):
            h, w, _ = _Layer1Window.apply(*p, onehot, fk, blend, 0.1, torch.float64, False)
            return h.clone(), w.clone()
        assert torch.autograd.gradcheck(f, params)


def test_layer1_window_scratch_is_not_shared_by_live_graphs():
    """Two forward passes alive at once (the second must not reuse the first's buffers) give
    the same gradients as one at a time."""
    from handsynth.models.graves.kernel import _Layer1Window
    params, onehot, _ = _layer1_inputs(torch.float32, T=9)

    def loss_of(p):
        h, w, _ = _Layer1Window.apply(*p, onehot, None, 0.0, 0.1, torch.float32, False)
        return (h * h).sum() + (w * torch.arange(5.0)).sum()

    one_at_a_time = []
    for _ in range(2):
        one_at_a_time.append(torch.autograd.grad(loss_of(params), params))
    l1, l2 = loss_of(params), loss_of(params)
    both = [torch.autograd.grad(l2, params), torch.autograd.grad(l1, params)]
    for a, b in zip(one_at_a_time[0], both[0]):
        torch.testing.assert_close(a, b)
    for a, b in zip(one_at_a_time[1], both[1]):
        torch.testing.assert_close(a, b)
    assert all(g.abs().sum() > 0 for g in both[0])


def test_training_forward_matches_reference_autograd():
    """Loss and gradients of the model (float32) against the same network written with plain
    autograd ops (nn.LSTMCell stepped in a loop + the window formula of sampling)."""
    m, x, text, mask = _model_and_batch(3)
    m.train()
    out = m(x, text)
    loss = (out ** 2).mean()
    grads = torch.autograd.grad(loss, list(m.parameters()))

    onehot = m.onehot(text)
    st = m.initial_state(2)
    h, c, kappa, w = st.h[0], st.c[0], st.kappa, st.w
    hs, ws = [], []
    for t in range(x.shape[1]):
        h, c = m.cell1(torch.cat([x[:, t], w], 1), (h, c))
        w, kappa, _ = m._window(h, kappa, onehot)
        hs.append(h)
        ws.append(w)
    h1, wseq = torch.stack(hs, 1), torch.stack(ws, 1)
    outs, below = [h1], h1
    for lstm in m.upper:
        below, _ = lstm(torch.cat([x, wseq, below], 2))
        outs.append(below)
    ref = m.head(torch.cat(outs, 2))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    ref_grads = torch.autograd.grad((ref ** 2).mean(), list(m.parameters()))
    for (name, _), a, b in zip(m.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4, msg=name)


def test_training_cell_computes_activations_in_float32_from_bfloat16_gates():
    from handsynth.models.graves.kernel import _cell_step
    H, B = 8, 3
    gates = (3 * torch.randn(B, 4 * H)).bfloat16()
    a, c_out, tc_out, h_out = torch.empty(B, 4 * H), torch.empty(B, H), torch.empty(B, H), torch.empty(B, H)
    c0 = torch.randn(B, H)
    doubled = gates.clone()
    doubled[:, 2 * H:3 * H] *= 2     # the caller passes 2g (exact in bfloat16)
    h, c = _cell_step(doubled, c0, a, c_out, tc_out, h_out, H)
    g = gates.float()
    i, f, gg, o = g[:, :H].sigmoid(), g[:, H:2 * H].sigmoid(), g[:, 2 * H:3 * H].tanh(), g[:, 3 * H:].sigmoid()
    torch.testing.assert_close(c, f * c0 + i * gg, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h, o * torch.tanh(f * c0 + i * gg), rtol=1e-6, atol=1e-6)


def test_step_linear_prepacked_bfloat16_equals_addmm():
    from handsynth.models.graves import StepLinear
    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(48, 40, generator=g), torch.randn(48, generator=g)
    try:   # oneDNN packs bfloat16 weights only on CPUs with bfloat16 conversions (AVX-512 or AVX-NE-CONVERT)
        torch.ops.mkldnn._reorder_linear_weight(W.bfloat16(), 16)
        packs = torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        packs = False
    for rows in (1, 7, 20):
        x = torch.randn(rows, 40, generator=g)
        lin = StepLinear(W, b, torch.bfloat16)
        assert (lin.packed is not None) == packs, "prepacked exactly where oneDNN can pack bfloat16"
        want = torch.addmm(b.bfloat16(), x.bfloat16(), W.t().bfloat16())
        got = lin(x.bfloat16())
        assert got.dtype == torch.bfloat16 and got.shape == (rows, 48)
        torch.testing.assert_close(got.float(), want.float(), atol=0.05, rtol=0.01)
        f32 = StepLinear(W, b, torch.float32)
        assert f32.packed is None
        torch.testing.assert_close(f32(x), torch.addmm(b, x, W.t()))


def test_a_model_with_prepared_bfloat16_step_weights_copies_and_pickles():
    """Tuning deep-copies the shipped model after it has written: the prepared step weights
    (oneDNN-packed bfloat16 where the CPU has bfloat16 conversions, whose storage cannot be
    copied) stay behind and are rebuilt, equal, on the copy."""
    import copy
    import pickle
    torch.manual_seed(0)
    model = Synthesizer(GravesConfig(alphabet_size=12, hidden=16, mixtures=3, window_k=2))
    before = model.step_weights(torch.bfloat16)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert "_step_weights" not in twin.__dict__
        x = torch.randn(3, 3 + 12 + 16).bfloat16()
        again = twin.step_weights(torch.bfloat16)
        torch.testing.assert_close(again["layers"][0](x).float(), before["layers"][0](x).float())
        for p, q in zip(model.parameters(), twin.parameters()):
            assert torch.equal(p, q)
    assert "_step_weights" in model.__dict__, "the original keeps its prepared weights"
