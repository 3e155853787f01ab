"""Seconds to write a page (10 lines of about 50 characters) with the shipped model on this CPU,
characters per second, and the page's arithmetic lower bound measured in the same run: the
multiply-adds the network needs for the page's pen steps, divided by the rate of a matmul of the
same shapes (batch of 10 lines x the layer's weights) timed here. The bound is given for three
matmuls: a plain float32 one, a plain bfloat16 one, and the kernel the sampler itself uses
(``StepLinear`` in the dtype the sampler picks for this CPU: bfloat16 prepacked by oneDNN where
the CPU has bfloat16 arithmetic, float32 elsewhere), the true bound.

    python benchmarks/write_page.py [--repeats 5] [--model PATH] [--threads N]

``--proofread both``: each round writes the page without and with the proofreading pass
(``write``'s default), interleaved; medians of each and their ratio (the bound is the page's
without). ``--proofread on|off`` (default off): only that way.

Under load (``--load``): the seconds a page takes on a quiet machine, with another process
spinning on one core, and with a second writer (another process writing pages) at once,
interleaved round by round in the same run so that all three see the same machine; medians and
their ratios to the quiet figure, for each variant of thread count and OpenMP wait policy. A
variant is ``THREADS:WAIT``: THREADS a number, ``auto`` (``hardware.configure_threads("write")``
before each page, as the CLI and the server do) or ``default`` (torch's own choice, the physical
cores); WAIT ``spin`` (libgomp's default: spin 300,000 rounds, then sleep), ``passive``
(``OMP_WAIT_POLICY=PASSIVE``: sleep at once) or ``spinN`` (``GOMP_SPINCOUNT=N``). Each variant
runs in its own processes (the wait policy is read when torch loads), its second writer too.

    python benchmarks/write_page.py --load [--rounds 7] [--variants default:spin,auto:passive]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

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


def macs_per_step(cfg, U: int, position: float = 0.0) -> int:
    """Multiply-adds of one pen step of one line with ``U`` characters. The transformer's
    (a config with ``d_model``) also depend on the step's ``position`` in its line: per layer
    the projections (self-attention's query, key, value and output, cross-attention's query and
    output), the MLP and the attention over the cache and the text; then the head."""
    if hasattr(cfg, "d_model"):
        d, L, F = cfg.d_model, cfg.layers, cfg.d_ff
        vocab = cfg.angle_bins * cfg.radius_bins * 2 + 1
        return int(L * (6 * d * d + 2 * d * F + 2 * (position + U) * d) + d * vocab)
    A, H, K, M, L = cfg.alphabet_size, cfg.hidden, cfg.window_k, cfg.mixtures, cfg.layers
    layer1 = (3 + A + H) * 4 * H
    window = H * 3 * K + K * (U + 1) + U * A
    upper = (L - 1) * (3 + A + H + H) * 4 * H
    head = L * H * (1 + 6 * M)
    return layer1 + window + upper + head


KERNELS = ("float32", "bfloat16", "sampler")


def _sampler_bf16() -> bool:
    """The dtype the sampler picks here (the tree before hardware.py always sampled in bfloat16)."""
    import handsynth
    try:
        from handsynth.hardware import use_bf16
        return use_bf16(handsynth.SamplingOptions.bf16)
    except ImportError:
        return True


def matmul_rate(B: int, cfg, kernel: str = "float32", repeats: int = 200) -> float:
    """Multiply-adds per second of the page's dominant matmul shape (B x (3+A+2H) @ (3+A+2H) x 4H):
    ``kernel`` float32 or bfloat16 (a plain ``a @ w``), or sampler (the sampling step's own
    prepacked bfloat16 matmul, ``StepLinear``)."""
    import torch
    try:   # the layout before handsynth/models/ first (before/after runs put the old tree on PYTHONPATH)
        from handsynth.model import StepLinear
    except ImportError:
        from handsynth.models.graves import StepLinear

    if hasattr(cfg, "d_model"):   # the transformer: its MLP's shape; its sampler computes in float32
        k, n = cfg.d_model, cfg.d_ff
        dtype = torch.bfloat16 if kernel == "bfloat16" else torch.float32
        a, w = torch.randn(B, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
        f = lambda: torch.nn.functional.linear(a, w)  # noqa: E731
    else:
        k, n = 3 + cfg.alphabet_size + 2 * cfg.hidden, 4 * cfg.hidden
        dtype = torch.float32 if kernel == "float32" or (kernel == "sampler" and not _sampler_bf16()) else torch.bfloat16
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


# -- under load ---------------------------------------------------------------------------------------
SPIN = "while True: pass"
WAITS = {"spin": {"GOMP_SPINCOUNT": "300000"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"},
         "active": {"OMP_WAIT_POLICY": "ACTIVE"}}
OPENMP_ENV = ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "HANDSYNTH_THREADS")


def _variant_env(variant: str) -> dict:
    """The environment of a variant's processes (set before torch loads OpenMP)."""
    threads, _, wait = variant.partition(":")
    if not (threads in ("auto", "default") or threads.isdigit()):
        raise SystemExit(f"variant {variant!r}: THREADS is a number, auto or default")
    if wait.startswith("spin") and wait[4:].isdigit():
        extra = {"GOMP_SPINCOUNT": wait[4:]}
    elif wait in WAITS:
        extra = WAITS[wait]
    else:
        raise SystemExit(f"variant {variant!r}: WAIT is spin, passive, active or spinN")
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_ENV}
    return {**env, **extra}


