"""The transformer family (models/transformer/): the KV-cache step computes what the full forward
does, the loss trains, and the shared sampling policy stops a line at the model's END token or
at the step cap, with the cross-attention recorded as the alignment."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handsynth import checkpoint
from handsynth.alphabet import Alphabet
from handsynth.data.corpus import make_batch
from handsynth.models.transformer.network import Transformer, TransformerConfig, TransformerStep
from handsynth.sampling import Primer, SamplingOptions, sample_lines

ALPHABET = Alphabet("abcdefghij ")


def _lines(n=24, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(20, 60))
        out.append(np.c_[rng.normal(0.3, 1, size=(k, 2)), rng.random(k) < 0.15].astype(np.float32))
    return out


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = Transformer.fit(TransformerConfig.preset("tiny", ALPHABET.size), _lines())
    return Transformer(cfg).eval()


def test_registered_as_a_family_and_its_file_round_trips(tiny, tmp_path):
    assert "transformer" in checkpoint.families()
    assert checkpoint.family("transformer") is Transformer
    ckpt = {"arch": "transformer", "config": tiny.config.to_dict(), "alphabet": ALPHABET.chars,
            "offset_mean": [0.0, 0.0], "offset_std": [1.0, 1.0], "model": tiny.state_dict()}
    checkpoint.export(ckpt, tmp_path / "model.pt", dtype=torch.float32)
    back, meta = checkpoint.load(tmp_path / "model.pt")
    assert isinstance(back, Transformer) and back.tokenizer == tiny.tokenizer


def test_kv_cache_step_equals_the_full_forward(tiny):
    lines = _lines(2, seed=1)
    codes = torch.from_numpy(np.stack([ALPHABET.encode("abc de"), ALPHABET.encode("fghij ")]))
    toks = torch.from_numpy(np.stack([tiny.line_tokens(o[:15]) for o in lines]))
    with torch.no_grad():
        full = tiny(torch.cat([torch.full((2, 1), tiny.START), toks], 1), codes)
        step = TransformerStep(tiny, SimpleNamespace(code=codes.numpy(), out_steps=np.zeros((2, 40, 3))), None)
        cached = [step.logits] + [step._feed(toks[:, j:j + 1])[0] for j in range(toks.shape[1])]
    torch.testing.assert_close(torch.stack(cached, 1), full, atol=1e-5, rtol=1e-5)


def test_the_loss_trains(tiny):
    model = Transformer(tiny.config)
    lines = _lines(8, seed=2)
    batch = make_batch(lines, ["abc", "de fg", "hij", "a b", "cde", "fgh", "ij a", "bcd"], ALPHABET,
                       np.zeros(2, np.float32), np.ones(2, np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        nll, count = model.loss(batch)
        assert count == sum(len(o) for o in lines) + len(lines)   # every token and each line's END
        opt.zero_grad()
        (nll / count).backward()
        opt.step()
        first = first if first is not None else (nll / count).item()
    assert (nll / count).item() < 0.7 * first


def test_guided_attention_is_zero_on_the_diagonal_and_the_warmup_adds_it(tiny):
    from handsynth.models.transformer.network import guided_attention
    T, U = 40, 8
    diagonal = torch.zeros(1, T, U)
    diagonal[0, torch.arange(T), (torch.arange(T) * U) // T] = 1
    late = torch.zeros(1, T, U)
    late[0, :, -1] = 1                                   # every step looks at the last character
    steps, chars = torch.tensor([T]), torch.tensor([U])
    on, off = guided_attention(diagonal, steps, chars), guided_attention(late, steps, chars)
    assert on < 0.05 * T and off > 0.5 * T
    assert guided_attention(late, torch.tensor([10]), chars) < off   # padding steps never count
    # the full forward's last-layer attention (the alignment sampling reads) with the same logits
    lines = _lines(8, seed=2)
    batch = make_batch(lines, ["abc", "de fg", "hij", "a b", "cde", "fgh", "ij a", "bcd"], ALPHABET,
                       np.zeros(2, np.float32), np.ones(2, np.float32))
    codes = batch.text
    inputs = torch.full((8, 12), tiny.START)
    with torch.no_grad():
        plain = tiny(inputs, codes)
        logits, attn = tiny(inputs, codes, attention=True)
        torch.testing.assert_close(logits, plain, atol=1e-5, rtol=1e-5)
        assert attn.shape == (8, 12, codes.shape[1])
        torch.testing.assert_close(attn.sum(-1), torch.ones(8, 12))
        assert (attn[codes[:, None, :].expand_as(attn) == 0] == 0).all()   # no weight on padding
        base, count = tiny.loss(batch)
        guided, count2 = tiny.loss(batch, warmup=0.5)
    assert count2 == count and guided > base                          # the penalty adds on during the warm-up
    model = Transformer(tiny.config)                                  # ... and training lowers it
    model.load_state_dict(tiny.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        nll, count = model.loss(batch, warmup=1.0)
        opt.zero_grad()
        (nll / count).backward()
        opt.step()
        with torch.no_grad():
            pen = (model.loss(batch, warmup=1.0)[0] - model.loss(batch)[0]).item()
        first = pen if first is None else first
    assert pen < 0.8 * first


MEAN, STD = np.array([0.3, -0.1], np.float32), np.array([1.5, 0.8], np.float32)


def _sample(model, texts, **kw):
    return sample_lines(model, ALPHABET, MEAN, STD, texts,
                        SamplingOptions(bias=1.0, seed=3, bf16=False), return_phi=True, **kw)


def test_the_end_token_stops_a_line_and_the_cap_stops_one_that_never_ends(tiny):
    model = Transformer(tiny.config).eval()
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        model.head.bias[model.END] = -1e4        # never ends: the step cap (40 + 24 per character)
    lines = _sample(model, ["ab", "cdefg"])
    assert all(line.hit_cap for line in lines)                     # stopped by a cap, never passed
    assert all(len(line.offsets) <= 40 + 24 * len(line.text) for line in lines)
    lines = _sample(model, ["ab"], primer=Primer(_lines(1, seed=4)[0][:10], "hij"))
    assert lines[0].hit_cap and len(lines[0].offsets) <= 40 + 24 * len("hij ab")
    with torch.no_grad():
        model.head.bias[model.END] = 1e4         # would end at once ...
        model.blocks[-1].cross_attn.q.weight.zero_()   # ... and attends to every character alike
        model.blocks[-1].cross_attn.q.bias.zero_()     # (its alignment's argmax: the first)
    short, long = _sample(model, ["ab", "cdefg"])
    # END only once the alignment is on the text's last two characters: "ab" ends at once,
    # "cdefg", whose alignment never leaves its first character, is stopped as a stalled line
    assert not short.hit_cap and len(short.offsets) == 1
    assert short.phi[-1, -1] == 1.0              # all "after the end" once the model ended the line
    np.testing.assert_allclose(short.offsets[-1], [0.0, 0.0, 1.0], atol=1e-6)   # no move, pen up
    assert long.hit_cap and len(long.offsets) > 1 and long.phi[-1, -1] == 0.0


def test_the_alignment_is_the_cross_attention_over_the_text(tiny):
    (line,) = _sample(tiny, ["abc de"])
    phi = line.phi
    assert phi.shape == (len(line.offsets), len("abc de") + 1)
    live = phi[:, -1] == 0
    np.testing.assert_allclose(phi[live].sum(1), 1.0, atol=1e-5)   # a distribution over the characters


def test_a_tiny_transformer_trains_through_the_shared_loop_and_writes(tiny_iam, cache_dir, tmp_path):
    import handsynth
    from handsynth.data.corpus import load_corpus
    from handsynth.train import TrainConfig, trainer

    corpus = load_corpus(tiny_iam, cache_dir=cache_dir, progress=False)
    tc = TrainConfig(batch_size=8, max_steps=6, eval_every=6, lr=3e-3)
    history = trainer(corpus, tmp_path, "tiny", tc, progress=False, arch="transformer").run()
    assert history[-1]["step"] == 6 and np.isfinite(history[-1]["validation_nll"])
    hw = handsynth.load_model(tmp_path / "model.pt")
    assert hw.arch == "transformer" and hw.model.tokenizer is not None   # the bins travel in the file
    drawing = hw.write("the cat", seed=1)
    assert drawing.strokes and len(drawing.lines) == 1


def test_the_guide_stays_at_its_floor_after_the_warm_up(tiny_iam, cache_dir, tmp_path):
    from handsynth.data.corpus import load_corpus
    from handsynth.errors import HandsynthError
    from handsynth.train import SynthesisTask, TrainConfig, train

    corpus = load_corpus(tiny_iam, cache_dir=cache_dir, progress=False)
    tc = TrainConfig(batch_size=4, max_steps=6, attention_warmup=10, attention_floor=0.25)
    task = SynthesisTask(corpus, "tiny", tc, arch="transformer")
    idx = task.lines[:4]
    with torch.no_grad():
        batch = task.batch(idx)
        for step, share in ((0, 1.0), (5, 0.5), (9, 0.25), (500, 0.25)):   # 1 - step/10, never under 0.25
            loss, count = task.loss(task.model, idx, step, tc)
            nll, n = task.model.loss(batch, share)
            torch.testing.assert_close(loss, nll / n)
        assert task.loss(task.model, idx, 500, tc)[0] > task.model.loss(batch, 0.0)[0] / n   # still on
    with pytest.raises(HandsynthError, match="not for the 'graves' family"):
        train(iam=tiny_iam, out=tmp_path / "g", config="tiny", max_steps=1, attention_floor=0.1, progress=False,
              cache_dir=cache_dir)
    with pytest.raises(HandsynthError, match="out of range"):
        train(iam=tiny_iam, out=tmp_path / "t", config="tiny", max_steps=1, attention_floor=1.5, progress=False,
              cache_dir=cache_dir, arch="transformer")


def test_the_cpu_preset_and_unknown_presets():
    from handsynth.errors import HandsynthError
    from handsynth.models.graves.network import GravesConfig
    cfg = Transformer.fit(TransformerConfig.preset("cpu", ALPHABET.size), _lines())
    model = Transformer(cfg)
    assert model.vocab == 64 * 32 * 2 and model.head.out_features == model.vocab + 1
    assert (cfg.d_model, cfg.layers) == (256, 4)
    for family in (TransformerConfig, GravesConfig):   # a preset one family lacks: one clear line
        with pytest.raises(HandsynthError, match="unknown .* preset 'huge'"):
            family.preset("huge", ALPHABET.size)
    with pytest.raises(HandsynthError, match="graves preset 'cpu'"):
        GravesConfig.preset("cpu", ALPHABET.size)


def test_a_warm_start_on_a_grown_alphabet_keeps_what_the_old_text_writes(tiny):
    grown = Alphabet(ALPHABET.chars + "XYZ$")
    model = Transformer(TransformerConfig(**{**tiny.config.to_dict(), "alphabet_size": grown.size}))
    model.adopt(tiny.state_dict(), ALPHABET.chars, grown.chars)
    model.eval()
    inputs = torch.full((1, 9), tiny.START)
    with torch.no_grad():
        old = tiny(inputs, torch.from_numpy(ALPHABET.encode("abc de"))[None])
        new = model(inputs, torch.from_numpy(grown.encode("abc de"))[None])
        torch.testing.assert_close(new, old)                      # the old text: the same logits
        rows = model.chars.weight[[grown.encode(c)[0] for c in "XYZ$"]]
        assert torch.isfinite(rows).all() and len({tuple(r.tolist()) for r in rows}) == 4   # new, and apart
    with pytest.raises(Exception, match="must hold every character"):
        model.adopt(tiny.state_dict(), ALPHABET.chars + "Q", grown.chars)


def test_the_nucleus_draw_from_the_likeliest_tokens_is_the_draw_from_all_of_them():
    from handsynth.models.transformer import network as net

    def reference(logits, bias, u):   # every token sorted, as the nucleus is defined
        b = torch.from_numpy(np.asarray(bias, np.float32))[:, None]
        p = torch.softmax(logits.float() * (1 + net.TEMPERATURE_SLOPE * b), -1)
        top_p = torch.clamp(1 - net.TOP_P_SLOPE * b, min=net.MIN_TOP_P)
        sp, idx = p.sort(-1, descending=True)
        c = sp.cumsum(-1)
        sp = torch.where(c - sp < top_p, sp, torch.zeros_like(sp))
        c = sp.cumsum(-1)
        k = torch.searchsorted(c, torch.from_numpy(np.asarray(u, np.float32))[:, None] * c[:, -1:])
        return idx.gather(1, k.clamp(max=sp.shape[1] - 1)).squeeze(1).numpy()

    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for spread in (0.5, 3.0, 8.0):             # flat (the full sort) to peaked (the top tokens) logits
        logits = torch.randn(64, 4097, generator=g) * spread
        bias, u = rng.uniform(0, 5, 64).astype(np.float32), rng.random(64).astype(np.float32)
        np.testing.assert_array_equal(net.nucleus_draw(logits, bias, u), reference(logits, bias, u))


def test_the_kind_of_step_is_drawn_at_the_models_odds_whatever_the_bias():
    """factored_draw: pen lifts and ENDs come at the model's own rate at any bias (a sharpened
    joint draw starves the lifts, whose mass is spread over many bins), and the move within a
    kind is the nucleus draw of that kind's tokens."""
    from handsynth.models.transformer import network as net
    A, R = 8, 4
    V = A * R * 2
    kinds = torch.cat([torch.arange(V) // (A * R), torch.tensor([2])])
    logits = torch.zeros(1, V + 1)
    logits[0, 3] = 4.0                          # one likely pen-down move ...
    logits[0, A * R:V] = 0.5                    # ... and the lifting moves spread thin
    p = torch.softmax(logits, -1)[0]
    lift_rate = float(p[A * R:V].sum())
    n = 4000
    rng = np.random.default_rng(0)
    for bias in (0.0, 3.0, 8.0):
        tok = net.factored_draw(logits.expand(n, -1), kinds, np.full(n, bias, np.float32),
                                rng.random(n).astype(np.float32), rng.random(n).astype(np.float32))
        assert abs(np.mean((tok >= A * R) & (tok < V)) - lift_rate) < 0.03, bias
        assert not np.any(tok == V) or p[V] > 0
    joint = net.nucleus_draw(logits.expand(n, -1), np.full(n, 8.0, np.float32), rng.random(n).astype(np.float32))
    assert np.mean((joint >= A * R) & (joint < V)) < 0.5 * lift_rate   # (what the joint draw did)
    end_only = logits.clone()
    end_only[0, V] = 50.0
    assert net.factored_draw(end_only, kinds, np.zeros(1, np.float32), np.full(1, 0.5, np.float32),
                             np.full(1, 0.5, np.float32))[0] == V
