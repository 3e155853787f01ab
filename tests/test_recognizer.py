import json

import numpy as np
import pytest
import torch

from handsynth.cli import main
from handsynth.data.corpus import load_corpus
from handsynth.errors import HandsynthError
from handsynth.loop import lr_at
from handsynth.recognizer import (Recognizer, RecognizerConfig, RecognizerTrainConfig, cer, features,
                                  greedy_decode, load_recognizer, recognize, train_recognizer)

STEPS, LR = 300, 0.02  # enough for the tiny network to leave CTC's all-blank plateau (about 8 s)


@pytest.fixture(scope="module")
def corpus(tiny_iam, tmp_path_factory):
    return load_corpus(tiny_iam, cache_dir=tmp_path_factory.mktemp("rec-cache"), progress=False)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec")
    history = train_recognizer(corpus, out, config="tiny", max_steps=STEPS, batch_size=8, lr=LR,
                               eval_every=STEPS, progress=False)
    return out, history


def _untrained(corpus):
    torch.manual_seed(0)
    alphabet = corpus.alphabet()
    mean, std = corpus.offset_stats()
    return Recognizer(RecognizerConfig.preset("tiny", alphabet.size), alphabet, mean, std)


def test_schedule_warms_up_for_at_most_a_fifth():
    tc = RecognizerTrainConfig()
    assert (tc.lr, tc.max_steps, tc.clip, tc.max_len, tc.warmup_steps()) == (2e-3, 12000, 5.0, 1000, 200)
    short = RecognizerTrainConfig(max_steps=100)
    assert short.warmup_steps() == 20
    assert lr_at(19, short) == pytest.approx(2e-3) and lr_at(0, short) == pytest.approx(1e-4)


# character error rate -------------------------------------------------------------------------
def test_cer_edit_distance_answers():   # rapidfuzz's Levenshtein (measures.cer)
    assert cer(["sitting"], ["kitten"]) == 3 / 6
    assert cer([""], [""]) == 0 and cer(["abc"], [""]) == float("inf")
    assert cer(["", "lawn"], ["abc", "flaw"]) == (3 + 2) / 7
    assert cer(["ba"], ["ab"]) == 1.0   # no transpositions


def test_cer_known_answers():
    assert cer(["the cat"], ["the cat"]) == 0.0
    assert cer(["abd"], ["abc"]) == pytest.approx(1 / 3)       # one substitution
    assert cer([""], ["abcd"]) == 1.0                           # everything deleted
    assert cer(["abcde"], ["abc"]) == pytest.approx(2 / 3)     # two insertions
    assert cer(["xxxxxx"], ["ab"]) == 3.0                       # CER can exceed 1
    # pooled over lines: total edits / total reference characters, not a mean of line CERs
    assert cer(["ab", "x"], ["abc", "xyz"]) == pytest.approx((1 + 2) / 6)
    assert cer(["a"], ["a b c d e f g h i"]) == pytest.approx(16 / 17)
    with pytest.raises(ValueError):
        cer(["a"], ["a", "b"])


