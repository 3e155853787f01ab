import io
import math

import numpy as np
import pytest
import torch

from handsynth.models.transformer.tokenizer import PolarTokenizer


def synthetic_line(rng, n_strokes=6):
    """Wavy strokes with steps of ~0.02-0.4 x-heights and pen-up jumps of ~0.5-2."""
    rows = []
    for _ in range(n_strokes):
        n = int(rng.integers(5, 40))
        angle = np.cumsum(rng.normal(0, 0.5, n))
        r = rng.lognormal(np.log(0.12), 0.6, n).clip(0.01, 0.6)
        step = np.stack([r * np.cos(angle), r * np.sin(angle), np.zeros(n)], 1)
        step[0, :2] = rng.uniform(0.5, 2.0) * np.array([1.0, rng.uniform(-0.5, 0.5)])  # the pen-up jump
        step[-1, 2] = 1
        rows.append(step)
    return np.concatenate(rows).astype(np.float32)


@pytest.fixture(scope="module")
def lines():
    rng = np.random.default_rng(0)
    return [synthetic_line(rng) for _ in range(40)]


@pytest.fixture(scope="module")
def tok(lines):
    return PolarTokenizer.fit(lines[:30], angle_bins=64, radius_bins=32)


def step_bound(tok, r):
    """Largest rounding error for a move of radius ``r`` (within the fitted range): its radius
    bin's width plus the half sector's arc."""
    edges = np.asarray(tok.radius_edges)
    b = np.minimum(np.searchsorted(edges[1:-1], r, side="right"), tok.radius_bins - 1)
    return edges[b + 1] - edges[b] + edges[b + 1] * math.pi / tok.angle_bins + 1e-5


def test_fit_shapes_and_bins(tok):
    assert tok.vocab_size == 64 * 32 * 2
    assert PolarTokenizer.fit([np.ones((3, 3))]).vocab_size == 16384   # the reference's default
    edges, values = np.asarray(tok.radius_edges), np.asarray(tok.radius_values)
    assert len(edges) == tok.radius_bins + 1 and edges[0] == 0 and np.all(np.diff(edges) > 0)
    assert np.all((values >= edges[:-1]) & (values <= edges[1:]))
    widths = np.diff(edges[1:])
    assert widths[-1] > 10 * widths[0]                                  # fine short, coarse long


def test_round_trip_within_bin_width_and_pen_state_exact(tok, lines):
    for off in lines[30:]:
        tokens = tok.encode(off)
        assert tokens.dtype == np.int64 and tokens.shape == (len(off),)
        assert tokens.min() >= 0 and tokens.max() < tok.vocab_size
        dec = tok.decode(tokens)
        assert dec.dtype == np.float32 and dec.shape == off.shape
        np.testing.assert_array_equal(dec[:, 2], off[:, 2])
        r = np.hypot(off[:, 0], off[:, 1])
        inside = r <= tok.max_radius
        err = np.hypot(*(dec[:, :2] - off[:, :2]).T)
        assert np.all(err[inside] <= step_bound(tok, r[inside]))


def test_feedback_keeps_points_from_drifting(tok, lines):
    off = lines[35]
    plain = np.cumsum(tok.decode(tok.encode(off))[:, :2] - off[:, :2], 0)
    fed = tok.decode(tok.encode(off, feedback=True))
    np.testing.assert_array_equal(fed[:, 2], off[:, 2])
    drift = np.hypot(*np.cumsum(fed[:, :2] - off[:, :2], 0).T)
    assert drift.max() <= step_bound(tok, np.array([2 * np.hypot(off[:, 0], off[:, 1]).max()]))[0]
    assert drift[-1] < np.hypot(*plain[-1])


def test_dict_round_trip_gives_identical_tokens(tok, lines):
    buf = io.BytesIO()
    torch.save(tok.to_dict(), buf)
    buf.seek(0)
    back = PolarTokenizer.from_dict(torch.load(buf, weights_only=True))   # as in a model file
    assert back == tok
    for off in lines[30:33]:
        np.testing.assert_array_equal(back.encode(off), tok.encode(off))
        np.testing.assert_array_equal(back.encode(off, feedback=True), tok.encode(off, feedback=True))


def test_zero_and_huge_moves(tok):
    off = np.array([[0, 0, 0], [0, 0, 1], [100.0, 0, 0], [-3, -300.0, 1]], np.float32)
    tokens = tok.encode(off)
    rb = (tokens // tok.angle_bins) % tok.radius_bins
    assert list(rb) == [0, 0, tok.radius_bins - 1, tok.radius_bins - 1]
    dec = tok.decode(tokens)
    np.testing.assert_array_equal(dec[:, 2], off[:, 2])
    assert np.all(np.hypot(dec[:2, 0], dec[:2, 1]) <= tok.radius_edges[1])      # zero stays tiny
    r = np.hypot(dec[2:, 0], dec[2:, 1])
    np.testing.assert_allclose(r, tok.radius_values[-1], rtol=1e-5)             # clipped, not lost
    cos = (dec[2:, :2] * off[2:, :2]).sum(1) / (r * np.hypot(off[2:, 0], off[2:, 1]))
    assert np.all(cos >= math.cos(math.pi / tok.angle_bins) - 1e-6)              # direction kept
    with pytest.raises(ValueError):
        tok.decode(np.array([tok.vocab_size]))


def test_every_token_decodes_and_re_encodes_to_itself(tok):
    tokens = np.arange(tok.vocab_size)
    np.testing.assert_array_equal(tok.encode(tok.decode(tokens)), tokens)


def test_round_trip_on_real_lines():
    """Real handwriting (the built-in styles' IAM-OnDB lines): bins fitted on half the lines
    reproduce the other half's pen steps to a small fraction of an x-height, pen lifts exactly,
    and with feedback the line's points stay put (measured: mean 0.007-0.009 x-heights)."""
    from handsynth.styles import builtin_styles

    real = [s.offsets() for s in builtin_styles()]
    tok = PolarTokenizer.fit(real[::2])
    for off in real[1::2]:
        back = tok.decode(tok.encode(off))
        np.testing.assert_array_equal(back[:, 2], off[:, 2])
        step = np.hypot(*(back[:, :2] - off[:, :2]).T)
        assert step.mean() < 0.02 and np.percentile(step, 99) < 0.15, (step.mean(), np.percentile(step, 99))
        fb = tok.decode(tok.encode(off, feedback=True))
        drift = np.hypot(*(np.cumsum(fb[:, :2], 0) - np.cumsum(off[:, :2], 0)).T)
        # a long pen-up move lands in a wide top bin (log spacing: about +-5% of its length) for
        # one step; feedback corrects it at the next
        assert drift.mean() < 0.02 and drift.max() < 0.25, (drift.mean(), drift.max())
