"""Tuning the shipped model to a person's samples (``handsynth tune``): the held-out line's
likelihood improves, the file is small and is a model like any other (CLI, load_model), Ctrl-C
keeps the best step, and a damaged or mismatched file is refused with one clear line."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import handsynth
from handsynth.errors import HandsynthError
from handsynth.server.app import MAX_TUNE_BODY_BYTES
from handsynth.tune import TuneConfig, expand, low_rank, save_tuned, tune, tuned_writer


ONE_HAND = Path(__file__).parent / "fixtures" / "one_hand.json"   # one hand's sentences (make_one_hand.py)


def _sample_docs(n=3):
    """The first ``n`` sentences of one hand, as sample documents (texts and strokes, y up)."""
    return json.loads(ONE_HAND.read_text())["samples"][:n]


def _samples_file(path, n=3):
    """The first ``n`` sentences of one hand as one sample file."""
    path.write_text(json.dumps({"samples": _sample_docs(n)}))
    return path


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "handsynth", *args], capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def tuned_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("tune")
    samples = _samples_file(d / "me.json")
    out = d / "me.pt"
    r = _cli("tune", "--samples", str(samples), "--out", str(out), "--steps", "6", "--rank", "4", "-q")
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("primed", [True, pytest.param(False, marks=pytest.mark.slow)])   # the default, always
def test_the_held_out_line_improves_and_the_change_is_what_the_file_applies(hw, tmp_path, primed):
    from handsynth.data.samples import load_samples
    samples = load_samples(_samples_file(tmp_path / "me.json"))
    t = tune(hw, samples, TuneConfig(max_steps=6, eval_every=2, lr=3e-5, rank=0, primed=primed))
    assert TuneConfig().primed and t.config.primed == primed
    assert [s for s, _ in t.history] == [0, 2, 4, 6]
    first, best = t.history[0][1], min(h for _, h in t.history)
    assert best < first and t.best_step > 0 and t.lines == 2 and t.held_out == samples[-1].text
    assert sum(float(d.abs().sum()) for d in t.delta.values()) > 0
    base = {k: v.clone() for k, v in hw.model.state_dict().items()}
    save_tuned(t, tmp_path / "me.pt")
    assert all(torch.equal(base[k], v) for k, v in hw.model.state_dict().items())   # the caller's model untouched
    tuned = handsynth.load_model(tmp_path / "me.pt")
    for k, p in tuned.model.named_parameters():   # the file keeps `strength` of the change
        np.testing.assert_allclose(p.detach().numpy(), (base[k] + (t.delta[k] * 0.5).half().float()).numpy(), atol=1e-6)
    assert t.config.strength == 0.5
    full = tuned_writer(hw, t, strength=1.0)
    for k, p in full.model.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), (base[k] + t.delta[k].half().float()).numpy(), atol=1e-6)


def test_a_matrix_change_is_stored_low_rank():
    g = torch.Generator().manual_seed(0)
    exact = torch.randn(400, 3, generator=g) @ torch.randn(3, 1600, generator=g) * 1e-3
    u, v = low_rank(exact, 4)
    assert u.shape == (400, 4) and v.shape == (4, 1600) and u.dtype == torch.float16
    assert float((expand((u, v)) - exact).abs().max()) < 1e-5
    assert low_rank(torch.ones(7), 4).shape == (7,)            # a bias: whole
    assert low_rank(torch.ones(3, 5), 4).shape == (3, 5)       # factors no smaller: whole


def test_cli_tune_then_write_with_it(tuned_file, tmp_path):
    assert tuned_file.stat().st_size < 400 * 1024   # rank 4: a few hundred KiB, not a 14 MB copy
    png = tmp_path / "mine.png"
    r = _cli("write", "hello there", "-o", str(png), "--model", str(tuned_file), "--seed", "1")
    assert r.returncode == 0, r.stderr
    from PIL import Image
    ink = (np.asarray(Image.open(png).convert("L")) < 128).sum()
    assert ink > 200
    hw = handsynth.load_model(tuned_file)
    base = handsynth.load_model()
    moved = [k for k, p in hw.model.named_parameters() if not torch.equal(p, dict(base.model.named_parameters())[k])]
    assert len(moved) == len(list(base.model.parameters()))   # parts=all: every weight moved a little


def test_a_tuned_file_writes_primed_with_its_first_two_sentences(tuned_file, tmp_path):
    """The file keeps the person's first two sentences joined (as a style of two primes); without
    a style it writes primed with them, exactly as with those sentences as the style; a style
    given primes instead; a file without them (older) writes unprimed; a damaged one is refused."""
    from handsynth.sampling import primed_text
    from handsynth.styles import style_from_json
    docs = _sample_docs(3)
    me = handsynth.load_model(tuned_file)
    assert me.own_primer.text == primed_text(docs[0]["text"], docs[1]["text"])
    two = style_from_json(docs[:2])
    np.testing.assert_array_equal(me.own_primer.offsets, two.offsets())
    own = me.write("see you soon", seed=2).to_svg()
    assert own == me.write("see you soon", style=two, seed=2).to_svg()
    assert own != me.write("see you soon", style=style_from_json(docs[0]), seed=2).to_svg()
    assert own != me.write("see you soon", style="s05", seed=2).to_svg()
    ck = torch.load(tuned_file, weights_only=True)
    old = {k: v for k, v in ck.items() if k != "primer"}
    torch.save(old, tmp_path / "old.pt")
    older = handsynth.load_model(tmp_path / "old.pt")
    assert older.own_primer is None and older.write("see you soon", seed=2).to_svg() != own
    for name, primer in (("nan.pt", {**ck["primer"], "offsets": ck["primer"]["offsets"] * float("nan")}),
                         ("eos.pt", {**ck["primer"], "offsets": ck["primer"]["offsets"] + 0.5}),
                         ("text.pt", {**ck["primer"], "text": "price: 5€"}), ("kind.pt", "the quick brown fox")):
        torch.save({**ck, "primer": primer}, tmp_path / name)
        with pytest.raises(HandsynthError, match="not a usable tuned model file"):
            handsynth.load_model(tmp_path / name)


def test_bad_tuning_input_and_damaged_files_say_so(hw, tmp_path, tuned_file):
    from handsynth.data.samples import load_samples
    one = load_samples(_samples_file(tmp_path / "one.json", n=1))
    with pytest.raises(HandsynthError, match="at least 2 usable sample lines"):
        tune(hw, one)
    ck = torch.load(tuned_file, weights_only=True)
    other = dict(ck, base={**ck["base"], "sha256": "0" * 64})
    torch.save(other, tmp_path / "other.pt")
    key = next(k for k in ck["model"] if k.endswith(".u"))
    half = dict(ck, model={k: v for k, v in ck["model"].items() if k != key[:-2] + ".v"})
    torch.save(half, tmp_path / "half.pt")
    for name, fragment in (("other.pt", "another version"), ("half.pt", "half its factors")):
        with pytest.raises(HandsynthError, match=fragment):
            handsynth.load_model(tmp_path / name)
    r = _cli("write", "hi", "-o", str(tmp_path / "x.png"), "--model", str(tmp_path / "other.pt"))
    assert r.returncode == 2 and "another version" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.png").exists()
    r = _cli("tune", "--samples", str(tmp_path / "one.json"), "--out", str(tmp_path / "no.pt"))
    assert r.returncode == 2 and "at least 2" in r.stderr and not (tmp_path / "no.pt").exists()
    from handsynth.data.samples import load_samples as _load
    with pytest.raises(HandsynthError, match="is itself a tuned model"):
        tune(handsynth.load_model(tuned_file), _load(_samples_file(tmp_path / "me.json")))


def test_ctrl_c_keeps_the_best_step(tmp_path):
    samples = _samples_file(tmp_path / "me.json")
    out = tmp_path / "me.pt"
    p = subprocess.Popen([sys.executable, "-m", "handsynth", "tune", "--samples", str(samples), "--out", str(out),
                          "--steps", "5000", "--rank", "2", "--patience", "0", "--no-primed"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"},
                         # a shell's background job starts with SIGINT ignored, and Python keeps that: undo it
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen, deadline = "", time.monotonic() + 300
        while not re.search(r"\b([5-9]|\d\d+)/5000", seen) and time.monotonic() < deadline:
            seen += os.read(p.stderr.fileno(), 4096).decode(errors="replace")   # the bar past the step-5 evaluation
        p.send_signal(signal.SIGINT)
        rest_out, rest_err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 0, seen + rest_err
    ck = torch.load(out, weights_only=True)
    assert ck["stopped"].startswith("interrupted") and len(ck["history"]) >= 2, ck["history"]
    assert ck["best_step"] == min(ck["history"], key=lambda h: h[1])[0]   # the best evaluation is what was kept
    assert handsynth.load_model(out).name is None


# ---- learning a hand over HTTP (POST /v1/tune, the web page's "learn my hand") -----------------

def _wait_done(client, url, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = client.get(url).json()
        if st["state"] not in ("queued", "running"):
            return st
        time.sleep(0.2)
    raise AssertionError(f"the tuning job did not finish: {st}")


@pytest.fixture(scope="module")
def tune_server(hw):
    from live_server import LiveServer

    from handsynth.server import create_app
    with LiveServer(create_app(hw, warm_previews=False, tune_steps=6, tune_minutes=2)) as s:
        yield s


def test_a_hand_learnt_over_http_is_the_file_the_library_writes_with(tune_server, hw, tmp_path):
    import base64
    import io

    import httpx
    from PIL import Image

    with httpx.Client(base_url=tune_server.url, timeout=120) as c:
        r = c.post("/v1/tune", json={"samples": _sample_docs()})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["max_steps"] == 6 and job["status_url"] == f"/v1/tune/{job['id']}"
        st = _wait_done(c, job["status_url"])
        assert st["state"] == "done", st
        assert st["step"] == 6 and [s for s, _ in st["held_out_nll"]][:2] == [0, 5]
        assert min(h for _, h in st["held_out_nll"]) < st["held_out_nll"][0][1]   # the held-out line improved
        r = c.get(st["model_url"])
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        data = r.content
        assert 100_000 < len(data) == st["bytes"] < 640 * 1024
        assert c.get(st["model_url"]).status_code == 404          # fetched once, then forgotten
        assert c.get(job["status_url"]).status_code == 404

        style = _sample_docs(1)[0]
        body = {"text": "tuned hello", "seed": 3, "style_sample": style, "format": "png"}
        plain = c.post("/v1/write", json=body)
        tuned = c.post("/v1/write", json={**body, "tuned": base64.b64encode(data).decode()})
        assert plain.status_code == tuned.status_code == 200, tuned.text
        own = c.post("/v1/write", json={"text": "tuned hello", "seed": 3, "tuned": base64.b64encode(data).decode()})
        pair = c.post("/v1/write", json={**body, "style_sample": _sample_docs(2)})   # two sentences prime, joined
        assert own.status_code == pair.status_code == 200, (own.text, pair.text)
        r = c.post("/v1/write", json={**body, "style_sample": _sample_docs(3)})
        assert r.status_code == 400 and r.json()["error"].startswith("style_sample: List should have at most 2"), r.text
    (tmp_path / "me.pt").write_bytes(data)
    mine = handsynth.load_model(tmp_path / "me.pt")          # the same file through the library
    from handsynth.styles import style_from_json
    lib = mine.write("tuned hello", style=style_from_json(style), seed=3).to_png()
    px = lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("L"), np.int16)   # noqa: E731
    assert px(tuned.content).shape == px(lib).shape and np.abs(px(tuned.content) - px(lib)).max() <= 1
    # without a style the file primes with its own first two sentences, as the library writes it
    lib_own = px(mine.write("tuned hello", seed=3).to_png())
    assert px(own.content).shape == lib_own.shape and np.abs(px(own.content) - lib_own).max() <= 1
    lib_pair = px(hw.write("tuned hello", style=style_from_json(_sample_docs(2)), seed=3).to_png())
    assert px(pair.content).shape == lib_pair.shape and np.abs(px(pair.content) - lib_pair).max() <= 1
    assert px(pair.content).shape != px(plain.content).shape or np.abs(px(pair.content) - px(plain.content)).max() > 64
    a, b = px(plain.content), px(tuned.content)
    # the tuned model writes differently: hundreds of pixels change by much (the same drawing: none)
    assert a.shape != b.shape or (np.abs(a - b) > 64).mean() > 0.002


def test_one_hand_at_a_time_and_a_job_can_be_stopped(hw):
    import httpx
    from live_server import LiveServer

    from handsynth.server import create_app
    with LiveServer(create_app(hw, warm_previews=False, tune_steps=100_000, tune_minutes=2)) as s, \
            httpx.Client(base_url=s.url, timeout=60) as c:
        first = c.post("/v1/tune", json={"samples": _sample_docs()}).json()
        second = c.post("/v1/tune", json={"samples": _sample_docs()})
        assert second.status_code == 503 and "another hand" in second.json()["error"]
        assert 1 <= int(second.headers["Retry-After"]) <= 121
        assert c.get("/healthz").json()["tuning"]["running"] is True
        while c.get(first["status_url"]).json()["step"] < 5:
            time.sleep(0.2)
        r = c.delete(first["status_url"])
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert c.get(first["status_url"]).status_code == 404
        deadline = time.monotonic() + 30
        while c.get("/healthz").json()["tuning"]["running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert c.get("/healthz").json()["tuning"] == {"running": False, "finished": 1}


def test_bad_tuning_requests_and_bad_tuned_files_get_one_clear_line(tune_server, tmp_path):
    import base64

    import httpx

    from handsynth.checkpoint import read
    docs = _sample_docs()
    with httpx.Client(base_url=tune_server.url, timeout=60) as c:
        def error(r, status, words):
            assert r.status_code == status, r.text
            msg = r.json()["error"]
            assert words in msg and "\n" not in msg, msg

        error(c.post("/v1/tune", json={"samples": docs[:2]}), 400, "3 to 10 sentences")
        error(c.post("/v1/tune", json={"samples": [{**docs[0], "text": "price $5 each"}] + docs[1:]}), 400, "sentence 1")
        error(c.post("/v1/tune", json={"samples": [{**docs[0], "strokes": [[[0, 0]]]}] + docs[1:]}), 400, "sentence 1")
        error(c.post("/v1/tune", json={"samples": docs, "steps": 5}), 400, "unknown field")
        error(c.get("/v1/tune/nope"), 404, "no such tuning job")
        error(c.get("/v1/tune/nope/model"), 404, "no such tuning job")
        error(c.delete("/v1/tune/nope"), 404, "no such tuning job")
        # just over the limit (far over, the server answers before the body is sent and the
        # connection is reset under the client)
        error(c.post("/v1/tune", content=b'{"samples": [' + b" " * MAX_TUNE_BODY_BYTES + b"]}",
                     headers={"content-type": "application/json"}), 413, "larger than the limit")

        body = {"text": "hello", "format": "png"}
        error(c.post("/v1/write", json={**body, "tuned": "not base64!"}), 400, "not base64")
        error(c.post("/v1/write", json={**body, "tuned": base64.b64encode(b"PK\x03\x04 cut short").decode()}),
              400, "not a readable tuned model")
        shipped = handsynth.load_model().path.read_bytes()[:400_000]
        error(c.post("/v1/write", json={**body, "tuned": base64.b64encode(shipped).decode()}), 400, "tuned")
        # a tuned file of another base model
        from handsynth.data.samples import load_samples
        t = tune(handsynth.load_model(), load_samples(_samples_file(tmp_path / "me.json")),
                 TuneConfig(max_steps=2, eval_every=1, patience=0))
        t.base["sha256"] = "0" * 64
        save_tuned(t, tmp_path / "other.pt")
        assert read(tmp_path / "other.pt")["base"]["sha256"] == "0" * 64
        error(c.post("/v1/write", json={**body, "tuned": base64.b64encode((tmp_path / "other.pt").read_bytes()).decode()}),
              400, "another model")
        assert c.get("/healthz").status_code == 200


def test_a_primed_pair_is_the_line_continuing_the_primer_and_only_the_line_counts(hw):
    from handsynth.strokes import continued
    from handsynth.tune import primed_batch
    rng = np.random.default_rng(3)
    primer = np.c_[rng.normal(0.3, 0.2, (40, 2)), np.zeros(40)].astype(np.float32)
    line = np.c_[rng.normal(0.3, 0.2, (30, 2)), np.zeros(30)].astype(np.float32)
    primer[[9, 19], 2] = line[[14], 2] = 1.0
    both = continued(primer, line)
    assert both.shape == (70, 3)   # the line's first offset becomes the jump to it
    np.testing.assert_array_equal(both[:39], primer[:39])
    np.testing.assert_array_equal(both[41:], line[1:])
    assert both[39, 2] == 1.0 and both[40, 2] == 0.0         # pen up before the jump, down after it
    ends = np.cumsum(primer[:, :2], 0)
    pts = np.cumsum(both[:, :2], 0)
    start = pts[40]                                                   # where the line's pen lands
    gap = 0.5 * float(np.ptp(ends[:, 1]))
    assert abs(start[0] - (ends[:, 0].max() + gap)) < 1e-4
    # the joined line's baseline continues the primer's (where it starts, the slopes about 0)
    from handsynth.strokes import baseline
    s1, i1, _ = baseline([ends])
    s2, i2, _ = baseline([pts[40:]])
    assert abs((s2 * start[0] + i2) - (s1 * start[0] + i1)) < 1e-3
    shifted = line.copy()
    shifted[0, 1] += 3.0      # where the line's own first point lies does not move its baseline
    np.testing.assert_allclose(continued(primer, shifted), both, atol=1e-5)
    b = primed_batch([(primer, "ab", line, "cd")], [line], ["cd"], hw)
    assert b.mask.shape[0] == 2 and float(b.mask[0, :41].sum()) == 0 and float(b.mask[0, 41:].sum()) == 29
    assert float(b.mask[1].sum()) == 30
    assert hw.alphabet.decode(b.text[0][b.text_mask[0] > 0].tolist()) == "ab cd"
