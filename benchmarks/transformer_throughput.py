"""Training and sampling speed of the transformer family on this CPU, to size a CPU preset.

For each size (the presets, and ``DxL`` for d_model D and L layers, d_ff 4D, D/64 heads): pen
tokens per second of a training step (forward, backward, Adam) on a batch of real IAM-OnDB lines
(``--batch`` lines cut to ``--steps`` pen steps each), and of sampling (``--rows`` lines at
once through the KV cache), median of ``--repeats`` interleaved rounds; with it, the tokens one
8-hour CPU budget trains on, in epochs of the corpus. Training and sampling in float32 (bfloat16
where this CPU has it, as the loop would choose).

    python benchmarks/transformer_throughput.py --iam ../shared/data/iam-ondb [--sizes tiny,small,full,256x4]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch


def build(name: str, alphabet_size: int, offsets: list):
    from handsynth.models.transformer import Model
    if "x" in name:
        d, layers = (int(v) for v in name.split("x"))
        cfg = replace(Model.Config.preset("small", alphabet_size), d_model=d, layers=layers, heads=max(1, d // 64),
                      d_ff=4 * d)
    else:
        cfg = Model.Config.preset(name, alphabet_size)
    return Model(Model.fit(cfg, offsets))


def main(argv=None) -> int:
    from handsynth.data.corpus import load_corpus, make_batch
    from handsynth.hardware import configure_threads, use_bf16
    from handsynth.sampling import SamplingOptions, sample_lines
    from handsynth.strokes import standardize

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iam", required=True)
    ap.add_argument("--sizes", default="tiny,small,full")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600, help="pen steps per training line")
    ap.add_argument("--rows", type=int, default=10, help="lines sampled at once")
    ap.add_argument("--sample-steps", type=int, default=200, help="pen steps sampled per line")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)

    configure_threads("train")
    bf16 = use_bf16(None)
    corpus = load_corpus(a.iam, progress=False)
    train = corpus.indices("train")
    alphabet = corpus.alphabet()
    mean, std = corpus.offset_stats()
    long = [i for i in train if len(corpus.offsets[i]) >= a.steps][:a.batch]
    offs = [corpus.offsets[i][:a.steps] for i in long]
    texts = [corpus.texts[i] for i in long]
    batch = make_batch(offs, texts, alphabet, mean, std)
    fit_on = [standardize(corpus.offsets[i], mean, std) for i in train[:2000]]
    epoch_tokens = sum(len(corpus.offsets[i]) + 1 for i in train)
    models = {n: build(n, alphabet.size, fit_on) for n in a.sizes.split(",")}
    opts = {n: torch.optim.Adam(m.parameters(), lr=1e-4) for n, m in models.items()}
    sample_text = ["handwriting synthesis on a cpu"] * a.rows
    got = {n: {"train": [], "sample": []} for n in models}
    for r in range(a.repeats + 1):   # round 0 warms up
        for n, m in models.items():
            m.train()
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                s, k = m.loss(batch)
            (s / k).backward()
            opts[n].step()
            opts[n].zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            if r:
                got[n]["train"].append(float(k) / dt)
            t0 = time.perf_counter()
            o = SamplingOptions(steps_per_char=(a.sample_steps - 40) / len(sample_text[0]), bf16=bf16)
            lines = sample_lines(m, alphabet, mean, std, sample_text, o)
            dt = time.perf_counter() - t0
            if r:
                got[n]["sample"].append(sum(len(x.offsets) for x in lines) / dt)
    print(f"{torch.get_num_threads()} threads, bfloat16 {bf16}; training batch {len(offs)} lines x {a.steps} "
          f"steps; an epoch is {epoch_tokens:,} pen tokens; medians of {a.repeats}")
    print("| size | parameters | train tokens/s | 8 CPU-hours = epochs | sample tokens/s (rows) |")
    print("| --- | --- | --- | --- | --- |")
    for n, m in models.items():
        tr, sa = statistics.median(got[n]["train"]), statistics.median(got[n]["sample"])
        params = sum(p.numel() for p in m.parameters())
        print(f"| {n} | {params / 1e6:.2f} M | {tr:,.0f} | {tr * 8 * 3600 / epoch_tokens:.1f} | {sa:,.0f} ({a.rows}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
