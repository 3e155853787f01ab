"""The same text, style and seed give the same drawing, release after release: page stroke
coordinates of a fixed set of cases, recorded from the shipped model before the package was
restructured (``tests/fixtures/golden.npz``), compared with what the code writes now.

Float32 cases run the PyTorch step, whose results agree across CPUs to float rounding, so they
are compared everywhere. The default (bfloat16, compiled) cases depend on the CPU's bfloat16
kernels and are compared on CPUs of the kind they were recorded on (``cpu_kind``).

Regenerate (only for a deliberate change of what is written): ``python tests/test_golden.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).with_name("fixtures") / "golden.npz"

# (name, text, style, seed, bias, bf16)
CASES = [
    ("own_hand", "Dear Ada, thank you for the tea!", None, 1, 2.0, True),
    ("styled_page", "The quick brown fox jumps over\nthe lazy dog near the river bank.", "s03", 4, 2.0, True),
    ("low_bias", "handwriting synthesis", "s07", 2, 0.5, True),
    ("f32_own_hand", "meet me at the station", None, 3, 2.0, False),
    ("f32_styled", "a short note in another hand", "s05", 5, 1.5, False),
]


def cpu_kind() -> str:
    """What the bfloat16 drawings depend on: the CPU's vector extensions as PyTorch sees them,
    and whether it has native bfloat16 arithmetic."""
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    return f"{torch.backends.cpu.get_cpu_capability()}:{'bf16' if 'avx512_bf16' in flags else 'nobf16'}"


def draw(hw, text, style, seed, bias, bf16) -> np.ndarray:
    """The case's page strokes, concatenated, with a stroke-index column: (N, 3)."""
    from handsynth.layout import PageOptions, place
    from handsynth.sampling import SamplingOptions

    # as write() samples and places them (the same candidate race, seeds and layout), with the
    # matmul dtype stated: write() picks it by CPU
    opts = SamplingOptions(bias=bias, seed=seed, bf16=bf16)
    lines = hw.lines(text.split("\n"), style=style, options=opts, resample=True)
    pages = place([ln.text for ln in lines], [ln.offsets for ln in lines], PageOptions())
    strokes = [s for p in pages for s in p.strokes]
    return np.concatenate([np.c_[s, np.full(len(s), i)] for i, s in enumerate(strokes)]).astype(np.float64)


@pytest.fixture(scope="module")
def shipped():
    import handsynth
    return handsynth.load_model()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_drawing_as_recorded(shipped, case):
    name, *args = case
    want = np.load(GOLDEN)
    if case[-1] and str(want["cpu_kind"]) != cpu_kind():
        pytest.skip(f"bfloat16 drawings recorded on a {want['cpu_kind']} CPU; this is {cpu_kind()}")
    got = draw(shipped, *args)
    ref = want[name]
    assert got.shape == ref.shape, f"{name}: {got.shape} points vs {ref.shape} recorded"
    np.testing.assert_allclose(got, ref, atol=1e-2, rtol=0)   # page pixels


if __name__ == "__main__":
    import handsynth
    hw = handsynth.load_model()
    arrays = {name: draw(hw, *args) for name, *args in CASES}
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, cpu_kind=np.array(cpu_kind()), **arrays)
    print({k: v.shape for k, v in arrays.items()}, cpu_kind(), file=sys.stderr)
