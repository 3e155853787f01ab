"""Seconds to write a page (10 lines of about 50 characters) with the shipped model on this CPU,
characters per second, and the page's arithmetic lower bound measured in the same run: the
multiply-adds the network needs for the page's pen steps, divided by the rate of a matmul of the
same shapes (batch of 10 lines x the layer's weights) timed here. The bound is given for three
matmuls: a plain float32 one, a plain bfloat16 one, and the kernel the sampler itself uses
(``StepLinear`` in the dtype the sampler picks for this CPU: bfloat16 prepacked by oneDNN where
the CPU has bfloat16 arithmetic, float32 elsewhere), the true bound.

    python benchmarks/write_page.py [--repeats 5] [--model PATH] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import handsynth
try:   # the layout before handsynth/models/ first (before/after runs put the old tree on PYTHONPATH)
    from handsynth.model import StepLinear
except ImportError:
    from handsynth.models.graves import StepLinear

TEXT = ("The quick brown fox jumps over the lazy dog again.\n"
        "Handwriting is a sequence of small pen movements.\n"
        "Every line of this page is sampled in one batch.\n"
        "A soft window walks along the characters of text.\n"
        "Priming with a sample makes it write in that hand.\n"
        "Long words can get shaky near their very last end.\n"
        "Dots and crosses of i, j, t and x need pen lifts.\n"
        "The baseline is straightened before it is placed.\n"
        "Numbers like 1234567890 are written as well, too.\n"
        "This is the tenth and last line of the test page.")


def macs_per_step(cfg, U: int) -> int:
    A, H, K, M, L = cfg.alphabet_size, cfg.hidden, cfg.window_k, cfg.mixtures, cfg.layers
    layer1 = (3 + A + H) * 4 * H
    window = H * 3 * K + K * (U + 1) + U * A
    upper = (L - 1) * (3 + A + H + H) * 4 * H
    head = L * H * (1 + 6 * M)
    return layer1 + window + upper + head


KERNELS = ("float32", "bfloat16", "sampler")
try:   # the dtype the sampler picks here (the tree before hardware.py always sampled in bfloat16)
    from handsynth.hardware import use_bf16
    SAMPLER_BF16 = use_bf16(handsynth.SamplingOptions.bf16)
except ImportError:
    SAMPLER_BF16 = True


def matmul_rate(B: int, cfg, kernel: str = "float32", repeats: int = 200) -> float:
    """Multiply-adds per second of the page's dominant matmul shape (B x (3+A+2H) @ (3+A+2H) x 4H):
    ``kernel`` float32 or bfloat16 (a plain ``a @ w``), or sampler (the sampling step's own
    prepacked bfloat16 matmul, ``StepLinear``)."""
    k, n = 3 + cfg.alphabet_size + 2 * cfg.hidden, 4 * cfg.hidden
    dtype = torch.float32 if kernel == "float32" or (kernel == "sampler" and not SAMPLER_BF16) else torch.bfloat16
    a, w = torch.randn(B, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    if kernel == "sampler":
        linear = StepLinear(w.t(), torch.zeros(n), dtype)
        f = lambda: linear(a)  # noqa: E731
    else:
        f = lambda: a @ w  # noqa: E731
    for _ in range(20):
        f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return B * k * n * repeats / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--bias", type=float, default=handsynth.SamplingOptions.bias)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hw = handsynth.load_model(args.model)
    cfg = hw.model.config
    hw.write("warm up", seed=0)
    times, bounds, drawing = [], {k: [] for k in KERNELS}, None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        drawing = hw.write(TEXT, bias=args.bias, seed=r, width=1400)
        times.append(time.perf_counter() - t0)
        U = max(len(line.text) for line in drawing.lines)
        macs = sum(len(line.offsets) for line in drawing.lines) * macs_per_step(cfg, U)
        for k in KERNELS:
            bounds[k].append(macs / matmul_rate(len(drawing.lines), cfg, k))
    chars = sum(len(line.text) for line in drawing.lines)
    t = statistics.median(times)
    print(f"page: {len(drawing.lines)} lines, {chars} characters, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats, bias {args.bias}")
    print(f"time per page: median {t:.2f} s (runs: {', '.join(f'{x:.2f}' for x in times)}); {chars / t:.1f} characters/s")
    own = "prepacked bfloat16" if SAMPLER_BF16 else "float32"
    for k, what in zip(KERNELS, ("a plain float32 matmul", "a plain bfloat16 matmul",
                                 f"the sampler's own {own} matmul (the true bound)")):
        b = statistics.median(bounds[k])
        print(f"arithmetic lower bound at the rate of {what}: median {b:.2f} s; ratio {t / b:.2f}x")


if __name__ == "__main__":
    main()
