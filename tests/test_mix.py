"""Training on a mix: IAM-OnDB lines with UNIPEN-like lines (by form id), an alphabet grown to
the characters the mix has often enough, a warm start from a trained model, and each epoch's
share of UNIPEN lines."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from handsynth import checkpoint
from handsynth.data.corpus import MIN_CHAR_COUNT, Corpus, load_corpus, make_batch
from handsynth.strokes import normalize_line
from handsynth.train import SynthesisTask, TrainConfig, trainer

from conftest import line_strokes


def _mix(tiny_iam, cache_dir) -> Corpus:
    corpus = load_corpus(tiny_iam, cache_dir=cache_dir, progress=False)
    texts = ["the $ cat $", "a $ mat"] * (MIN_CHAR_COUNT // 2) + ["a ~ dog"] * 3
    extra = Corpus([normalize_line(line_strokes(t)) for t in texts], texts,
                   [f"unipen:ink:{i}" for i in range(len(texts))], [f"unipen:w{i % 7}" for i in range(len(texts))],
                   np.zeros(len(texts), np.int64))
    corpus.extend(extra)
    return corpus


def test_warm_start_grows_the_alphabet_and_keeps_what_it_knew(tiny_iam, cache_dir, tiny_model, tmp_path):
    init = checkpoint.read(tiny_model)
    corpus = _mix(tiny_iam, cache_dir)
    tc = TrainConfig(batch_size=8, max_steps=4, eval_every=4, unipen_share=0.3)
    task = SynthesisTask(corpus, "tiny", tc, init=init)
    assert "$" in task.alphabet and "~" not in task.alphabet       # 100+ examples in; 3 out
    assert set(init["alphabet"]) < set(task.alphabet.chars)
    assert not any("~" in t for t in task.corpus.texts) and task.corpus.dropped["characters too rare to learn"] == 3
    np.testing.assert_array_equal(task.mean, np.array(init["offset_mean"], np.float32))
    # the warm-started network computes what the file's network does on text it could write
    old, _ = checkpoint.load(tiny_model)
    from handsynth.alphabet import Alphabet
    i = int(task.corpus.indices("train")[0])
    off, text = task.corpus.offsets[i], task.corpus.texts[i]
    with torch.no_grad():
        a = old.loss(make_batch([off], [text], Alphabet(init["alphabet"]), task.mean, task.std))[0]
        b = task.model.loss(make_batch([off], [text], task.alphabet, task.mean, task.std))[0]
    assert torch.allclose(a, b, rtol=1e-5), (a, b)
    # each epoch draws UNIPEN lines to make 30% of it
    use = task.epoch_lines(np.random.default_rng(0))
    share = task.corpus.unipen()[task.lines][use].mean()
    assert abs(share - 0.3) < 0.02, share
    # and the shared loop trains it, reporting IAM and UNIPEN validation apart
    history = trainer(corpus, tmp_path, "tiny", tc, progress=False, init=init).run()
    assert history[-1]["step"] == 4 and np.isfinite(history[-1]["validation_nll"])
    assert "validation_nll_unipen" in history[-1]
    meta = checkpoint.read(tmp_path / "model.pt")
    assert "$" in meta["alphabet"] and meta["config"]["alphabet_size"] == len(meta["alphabet"]) + 1


def test_the_recogniser_mixes_unipen_at_its_share(tiny_iam, cache_dir, tmp_path):
    """The recogniser's epochs draw UNIPEN to the share asked for (the same rule as the synthesis
    network's), 0 leaves it out, and a share out of range is a one-line error."""
    from handsynth.recognizer import RecognizerTask, RecognizerTrainConfig

    corpus = _mix(tiny_iam, cache_dir).learnable()
    for share in (0.3, 0.5):
        task = RecognizerTask(corpus, "tiny", RecognizerTrainConfig(batch_size=8, unipen_share=share))
        use = task.epoch_lines(np.random.default_rng(1))
        from_unipen = task.corpus.unipen()[task.lines][use]
        assert abs(from_unipen.mean() - share) < 0.02, (share, from_unipen.mean())
        assert (~from_unipen).sum() == (~task.corpus.unipen()[task.lines]).sum()   # every IAM-OnDB line once
    task = RecognizerTask(corpus, "tiny", RecognizerTrainConfig(batch_size=8, unipen_share=0))
    assert not task.corpus.unipen()[task.lines][task.epoch_lines(np.random.default_rng(1))].any()
    r = subprocess.run([sys.executable, "-m", "handsynth", "recognizer", "--iam", str(tiny_iam), "--unipen-share", "1.5",
                        "--out", str(tmp_path / "r"), "-q"], capture_output=True, text=True, check=False)
    assert r.returncode != 0
    err = r.stderr
    assert "--unipen-share 1.5 is out of range" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()
