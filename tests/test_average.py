"""Averaging model files (``checkpoint.average``, ``scripts/average_models.py``) on the shipped
LSTMs: the IAM-OnDB one joins the mix model's larger alphabet."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import handsynth
from handsynth.alphabet import Alphabet
from handsynth.checkpoint import average, save
from handsynth.errors import HandsynthError

ROOT = Path(__file__).resolve().parents[1]
LSTM, MIX = handsynth.MODELS["lstm"].path, handsynth.MODELS["lstm-mix"].path


def test_an_average_of_two_alphabets_keeps_each_characters_own_weights(tmp_path):
    a, b = torch.load(LSTM, weights_only=True), torch.load(MIX, weights_only=True)
    soup = average([LSTM, MIX], [1.0, 3.0])
    assert soup["alphabet"] == b["alphabet"] and soup["config"] == b["config"]
    assert all(v.dtype == torch.float16 for v in soup["model"].values())
    # a weight that does not see the alphabet: the weighted mean
    want = 0.25 * a["model"]["head.weight"].float() + 0.75 * b["model"]["head.weight"].float()
    assert torch.allclose(soup["model"]["head.weight"].float(), want, atol=2e-3)
    # the window's input columns: a shared character's from both, "$" (not in lstm's) from the mix alone
    codes_old = Alphabet(b["alphabet"]).codes_in(a["alphabet"])
    new, old = Alphabet(b["alphabet"]).encode("$")[0], Alphabet(b["alphabet"]).encode("e")[0]
    assert codes_old[new] == -1 and codes_old[old] >= 0
    W, Wa, Wb = (m["model"]["cell1.weight_ih"].float() for m in (soup, a, b))
    assert torch.allclose(W[:, 3 + new], Wb[:, 3 + new], atol=2e-3)
    assert torch.allclose(W[:, 3 + old], 0.25 * Wa[:, 3 + codes_old[old]] + 0.75 * Wb[:, 3 + old], atol=2e-3)
    assert not torch.allclose(W[:, 3 + old], Wb[:, 3 + old], atol=2e-3)
    # it is a model: it loads and writes what only the mix can write
    save(soup, tmp_path / "soup.pt")
    hw = handsynth.load_model(tmp_path / "soup.pt")
    d = hw.write("$5 a day", seed=1)
    assert len(d.lines) == 1 and not d.lines[0].hit_cap and len(d.strokes) >= 4


def test_models_that_cannot_be_averaged_get_one_clear_line(tmp_path, tiny_model):
    with pytest.raises(HandsynthError, match="another family, network or normalisation"):
        average([MIX, tiny_model])
    with pytest.raises(HandsynthError, match="one weight each"):
        average([LSTM, MIX], [1.0])
    with pytest.raises(HandsynthError, match="largest alphabet all have weight 0"):
        average([LSTM, MIX], [1.0, 0.0])
    out = tmp_path / "soup.pt"
    out.write_bytes(b"precious")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "average_models.py"), str(LSTM), str(tmp_path / "nope.pt"),
                        "--out", str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "no such handsynth model file" in r.stderr
    assert out.read_bytes() == b"precious"