# greedy CTC decoding --------------------------------------------------------------------------
def _logits(frames, classes=5):
    x = np.full((len(frames), classes), -5.0, np.float32)
    x[np.arange(len(frames)), frames] = 5.0
    return x


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    a, b, c = 1, 2, 3
    row1 = _logits([0, a, a, 0, a, b, b, b, 0, 0, c])       # "a a b c": a blank separates the two a's
    row2 = _logits([b, b, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert greedy_decode(np.stack([row1, row2])) == [[a, a, b, c], [b]]
    # valid lengths cut the padding off before decoding
    assert greedy_decode(np.stack([row1, row2]), [6, 1]) == [[a, a, b], [b]]
    assert greedy_decode(torch.from_numpy(_logits([0, 0, 0])[None])) == [[]]
    assert greedy_decode(_logits([a, a, a, a])[None]) == [[a]]


def test_features_are_translation_invariant_and_shaped():
    rng = np.random.default_rng(0)
    off = np.concatenate([rng.normal(0, 0.3, (50, 2)), (rng.random((50, 1)) < 0.1)], 1).astype(np.float32)
    moved = off.copy()
    moved[0, :2] += [7.0, -3.0]  # the start position is arbitrary
    f = features(off, np.zeros(2, np.float32), np.ones(2, np.float32))
    assert f.shape == (50, 4) and f.dtype == np.float32
    assert np.array_equal(f, features(moved, np.zeros(2, np.float32), np.ones(2, np.float32)))
    assert np.array_equal(f[:, 2], off[:, 2])


# the tiny trained recogniser ------------------------------------------------------------------
def test_tiny_recogniser_reads_its_training_lines(corpus, trained):
    out, history = trained
    idx = corpus.indices("train")
    lines, refs = [corpus.offsets[i] for i in idx], [corpus.texts[i] for i in idx]
    before = cer(recognize(_untrained(corpus), lines), refs)
    rec = load_recognizer(out / "recognizer.pt")
    after = cer(recognize(rec, lines), refs)
    assert before >= 0.8, before
    assert after < 0.25 and after < before - 0.6, (before, after)
    assert history[-1]["step"] == STEPS
    assert json.loads((out / "history.json").read_text())[-1]["step"] == STEPS


def test_recogniser_never_sees_held_out_forms(corpus, trained):
    out, _ = trained
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    train_forms = {corpus.form_ids[i] for i in corpus.indices("train")}
    held_out = {corpus.form_ids[i] for s in ("validation", "test") for i in corpus.indices(s)}
    assert held_out and set(ck["train_forms"]) == train_forms and not set(ck["train_forms"]) & held_out
    assert ck["train_lines"] == len(corpus.indices("train"))


def test_recognize_keeps_order_and_reads_empty_lines_as_nothing(corpus, trained):
    rec = load_recognizer(trained[0] / "recognizer.pt")
    idx = list(corpus.indices("train")[:5])
    lines = [corpus.offsets[i] for i in idx]
    one_by_one = [recognize(rec, [o])[0] for o in lines]
    mixed = recognize(rec, [lines[0], np.zeros((0, 3), np.float32)] + lines[1:], batch_size=2)
    assert mixed[1] == ""
    assert [mixed[0]] + mixed[2:] == one_by_one


def test_checkpoint_round_trip(corpus, trained, tmp_path):
    out, _ = trained
    full = load_recognizer(out / "checkpoint.pt")      # float32 training checkpoint
    shipped = load_recognizer(out / "recognizer.pt")   # float16 export
    assert shipped.config == full.config == RecognizerConfig.preset("tiny", corpus.alphabet().size)
    assert shipped.alphabet == corpus.alphabet()
    assert np.array_equal(full.mean, shipped.mean) and np.array_equal(full.std, shipped.std)
    assert shipped.meta["step"] == STEPS and shipped.meta["train_forms"]
    idx = corpus.indices("train")[:8]
    x, n = full.featurize([corpus.offsets[i] for i in idx])
    with torch.no_grad():
        a, la = full(x, n)
        b, lb = shipped(x, n)
    assert torch.equal(la, lb)
    assert torch.allclose(a, b, atol=0.05)
    assert recognize(full, [corpus.offsets[i] for i in idx]) == recognize(shipped, [corpus.offsets[i] for i in idx])
    with pytest.raises(HandsynthError, match="no such recogniser"):
        load_recognizer(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HandsynthError, match="not a handsynth recogniser"):
        load_recognizer(tmp_path / "bad.pt")


def test_warm_start_on_a_grown_alphabet_reads_as_before_and_keeps_its_forms(corpus, trained, tmp_path):
    from handsynth import checkpoint
    from handsynth.data.corpus import Corpus
    from handsynth.recognizer import RecognizerTask

    out, _ = trained
    init = checkpoint.read(out / "recognizer.pt")
    idx = list(corpus.indices("train")[:6])
    extra = Corpus([corpus.offsets[i] for i in idx], ["Q" + corpus.texts[i] for i in idx],
                   [f"q{i}" for i in idx], ["q-form"] * len(idx), np.zeros(len(idx), np.int64))
    grown = Corpus(list(corpus.offsets), list(corpus.texts), list(corpus.line_ids),
                                              list(corpus.form_ids), corpus.split.copy(), corpus.norm)
    grown.extend(extra)
    task = RecognizerTask(grown, "full", RecognizerTrainConfig(max_steps=2), init=init)
    assert "Q" in task.alphabet.chars and set(init["alphabet"]) < set(task.alphabet.chars)
    assert task.model.config.hidden == init["config"]["hidden"]          # the file's size, not the preset's
    np.testing.assert_array_equal(task.mean, np.array(init["offset_mean"], np.float32))
    assert "q-form" in task.train_forms and set(init["train_forms"]) <= set(task.train_forms)
    lines = [corpus.offsets[i] for i in idx]
    assert recognize(task.model.eval(), lines) == recognize(load_recognizer(out / "recognizer.pt"), lines)
    history = train_recognizer(grown, tmp_path / "w", max_steps=2, batch_size=8, eval_every=2, progress=False,
                               init=out / "recognizer.pt")
    assert history[-1]["step"] == 2 and "Q" in load_recognizer(tmp_path / "w" / "recognizer.pt").alphabet.chars
    torch.save({"model": {}, "kind": "style-encoder"}, tmp_path / "other.pt")
    with pytest.raises(HandsynthError, match="not a recogniser file"):
        train_recognizer(grown, tmp_path / "x", max_steps=2, progress=False, init=tmp_path / "other.pt")


def test_resume_continues_bit_exactly(corpus, tmp_path):
    kw = dict(config="tiny", batch_size=8, lr=LR, eval_every=3, progress=False)
    train_recognizer(corpus, tmp_path / "a", max_steps=8, **kw)
    train_recognizer(corpus, tmp_path / "b", max_steps=4, schedule_steps=8, **kw)
    with pytest.raises(HandsynthError, match="--resume"):
        train_recognizer(corpus, tmp_path / "b", max_steps=8, **kw)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 4
    train_recognizer(corpus, tmp_path / "b", max_steps=8, resume=True, **kw)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [h["step"] for h in json.loads(b["history"])] == [3, 4, 6, 8]
    shipped = [torch.load(d / "recognizer.pt", weights_only=True) for d in (tmp_path / "a", tmp_path / "b")]
    assert shipped[0]["step"] == shipped[1]["step"] and shipped[0]["validation_cer"] == shipped[1]["validation_cer"]


def test_checkpoint_holds_the_best_score_it_exported(trained):
    out, history = trained
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    shipped = torch.load(out / "recognizer.pt", weights_only=True)
    assert ck["best"] == shipped["validation_cer"] == pytest.approx(history[-1]["validation_cer"], abs=1e-4)


def test_cli_trains_and_reports_errors_on_one_line(tiny_iam, tmp_path, capsys):
    out = tmp_path / "cli-rec"
    assert main(["recognizer", "--iam", str(tiny_iam), "--out", str(out), "--config", "tiny", "--max-steps", "3",
                 "--batch-size", "4", "--cache-dir", str(tmp_path / "cache"), "-q"]) == 0
    assert (out / "recognizer.pt").exists() and (out / "checkpoint.pt").exists()
    assert main(["recognizer", "--iam", str(tiny_iam), "--out", str(out), "--config", "tiny", "--max-steps", "5",
                 "--resume", "--cache-dir", str(tmp_path / "cache"), "-q"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 5
    capsys.readouterr()
    assert main(["recognizer", "--iam", str(tiny_iam), "--out", str(out), "--config", "tiny", "--max-steps", "3",
                 "--cache-dir", str(tmp_path / "cache"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handsynth: error:") and "--resume" in err and err.count("\n") == 1
    assert main(["recognizer", "--iam", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handsynth: error:") and err.count("\n") == 1
