import json
from pathlib import Path

import numpy as np
import pytest
import torch

from handsynth import style_encoder as se
from handsynth.cli import main
from handsynth.data.corpus import Corpus, load_corpus
from handsynth.errors import HandsynthError
from handsynth.strokes import normalize_line
from handsynth.style_encoder import (StyleEncoder, StyleEncoderConfig, StyleEncoderTask, StyleEncoderTrainConfig,
                                     embed, features, load_style_encoder, retrieval, supcon_loss,
                                     train_style_encoder, validation_retrieval)

IAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "iam-ondb"
STEPS, LR = 150, 0.01        # the tiny encoder separates the synthetic hands by then (about 10 s)
VAL_FORMS = 8


def hands_corpus(forms: int = 32, lines: int = 3, val: int = VAL_FORMS, seed: int = 0) -> Corpus:
    """Synthetic writers: every form's lines are drawn with that form's own slant (a shear) and
    width (a horizontal scale). The texts come from one shared pool, each form writing different
    ones, so the words do not tell the forms apart. The first ``val`` forms are the validation
    split, their hands well apart (slant from -0.7 to 0.7, narrow and wide in turn); the others,
    random hands, are the train split."""
    from conftest import line_strokes, make_texts

    rng = np.random.default_rng(seed)
    pool = make_texts(40, seed=1)
    offsets, texts, form_ids, split = [], [], [], []
    for f in range(forms):
        if f < val:
            slant, width = -0.7 + 1.4 * f / (val - 1), (0.7, 1.4)[f % 2]
        else:
            slant, width = rng.uniform(-0.8, 0.8), float(np.exp(rng.uniform(-0.45, 0.45)))
        for j in range(lines):
            text = pool[(3 * f + j) % len(pool)]
            strokes = [np.stack([width * (s[:, 0] + slant * (s[:, 1] - 100)), s[:, 1]], 1) for s in line_strokes(text)]
            offsets.append(normalize_line(strokes))
            texts.append(text)
            form_ids.append(f"w{f:02d}")
            split.append(1 if f < val else 0)
    return Corpus(offsets, texts, [f"{form_ids[i]}-{i:02d}" for i in range(len(texts))], form_ids, np.array(split))


@pytest.fixture(scope="module")
def corpus():
    return hands_corpus()


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("style")
    history = train_style_encoder(corpus, out, config="tiny", max_steps=STEPS, forms=12, lines_per_form=2, lr=LR,
                                  eval_every=STEPS, progress=False)
    return out, history


def _val(corpus):
    idx = corpus.indices("validation")
    return [corpus.offsets[i] for i in idx], [corpus.form_ids[i] for i in idx]


def _line(n=60, seed=0):
    rng = np.random.default_rng(seed)
    off = np.concatenate([rng.normal(0, 0.3, (n, 2)), (rng.random((n, 1)) < 0.1)], 1).astype(np.float32)
    off[-1, 2] = 1
    return off


# features --------------------------------------------------------------------------------------
def test_features_are_translation_invariant_and_keep_slant_and_width():
    off = _line()
    moved = off.copy()
    moved[0, :2] += [7.0, -3.0]  # the start position is arbitrary
    mean, std = np.zeros(2, np.float32), np.ones(2, np.float32)
    f = features(off, mean, std)
    assert f.shape == (60, se.FEATURES) and f.dtype == np.float32
    assert np.array_equal(f, features(moved, mean, std))
    assert np.array_equal(f[:, 2], off[:, 2]) and np.array_equal(f[1:, 3], off[:-1, 2]) and f[0, 3] == 0
    # nothing standardises a line on its own: a slanted or wider line gives other features
    sheared, wide = off.copy(), off.copy()
    sheared[:, 0] += 0.5 * off[:, 1]
    wide[:, 0] *= 1.5
    assert np.allclose(features(wide, mean, std)[1:, 0], 1.5 * f[1:, 0])
    assert not np.allclose(features(sheared, mean, std)[:, 5:], f[:, 5:])
    assert features(np.zeros((0, 3), np.float32), mean, std).shape == (0, se.FEATURES)