def _text(args) -> str:
    return "\n".join(TEXT.splitlines()[:args.lines])


def _page(hw, threads: str, args, fresh: bool = True) -> dict:
    """One timed page: the thread count set first (``auto``: the policy; ``fresh``: on a new
    look at the machine, as a process starting now would take it, else on what ran since the
    last page, as a server does)."""
    import torch

    from handsynth import hardware

    why = ""
    if threads == "auto":
        if fresh:
            hardware.busy_elsewhere(0)        # a new window: what runs now, not before
            time.sleep(args.settle)
        why = hardware.configure_threads("write").why
    t0 = time.perf_counter()
    drawing = hw.write(_text(args), bias=args.bias, seed=0, width=1400)
    dt = time.perf_counter() - t0
    return {"s": dt, "threads": torch.get_num_threads(), "why": why,
            "steps": sum(len(line.offsets) for line in drawing.lines)}


def child(args) -> None:
    """A variant's process: ``--child measure`` writes a page for each line on stdin and answers
    with its timing; ``--child loop`` writes pages until it is killed (the second writer)."""
    import torch

    import handsynth

    threads = args.variant.partition(":")[0]
    if threads.isdigit():
        torch.set_num_threads(int(threads))
    hw = handsynth.load_model(args.model)
    hw.write("warm up", seed=0)
    print(json.dumps({"ready": True}), flush=True)
    if args.child == "loop":
        while True:
            _page(hw, threads, args, fresh=False)
    for _ in sys.stdin:
        print(json.dumps(_page(hw, threads, args)), flush=True)


def _spawn(variant: str, kind: str, args) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", kind, "--variant", variant, "--bias", str(args.bias),
           "--settle", str(args.settle), "--lines", str(args.lines)] + (["--model", args.model] if args.model else [])
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_variant_env(variant))
    line = p.stdout.readline()
    if not line or not json.loads(line).get("ready"):
        raise SystemExit(f"variant {variant}: the {kind} process did not start")
    return p


