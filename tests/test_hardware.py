"""The bfloat16 choice follows the CPU (or HANDSYNTH_BF16), and sampling and training use it."""
import numpy as np
import pytest

import handsynth
from handsynth.hardware import cpu_flags, fast_bf16, use_bf16
from handsynth.sampling import SamplingOptions


def test_fast_bf16_follows_the_cpu_flags_and_the_override(monkeypatch):
    monkeypatch.delenv("HANDSYNTH_BF16", raising=False)
    flags = cpu_flags().split()
    assert fast_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
    monkeypatch.setenv("HANDSYNTH_BF16", "1")
    assert fast_bf16() and use_bf16(None) and not use_bf16(False)
    monkeypatch.setenv("HANDSYNTH_BF16", "0")
    assert not fast_bf16() and not use_bf16(None) and use_bf16(True)


@pytest.mark.parametrize("forced", ["0", "1"])
def test_default_sampling_uses_the_chosen_dtype(monkeypatch, forced):
    monkeypatch.setenv("HANDSYNTH_BF16", forced)
    hw = handsynth.load_model()
    default = hw.lines(["dtype"], options=SamplingOptions(seed=2))[0]
    stated = hw.lines(["dtype"], options=SamplingOptions(seed=2, bf16=forced == "1"))[0]
    other = hw.lines(["dtype"], options=SamplingOptions(seed=2, bf16=forced != "1"))[0]
    np.testing.assert_array_equal(default.offsets, stated.offsets)
    assert default.offsets.shape != other.offsets.shape or not np.array_equal(default.offsets, other.offsets)
