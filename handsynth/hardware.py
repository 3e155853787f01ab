"""What this CPU does fast, where the choice changes speed by a large factor.

bfloat16 matmuls run at up to twice float32's rate on CPUs with bfloat16 arithmetic (x86
AVX512-BF16 or AMX), and several times slower than float32 elsewhere (measured on an AVX2 AMD
EPYC: a 10-line page 22 s in bfloat16 against 2.8 s in float32 on one thread; a training step
8 s against 1 s for a float32 reference). So sampling and training pick bfloat16 only where the
CPU has it, unless told otherwise (``SamplingOptions.bf16``, ``TrainConfig.bf16``, or
``HANDSYNTH_BF16=0|1``). The choice follows the CPU, not a timing, so the same seed gives the
same drawing on a given machine.
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> str:
    """The CPU's feature flags line (Linux: /proc/cpuinfo), or the processor name elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def fast_bf16() -> bool:
    """Whether bfloat16 matmuls are fast here: ``HANDSYNTH_BF16`` if set, else whether the CPU
    has bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    forced = os.environ.get("HANDSYNTH_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    flags = cpu_flags().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(choice: bool | None) -> bool:
    """An option's bfloat16 choice: as given, or ``fast_bf16()`` when None (the default)."""
    return fast_bf16() if choice is None else bool(choice)