def test_direction_and_turn_features_known_answers():
    # right, right, up (a left turn), then a pen-up jump, then down
    off = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 1], [3, 3, 0], [0, -1, 1]], np.float32)
    f = features(off, np.zeros(2, np.float32), np.ones(2, np.float32))
    assert np.allclose(f[1:4, 5:7], [[1, 0], [1, 0], [0, 1]])
    assert np.allclose(f[2, 8:], [1, 0]) and np.allclose(f[3, 8:], [0, 1])   # straight on, then a left turn
    assert np.allclose(f[4:, 8:], 0)                                         # no turn across a pen lift
    assert np.allclose(f[:, 7], np.log(np.hypot(f[:, 0], f[:, 1]) + 0.01))
    assert np.allclose(f[:, 3], [0, 0, 0, 0, 1, 0])
    y = np.cumsum([0, 0, 0, 1, 3, -1])
    assert np.allclose(f[:, 4], y - np.median(y))


def test_crop_keeps_a_contiguous_stretch():
    off = _line(100)
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = se.crop(off, 0.5, rng)
        assert 50 <= len(c) <= 100
        start = next(s for s in range(101 - len(c)) if np.array_equal(off[s:s + len(c)], c))
        assert start >= 0
    assert se.crop(off, 1.0, rng) is off


# loss -------------------------------------------------------------------------------------------
def test_supcon_loss_prefers_grouped_embeddings():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    centres = torch.eye(3)
    grouped = centres[labels]
    mixed = centres[torch.tensor([0, 1, 2, 0, 1, 2])]
    low, high = supcon_loss(grouped, labels, 0.1), supcon_loss(mixed, labels, 0.1)
    assert low < 0.01 and high > 1.0
    # two lines per form, all alike: each anchor's one positive among 5 equal candidates
    assert supcon_loss(torch.ones(6, 3) / 3 ** 0.5, labels, 0.1) == pytest.approx(np.log(5), abs=1e-5)
    assert supcon_loss(grouped, torch.arange(6), 0.1) == 0.0  # no positives: nothing to learn


# retrieval --------------------------------------------------------------------------------------
def test_identical_embeddings_retrieve_themselves():
    e = np.eye(6, dtype=np.float32)
    forms = ["a", "b", "c", "d", "e", "f"]
    r = retrieval(e, forms, e, forms)
    assert r == {"top1": 1.0, "top5": 1.0, "n_forms": 6, "n_queries": 6, "n_gallery_forms": 6,
                 "chance_top1": pytest.approx(1 / 6)}
    # a query is ranked against the forms of the gallery, not against its lines
    r = retrieval(e[:2], ["a", "b"], np.concatenate([e, e]), forms + forms, ks=(1, 2, 6))
    assert r["top1"] == r["top2"] == r["top6"] == 1.0 and r["n_gallery_forms"] == 6


def test_retrieval_ranks_forms_by_mean_or_max_similarity():
    q = np.array([[1.0, 0.0]])
    # form a: one line the same as the query, one opposite (mean 0, max 1); form b: two lines at 0.6
    g = np.array([[1, 0], [-1, 0], [0.6, 0.8], [0.6, 0.8]])
    gf = ["a", "a", "b", "b"]
    mean = retrieval(q, ["a"], g, gf, ks=(1, 2))
    top = retrieval(q, ["a"], g, gf, ks=(1, 2), score="max")
    assert (mean["top1"], mean["top2"]) == (0.0, 1.0)
    assert (top["top1"], top["top2"]) == (1.0, 1.0)
    with pytest.raises(ValueError):
        retrieval(q, ["a"], g, gf, score="median")


