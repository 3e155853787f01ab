import numpy as np

from handsynth.strokes import Normalization, baseline, normalize_line, offsets_to_strokes, strokes_to_offsets, transform


def test_offsets_points_round_trip():
    rng = np.random.default_rng(0)
    strokes = [rng.normal(size=(n, 2)).astype(np.float32) for n in (5, 1, 9)]
    off = strokes_to_offsets(strokes)
    assert off.shape == (15, 3) and off.dtype == np.float32
    assert list(np.flatnonzero(off[:, 2])) == [4, 5, 14]
    back = offsets_to_strokes(off)
    assert [len(s) for s in back] == [5, 1, 9]
    for a, b in zip(strokes, back):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_normalize_flattens_and_scales():
    x = np.linspace(0, 50, 400)
    y = np.sin(x * 3) * 2  # a flat wavy line, height ~4
    flat = [np.stack([x, y], 1)]
    rotated = transform(flat, angle=np.radians(12.0), scale=37.0)
    off = normalize_line(rotated, Normalization(downsample=1, clip=100))
    pts = np.concatenate(offsets_to_strokes(off))
    slope = np.polyfit(pts[:, 0], pts[:, 1], 1)[0]
    assert abs(np.degrees(np.arctan(slope))) < 0.5
    assert abs((np.percentile(pts[:, 1], 90) - np.percentile(pts[:, 1], 10)) - 1.0) < 1e-3


def test_downsample_keeps_stroke_ends():
    strokes = [np.stack([np.arange(11), np.arange(11) % 3], 1).astype(np.float32),
               np.array([[20, 0], [21, 1]], np.float32)]
    off = normalize_line(strokes, Normalization(downsample=2))
    back = offsets_to_strokes(off)
    assert [len(s) for s in back] == [6, 2]
    assert off[:, 2].sum() == 2


def test_baseline_of_rotated_line_gives_its_angle():
    x = np.linspace(0, 40, 2000)
    y = np.abs(np.sin(x * 2))  # letters sitting on y = 0
    for deg in (-5.0, 0.0, 3.0, 10.0):
        st = transform([np.stack([x, y], 1)], angle=np.radians(deg))
        slope, _, spread = baseline(st)
        assert abs(np.degrees(np.arctan(slope)) - deg) < 0.3
        assert spread < 0.1
