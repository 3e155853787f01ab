"""Training throughput at full size (3 x 400, K=10, M=20): pen steps per second of a training
step (forward, backward, Adam update) for handsynth's training step and, in the same run, for a
straightforward reference (layer 1 + window stepped in a Python loop of nn.LSTMCell, layers 2-3 as
nn.LSTM, float32).

    python benchmarks/train_throughput.py [--batch 32] [--steps 700] [--repeats 5]

Reports the median over repeats of each and the ratio (runs are interleaved so machine noise
hits both alike). Runs against the current layout (``handsynth.loop``, ``handsynth.models``) and,
for before/after comparisons, against a tree from before it (``PYTHONPATH=/path/to/old/tree``):
the layout is taken from the ``handsynth`` package actually imported.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import handsynth
from handsynth.data.corpus import Batch

# decided by the imported package's own files: an editable install can resolve new submodules
# (handsynth.models, handsynth.loop) even when PYTHONPATH points handsynth at an older tree
NEW_LAYOUT = (Path(handsynth.__file__).parent / "loop.py").exists()
if NEW_LAYOUT:
    from handsynth.hardware import use_bf16
    from handsynth.loop import train_step as _loop_step
    from handsynth.models.graves import GravesConfig as ModelConfig
    from handsynth.models.graves import Synthesizer, log_likelihood
    from handsynth.train import TrainConfig

    def handsynth_step(model, opt, batch, tc):
        """The training loop's step: the family's loss per pen step under autocast, clipped Adam."""
        def loss():
            nll, count = model.loss(batch)
            return nll / count, count
        return _loop_step(model, opt, loss, tc.clip, use_bf16(tc.bf16))
else:  # the layout before handsynth/loop.py and handsynth/models/
    from handsynth.model import ModelConfig, Synthesizer, log_likelihood
    from handsynth.train import TrainConfig
    from handsynth.train import train_step as handsynth_step


class Reference(nn.Module):
    """The straightforward implementation the speed target is measured against."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        A, H = cfg.alphabet_size, cfg.hidden
        self.cell1 = nn.LSTMCell(3 + A, H)
        self.window = nn.Linear(H, 3 * cfg.window_k)
        self.lstm2 = nn.LSTM(3 + A + H, H, batch_first=True)
        self.lstm3 = nn.LSTM(3 + A + H, H, batch_first=True)
        self.head = nn.Linear(3 * H, cfg.outputs)

    def forward(self, x, text, text_mask):
        B, T, _ = x.shape
        K, A, H = self.cfg.window_k, self.cfg.alphabet_size, self.cfg.hidden
        onehot = F.one_hot(text, A).float()
        u = torch.arange(text.shape[1]).float()
        h = c = torch.zeros(B, H)
        kappa, w = torch.zeros(B, K), torch.zeros(B, A)
        hs, ws = [], []
        for t in range(T):
            h, c = self.cell1(torch.cat([x[:, t], w], 1), (h, c))
            alpha, beta, kh = self.window(h).exp().chunk(3, 1)
            kappa = kappa + kh * 0.1
            phi = (alpha.unsqueeze(2) * torch.exp(-beta.unsqueeze(2) * (kappa.unsqueeze(2) - u) ** 2)).sum(1)
            w = torch.bmm((phi * text_mask).unsqueeze(1), onehot).squeeze(1)
            hs.append(h)
            ws.append(w)
        h1, wseq = torch.stack(hs, 1), torch.stack(ws, 1)
        h2, _ = self.lstm2(torch.cat([x, wseq, h1], 2))
        h3, _ = self.lstm3(torch.cat([x, wseq, h2], 2))
        return self.head(torch.cat([h1, h2, h3], 2))


def fake_batch(B, T, U, A, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 3, generator=g)
    x[..., 2] = (torch.rand(B, T, generator=g) < 0.05).float()
    text = torch.randint(1, A, (B, U), generator=g)
    return x, text, torch.ones(B, U), torch.ones(B, T)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--chars", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ModelConfig(alphabet_size=82)
    x, text, tmask, mask = fake_batch(args.batch, args.steps, args.chars, cfg.alphabet_size)
    pen_steps = args.batch * args.steps

    ref = Reference(cfg)
    ref_opt = torch.optim.Adam(ref.parameters(), 1e-3)

    def ref_step():
        out = ref(x, text, tmask)
        loss = -(log_likelihood(out[:, :-1], x[:, 1:]) * mask[:, 1:]).sum() / mask.sum()
        ref_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 10.0)
        ref_opt.step()

    model = Synthesizer(cfg)
    tcfg = TrainConfig()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    batch = Batch(x, x, mask, text, tmask)

    def our_step():
        handsynth_step(model, opt, batch, tcfg)

    timings = {"reference": [], "handsynth": []}
    ref_step(), our_step()  # warm-up
    for r in range(args.repeats):
        for name, fn in (("reference", ref_step), ("handsynth", our_step)):
            t0 = time.perf_counter()
            fn()
            timings[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"batch {args.batch} x {args.steps} steps, {args.chars} characters, full size 3 x 400, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats, "
          f"{'current' if NEW_LAYOUT else 'old'} layout ({Path(handsynth.__file__).parent})")
    for k in timings:
        print(f"{k:10s}: median {med[k]:.2f} s/step  ->  {pen_steps / med[k]:,.0f} pen steps/s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in timings[k])})")
    print(f"speed-up: {med['reference'] / med['handsynth']:.2f}x")


if __name__ == "__main__":
    main()