def under_load(args) -> None:
    variants = args.variants.split(",")
    for v in variants:
        _variant_env(v)
    started = os.getloadavg()[0]
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    procs = []
    try:
        os.kill(spinner.pid, signal.SIGSTOP)
        measure = {v: _spawn(v, "measure", args) for v in variants}
        second = {v: _spawn(v, "loop", args) for v in variants}
        procs = list(measure.values()) + list(second.values())
        for p in second.values():
            os.kill(p.pid, signal.SIGSTOP)
        modes = ("quiet", "busy core", "two writers")
        got = {(v, m): [] for v in variants for m in modes}
        for r in range(args.rounds):
            for m in modes[r % 3:] + modes[:r % 3]:          # the order turns round by round
                for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                    load = spinner if m == "busy core" else second[v] if m == "two writers" else None
                    if load is not None:
                        os.kill(load.pid, signal.SIGCONT)
                    time.sleep(0.3)                              # the load gets going
                    measure[v].stdin.write("page\n")
                    measure[v].stdin.flush()
                    got[(v, m)].append(json.loads(measure[v].stdout.readline()))
                    if load is not None:
                        os.kill(load.pid, signal.SIGSTOP)
        print(f"a page of {args.lines} lines ({len(_text(args))} characters), {args.rounds} rounds, "
              f"{os.cpu_count()} CPUs, load average {started:.2f} at the start and {os.getloadavg()[0]:.2f} at the "
              f"end; medians (range), ratio to the same variant's quiet median")
        for v in variants:
            quiet = statistics.median(x["s"] for x in got[(v, "quiet")])
            cells = []
            for m in modes:
                xs = [x["s"] for x in got[(v, m)]]
                threads = sorted({x["threads"] for x in got[(v, m)]})
                t = statistics.median(xs)
                busy = [float(x["why"].split(", ")[1].split()[0]) for x in got[(v, m)] if "busy" in x["why"]]
                seen = f", saw {statistics.median(busy):.1f} busy" if busy else ""
                cells.append(f"{m} {t:.3f} s ({min(xs):.2f}-{max(xs):.2f}) x{t / quiet:.2f} "
                             f"[{'/'.join(map(str, threads))} thr{seen}]")
            print(f"{v:>14}: " + "; ".join(cells))
        if args.json:
            print(json.dumps({f"{v} | {m}": xs for (v, m), xs in got.items()}))
    finally:
        for p in procs + [spinner]:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=None, help="default: torch's own choice")
    ap.add_argument("--bias", type=float, default=None, help="default: SamplingOptions.bias")
    ap.add_argument("--proofread", choices=("off", "on", "both"), default="off",
                    help="the proofreading pass: off (default), on, or both interleaved")
    ap.add_argument("--load", action="store_true", help="time a page quiet, with a core busy and with two writers")
    ap.add_argument("--rounds", type=int, default=7, help="--load: pages per mode and variant")
    ap.add_argument("--variants", default="default:spin,auto:passive", help="--load: THREADS:WAIT,... (see above)")
    ap.add_argument("--settle", type=float, default=0.25, help="--load, auto: seconds the policy looks at the machine")
    ap.add_argument("--json", action="store_true", help="--load: every timing as JSON too")
    ap.add_argument("--lines", type=int, default=10, help="--load: write only the page's first N lines")
    ap.add_argument("--child", choices=("measure", "loop"), help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child or args.load:
        if args.bias is None:
            import handsynth
            args.bias = handsynth.SamplingOptions.bias
        return child(args) if args.child else under_load(args)
    import torch

    import handsynth
    if args.bias is None:
        args.bias = handsynth.SamplingOptions.bias
    if args.threads:
        torch.set_num_threads(args.threads)
    hw = handsynth.load_model(args.model)
    cfg = hw.model.config
    hw.write("warm up", seed=0)
    times, bounds, drawing = [], {k: [] for k in KERNELS}, None
    proofed, rewritten = [], []
    for r in range(args.repeats):
        if args.proofread != "off":
            t0 = time.perf_counter()
            done = hw.write(TEXT, bias=args.bias, seed=r, width=1400, proofread=True)
            proofed.append(time.perf_counter() - t0)
            if args.proofread == "on":
                drawing, times = done, proofed
                continue
        t0 = time.perf_counter()
        drawing = hw.write(TEXT, bias=args.bias, seed=r, width=1400, proofread=False)
        times.append(time.perf_counter() - t0)
        if proofed:
            rewritten.append(sum(not np.array_equal(a.offsets, b.offsets) for a, b in zip(drawing.lines, done.lines)))
        U = max(len(line.text) for line in drawing.lines)
        macs = sum(len(line.offsets) * macs_per_step(cfg, U, len(line.offsets) / 2) for line in drawing.lines)
        for k in KERNELS:
            bounds[k].append(macs / matmul_rate(len(drawing.lines), cfg, k))
    chars = sum(len(line.text) for line in drawing.lines)
    t = statistics.median(times)
    print(f"page: {len(drawing.lines)} lines, {chars} characters, {torch.get_num_threads()} threads, "
          f"{args.repeats} repeats, bias {args.bias}")
    print(f"time per page{' (proofread)' if args.proofread == 'on' else ''}: median {t:.2f} s "
          f"(runs: {', '.join(f'{x:.2f}' for x in times)}); {chars / t:.1f} characters/s")
    if args.proofread == "both":
        p = statistics.median(proofed)
        print(f"with the proofreading pass, interleaved: median {p:.2f} s (runs: {', '.join(f'{x:.2f}' for x in proofed)}); "
              f"ratio {p / t:.2f}x; lines written again per page: {', '.join(map(str, rewritten))}")
    own = "prepacked bfloat16" if _sampler_bf16() and not hasattr(cfg, "d_model") else "float32"
    for k, what in zip(KERNELS, ("a plain float32 matmul", "a plain bfloat16 matmul",
                                 f"the sampler's own {own} matmul (the true bound)")):
        b = statistics.median(bounds[k])
        print(f"arithmetic lower bound at the rate of {what}: median {b:.2f} s; ratio {t / b:.2f}x")


if __name__ == "__main__":
    main()
