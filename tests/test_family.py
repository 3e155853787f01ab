"""A second model family in a few lines, defined here and nowhere in the package: it goes through
the shared training loop, the model file and registry, ``load_model``, the sampling policy,
layout, rendering and the eval report with no change outside its own code. That is the proof
that the next family (the transformer) needs no changes outside its folder."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from torch import nn

import handsynth
from handsynth import checkpoint
from handsynth.models import SynthesisModel

STEPS_PER_CHAR = 8


@dataclass(frozen=True)
class ToyConfig:
    alphabet_size: int = 20
    hidden: int = 16

    @classmethod
    def preset(cls, name: str, alphabet_size: int) -> "ToyConfig":
        return cls(alphabet_size=alphabet_size, hidden={"tiny": 16, "full": 64}[name])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ToyConfig":
        return cls(**d)


@checkpoint.register
class Toy(SynthesisModel):
    """Each pen step sees the previous offset and the character at a constant-speed position
    (one every STEPS_PER_CHAR steps); it predicts one Gaussian per axis and the pen lift."""
    arch = "toy"
    Config = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.chars = nn.Embedding(config.alphabet_size, config.hidden)
        self.pen = nn.Linear(3, config.hidden)
        self.head = nn.Linear(config.hidden, 5)   # mu x, mu y, log sigma x, log sigma y, lift logit

    def _out(self, prev, char):
        return self.head(torch.tanh(self.pen(prev) + self.chars(char)))

    def loss(self, batch, warmup: float = 0.0):
        T, U = batch.inputs.shape[1], batch.text.shape[1]
        pos = (torch.arange(T) // STEPS_PER_CHAR).clamp(max=U - 1)
        out = self._out(batch.inputs, batch.text[:, pos]).float()
        mu, ls, lift = out[..., :2], out[..., 2:4], out[..., 4]
        z = (batch.targets[..., :2] - mu) * torch.exp(-ls)
        nll = (0.5 * z ** 2 + ls + 0.9189).sum(-1) + nn.functional.binary_cross_entropy_with_logits(
            lift, batch.targets[..., 2], reduction="none")
        return (nll * batch.mask).sum(), batch.mask.sum()

    def start(self, tables, primers):
        return ToyStepper(self, tables)


class ToyStepper:
    stop = None   # the sampler applies its stop rule

    def __init__(self, model, tables):
        self.model, self.tb = model, tables
        self.rows = np.arange(len(tables.code))
        self.prev = torch.zeros(len(self.rows), 3)
        self.progress = np.zeros(len(self.rows), np.int64)

    @torch.no_grad()
    def __call__(self, t: int) -> None:
        tb, rows = self.tb, self.rows
        pos = np.minimum(tb.prefix[rows] + t // STEPS_PER_CHAR, tb.ends[rows])   # ends[r]: "after the text"
        char = torch.from_numpy(tb.code[rows, np.minimum(pos, tb.code.shape[1] - 1)])
        out = self.model._out(self.prev, char).numpy()
        noise = tb.noise[rows, t]
        xy = out[:, :2] + np.exp(out[:, 2:4] - tb.bias[rows, None]) * noise[:, 4:6]
        lift = (noise[:, 1] < 1 / (1 + np.exp(-out[:, 4]))) | (t % STEPS_PER_CHAR == STEPS_PER_CHAR - 1)
        tb.out_steps[rows, t] = np.c_[xy, lift]
        tb.phi_all[rows, t] = 0.0
        tb.phi_all[rows, t, pos] = 1.0   # the alignment: all weight on the current position
        tb.passed[rows] |= pos >= tb.ends[rows]
        self.progress = pos - tb.prefix[rows]
        self.prev = torch.from_numpy(tb.out_steps[rows, t].copy())

    def select(self, keep):
        self.rows, self.prev, self.progress = self.rows[keep], self.prev[torch.from_numpy(keep)], self.progress[keep]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    from conftest import write_iam
    from handsynth.train import train

    iam = write_iam(tmp_path_factory.mktemp("toy-iam"), forms=24, extras=False)
    out = tmp_path_factory.mktemp("toy-run")
    history = train(iam=iam, out=out, config="tiny", arch="toy", max_steps=30, batch_size=8, lr=0.02,
                    eval_every=15, cache_dir=tmp_path_factory.mktemp("toy-cache"), progress=False)
    return iam, out, history


def test_toy_family_trains_through_the_shared_loop(toy_run):
    _, out, history = toy_run
    nll = [h["validation_nll"] for h in history if "validation_nll" in h]
    assert len(nll) >= 2 and np.isfinite(nll).all() and nll[-1] < nll[0]   # it learns
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["arch"] == "toy" and ck["step"] == 30
    assert json.loads((out / "history.json").read_text())[-1]["step"] == 30


def test_toy_family_writes_and_is_evaluated(toy_run, tmp_path, monkeypatch):
    iam, out, _ = toy_run
    hw = handsynth.load_model(out / "model.pt")
    assert isinstance(hw.model, Toy) and hw.arch == "toy"
    drawing = hw.write("the cat sat on a mat", seed=3)
    line = drawing.lines[0]
    # the stop rule ended it, after the last character (the stray rule may trim a last stroke it wrote there)
    assert not line.hit_cap and len(line.offsets) >= STEPS_PER_CHAR * (len(line.text) - 1)
    png = drawing.to_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and drawing.to_svg().count("<path") == len(drawing.strokes) > 5
    again = hw.write("the cat sat on a mat", seed=3)
    for a, b in zip(drawing.strokes, again.strokes):
        np.testing.assert_array_equal(a, b)

    from handsynth import recognizer
    from handsynth.evaluate import run_report
    monkeypatch.setattr(recognizer, "DEFAULT_RECOGNIZER", tmp_path / "none.pt")   # no judge needed here
    monkeypatch.setenv("HANDSYNTH_CACHE", str(tmp_path / "cache"))
    report = run_report(model=out / "model.pt", iam=iam, out=tmp_path / "eval", texts=2, recognizer=None,
                        progress=False)
    assert np.isfinite(report["validation_nll_per_line"]) and report["completion"] == 1.0
    assert (tmp_path / "eval" / "sheet.png").stat().st_size > 1000