def test_retrieval_ties_count_against_and_forms_weigh_equally():
    same = np.ones((4, 3)) / 3 ** 0.5
    r = retrieval(same, list("abcd"), same, list("abcd"), ks=(1, 3, 4))
    assert (r["top1"], r["top3"], r["top4"]) == (0.0, 0.0, 1.0)  # a constant encoder retrieves nothing
    # form a: two queries, one right and one wrong; form b: one right -> (0.5 + 1) / 2
    g = np.array([[1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    r = retrieval(q, ["a", "a", "b"], g, ["a", "b"], ks=(1,))
    assert r["top1"] == 0.75 and r["n_forms"] == 2 and r["n_queries"] == 3
    # queries whose form has no gallery line are skipped
    r = retrieval(q, ["a", "z", "b"], g, ["a", "b"], ks=(1,))
    assert r["top1"] == 1.0 and r["n_queries"] == 2


def test_leave_one_out_retrieval_excludes_the_query_itself():
    # two forms of two lines; each line's partner is its own form's other line
    e = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]], np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    forms = ["a", "a", "b", "b"]
    v = validation_retrieval(e, forms, ks=(1,))
    assert v["all"]["top1"] == 1.0 and v["all"]["n_queries"] == 4
    assert v["first"]["top1"] == 1.0 and v["first"]["n_queries"] == 2
    # swap the partners: every line is now nearest to the other form
    swapped = validation_retrieval(e, ["a", "b", "b", "a"], ks=(1,))
    assert swapped["all"]["top1"] == 0.0
    # a form with one line is only a distractor
    e3 = np.concatenate([e, [[0, 0, 1]]])
    v = validation_retrieval(e3, forms + ["c"], ks=(1,))
    assert v["all"]["n_forms"] == 2 and v["all"]["n_gallery_forms"] == 3 and v["first"]["n_gallery_forms"] == 3


# embedding --------------------------------------------------------------------------------------
def test_embed_is_unit_length_in_order_and_independent_of_batching():
    torch.manual_seed(0)
    enc = StyleEncoder(StyleEncoderConfig.preset("tiny"), np.zeros(2, np.float32), np.ones(2, np.float32))
    lines = [_line(n, seed=n) for n in (40, 7, 90, 1, 25)]
    e = embed(enc, lines)
    assert e.shape == (5, enc.config.dim) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.allclose(embed(enc, lines, batch_size=2), e, atol=1e-5)
    assert np.allclose(embed(enc, lines[2:3])[0], e[2], atol=1e-5)
    mixed = embed(enc, [lines[0], np.zeros((0, 3), np.float32), lines[1]])
    assert np.allclose(mixed[[0, 2]], e[:2], atol=1e-5) and not mixed[1].any()
    assert embed(enc, []).shape == (0, enc.config.dim)
    assert enc.training  # embed leaves the mode as it found it


def test_full_encoder_is_small():
    enc = StyleEncoder(StyleEncoderConfig(), np.zeros(2, np.float32), np.ones(2, np.float32))
    assert se.parameter_count(enc) < 1_000_000


# training ---------------------------------------------------------------------------------------
def test_each_step_draws_forms_times_lines_of_training_forms(corpus):
    tc = StyleEncoderTrainConfig(forms=6, lines_per_form=3)
    task = StyleEncoderTask(corpus, "tiny", tc)
    idx, labels = task.draw(5, tc)
    assert len(idx) == 18 and len(set(idx)) == 18
    assert np.array_equal(np.bincount(labels), [3] * 6)
    for label in range(6):
        assert len({corpus.form_ids[i] for i, lab in zip(idx, labels) if lab == label}) == 1
    assert len({corpus.form_ids[i] for i in idx}) == 6
    assert all(corpus.split[i] == 0 for i in idx)
    again, _ = task.draw(5, tc)
    assert again == idx and task.draw(6, tc)[0] != idx


def test_tiny_encoder_retrieves_held_out_hands(corpus, trained):
    out, history = trained
    lines, forms = _val(corpus)
    torch.manual_seed(0)
    untrained = StyleEncoder(StyleEncoderConfig.preset("tiny"), *corpus.offset_stats())
    before = validation_retrieval(embed(untrained, lines), forms)["all"]
    enc = load_style_encoder(out / "style_encoder.pt")
    after = validation_retrieval(embed(enc, lines), forms)
    assert after["all"]["n_forms"] == VAL_FORMS  # chance: 1/8
    assert after["all"]["top1"] >= 0.75 and after["first"]["top1"] >= 0.75, after
    assert after["all"]["top1"] > before["top1"] + 0.25, (before, after)
    # nearest line: a form's first line finds one of its own other lines first among all held-out lines
    e = embed(enc, lines)
    first = [forms.index(f) for f in dict.fromkeys(forms)]
    sim = e[first] @ e.T
    sim[np.arange(len(first)), first] = -np.inf
    nearest = [forms[j] for j in sim.argmax(1)]
    assert np.mean([n == forms[q] for n, q in zip(nearest, first)]) >= 0.75
    assert history[-1]["step"] == STEPS
    assert json.loads((out / "history.json").read_text())[-1]["step"] == STEPS
    assert enc.meta["validation"]["validation_top1"] == max(h["validation_top1"] for h in history)


def test_encoder_never_sees_held_out_forms(corpus, trained):
    out, _ = trained
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    shipped = torch.load(out / "style_encoder.pt", weights_only=True)
    train_forms = {corpus.form_ids[i] for i in corpus.indices("train")}
    held_out = {corpus.form_ids[i] for i in corpus.indices("validation")}
    assert set(ck["train_forms"]) == set(shipped["train_forms"]) == train_forms
    assert not train_forms & held_out
    assert shipped["kind"] == "style_encoder" and shipped["train_lines"] == len(corpus.indices("train"))
    assert all(v.dtype == torch.float16 for v in shipped["model"].values())
    assert ck["best"] == shipped["validation"]["validation_top1"]


def test_checkpoint_and_export_give_the_same_embeddings(corpus, trained):
    out, _ = trained
    full, shipped = load_style_encoder(out / "checkpoint.pt"), load_style_encoder(out / "style_encoder.pt")
    assert full.config == shipped.config == StyleEncoderConfig.preset("tiny")
    assert np.array_equal(full.mean, shipped.mean) and np.array_equal(full.std, shipped.std)
    lines, _ = _val(corpus)
    a, b = embed(full, lines), embed(shipped, lines)
    assert np.allclose(a, b, atol=0.02)


def test_load_errors(tmp_path, monkeypatch):
    with pytest.raises(HandsynthError, match="no such style encoder"):
        load_style_encoder(tmp_path / "missing.pt")
    monkeypatch.setattr(se, "DEFAULT_STYLE_ENCODER", tmp_path / "gone.pt")
    with pytest.raises(HandsynthError, match="gone.pt: no such style encoder"):
        load_style_encoder()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(HandsynthError, match="not a handsynth style encoder"):
        load_style_encoder(tmp_path / "bad.pt")
    torch.save({"kind": "recognizer", "model": {}}, tmp_path / "rec.pt")
    with pytest.raises(HandsynthError, match="not a handsynth style encoder"):
        load_style_encoder(tmp_path / "rec.pt")


def test_resume_continues_bit_exactly(corpus, tmp_path):
    kw = dict(config="tiny", forms=6, lines_per_form=2, lr=LR, eval_every=3, progress=False)
    train_style_encoder(corpus, tmp_path / "a", max_steps=8, **kw)
    train_style_encoder(corpus, tmp_path / "b", max_steps=4, schedule_steps=8, **kw)
    with pytest.raises(HandsynthError, match="--resume"):
        train_style_encoder(corpus, tmp_path / "b", max_steps=8, **kw)
    train_style_encoder(corpus, tmp_path / "b", max_steps=8, resume=True, **kw)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    history = json.loads(b["history"])
    assert [h["step"] for h in history] == [3, 4, 6, 8]
    # the export is the first evaluation with the best validation top-1
    for run, ck in (("a", a), ("b", b)):
        shipped = torch.load(tmp_path / run / "style_encoder.pt", weights_only=True)
        best = max(json.loads(ck["history"]), key=lambda h: h["validation_top1"])
        assert shipped["step"] == best["step"], run
        assert shipped["validation"]["validation_top1"] == ck["best"] == pytest.approx(best["validation_top1"], abs=1e-4)


def test_cli_trains_and_reports_errors_on_one_line(tiny_iam, tmp_path, capsys):
    out, cache = tmp_path / "cli-style", str(tmp_path / "cache")
    common = ["style-encoder", "--iam", str(tiny_iam), "--out", str(out), "--config", "tiny", "--forms", "4",
              "--cache-dir", cache, "-q"]
    assert main(common + ["--max-steps", "3"]) == 0
    assert (out / "style_encoder.pt").exists() and (out / "checkpoint.pt").exists()
    assert main(common + ["--max-steps", "5", "--resume"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 5
    corpus = load_corpus(tiny_iam, cache_dir=cache, progress=False)
    enc = load_style_encoder(out / "style_encoder.pt")
    assert set(enc.meta["train_forms"]) == {corpus.form_ids[i] for i in corpus.indices("train")}
    capsys.readouterr()
    assert main(common + ["--max-steps", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handsynth: error:") and "--resume" in err and err.count("\n") == 1


# the shipped encoder on the real corpus ---------------------------------------------------------
@pytest.mark.slow
def test_shipped_encoder_retrieves_validation_forms():
    if not IAM.exists():
        pytest.skip(f"{IAM} not found")
    corpus = load_corpus(IAM, progress=False)
    enc = load_style_encoder()
    held_out = {corpus.form_ids[i] for s in ("validation", "test") for i in corpus.indices(s)}
    assert not set(enc.meta["train_forms"]) & held_out
    idx = corpus.indices("validation")
    forms = [corpus.form_ids[i] for i in idx]
    v = validation_retrieval(embed(enc, [corpus.offsets[i] for i in idx]), forms)
    chance = v["all"]["chance_top1"]
    assert v["all"]["n_forms"] >= 90 and chance < 0.011
    assert v["all"]["top1"] > 30 * chance and v["first"]["top1"] > 30 * chance, v
    assert v["all"]["top5"] > 0.6, v
