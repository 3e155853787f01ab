"""Seconds to write a page (10 lines of about 50 characters) with the shipped model on this CPU,
characters per second, and the page's arithmetic lower bound measured in the same run: the
multiply-adds the network needs for the page's pen steps, divided by the rate of a matmul of the
same shapes (batch of 10 lines x the layer's weights) timed here.

    python benchmarks/write_page.py [--repeats 5] [--model PATH] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import handsynth

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


def matmul_rate(B: int, cfg, repeats: int = 200, dtype=torch.float32) -> float:
    """Multiply-adds per second of the page's dominant matmul shape (B x (3+A+2H) @ (3+A+2H) x 4H)."""
    k = 3 + cfg.alphabet_size + 2 * cfg.hidden
    a, w = torch.randn(B, k, dtype=dtype), torch.randn(k, 4 * cfg.hidden, dtype=dtype)
    for _ in range(20):
        a @ w
    t = time.perf_counter()
    for _ in range(repeats):
        a @ w
    return B * k * 4 * cfg.hidden * repeats / (time.perf_counter() - t)


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
    times, bounds, bounds16, drawing = [], [], [], None
    for r in range(args.repeats):
        t0 = time.perf_counter()
        drawing = hw.write(TEXT, bias=args.bias, seed=r, width=1400)
        times.append(time.perf_counter() - t0)
        U = max(len(line.text) for line in drawing.lines)
        steps = sum(len(line.offsets) for line in drawing.lines)
        bounds.append(steps * macs_per_step(cfg, U) / matmul_rate(len(drawing.lines), cfg))
        bounds16.append(steps * macs_per_step(cfg, U) / matmul_rate(len(drawing.lines), cfg, dtype=torch.bfloat16))
    chars = sum(len(line.text) for line in drawing.lines)
    t, b, b16 = statistics.median(times), statistics.median(bounds), statistics.median(bounds16)
    print(f"page: {len(drawing.lines)} lines, {chars} characters, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats, bias {args.bias}")
    print(f"time per page: median {t:.2f} s (runs: {', '.join(f'{x:.2f}' for x in times)}); {chars / t:.1f} characters/s")
    print(f"arithmetic lower bound (float32 matmul rate): median {b:.2f} s; ratio {t / b:.2f}x")
    print(f"arithmetic lower bound (bfloat16 matmul rate, the sampler's precision): median {b16:.2f} s; "
          f"ratio {t / b16:.2f}x")


if __name__ == "__main__":
    main()
