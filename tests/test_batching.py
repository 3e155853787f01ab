"""Batching across callers: several callers' lines (each with its own bias, seed and style) in one
batch come out as each caller's lines alone; a caller whose check raises loses only its own
lines; the Batcher shares batches between threads' writes, and the real server between requests."""
from __future__ import annotations

import copy
import threading

import httpx
import numpy as np
import pytest

import handsynth
from handsynth.batching import Batcher
from handsynth.errors import HandsynthError
from handsynth.sampling import Group, SamplingOptions, checked_groups, sample_checked, sample_groups, sample_lines
from handsynth.server import create_app
from live_server import LiveServer


def _close(a, b, what):
    """Two samplings of one line: the same pen steps (batch size moves the float sums a little)."""
    assert abs(len(a.offsets) - len(b.offsets)) <= 2, (what, len(a.offsets), len(b.offsets))
    n = min(len(a.offsets), len(b.offsets))
    np.testing.assert_allclose(a.offsets[:n], b.offsets[:n], atol=5e-3, err_msg=what)


@pytest.fixture(scope="module")
def groups(hw):
    styles = handsynth.available_styles()
    return [Group(["hello there", "ab"], [0, 1], SamplingOptions(bias=2.0, seed=0, bf16=False)),
            Group(["a primed line"], [0], SamplingOptions(bias=1.0, seed=5, bf16=False), hw.primer(styles[0].id)),
            Group(["another hand", "two"], [3, 4], SamplingOptions(bias=3.0, seed=1, bf16=False),
                  hw.primer(styles[1].id))]


def test_groups_in_one_batch_are_each_group_alone(hw, groups):
    together = sample_groups(hw.model, hw.alphabet, hw.mean, hw.std, groups)
    assert [len(x) for x in together] == [2, 1, 2]
    for g, got in zip(groups, together):
        alone = sample_lines(hw.model, hw.alphabet, hw.mean, hw.std, g.texts, g.options, g.primer,
                             line_seeds=g.seeds)
        for a, b in zip(got, alone):
            assert a.text == b.text
            _close(a, b, a.text)
    # the groups really differ: another bias or style writes the same text otherwise
    other = sample_lines(hw.model, hw.alphabet, hw.mean, hw.std, ["a primed line"], groups[1].options)
    assert len(other[0].offsets) != len(together[1][0].offsets) or \
        not np.allclose(other[0].offsets, together[1][0].offsets, atol=5e-3)


def test_the_policy_in_one_batch_is_the_policy_alone(hw, groups):
    together = checked_groups(hw.model, hw.alphabet, hw.mean, hw.std, groups)
    for g, got in zip(groups, together):
        alone = sample_checked(hw.model, hw.alphabet, hw.mean, hw.std, g.texts, g.seeds, g.options, g.primer)
        for a, b in zip(got, alone):
            _close(a, b, a.text)
            assert a.phi is not None and a.phi.shape[0] == len(a.offsets)


def test_a_failing_check_or_text_ends_only_its_own_group(hw, groups):
    calls = []

    def give_up():
        calls.append(1)
        if len(calls) > 5:
            raise TimeoutError("this caller's time is up")

    failing = Group(["a long line that would take a while"], [0], SamplingOptions(bf16=False), None, give_up)
    bad = Group(["x" * 500], [0], SamplingOptions(bf16=False))
    got = sample_groups(hw.model, hw.alphabet, hw.mean, hw.std, [failing, groups[0], bad])
    assert isinstance(got[0], TimeoutError) and len(calls) == 6
    assert isinstance(got[2], HandsynthError) and "longer than the limit" in str(got[2])
    alone = sample_lines(hw.model, hw.alphabet, hw.mean, hw.std, groups[0].texts, groups[0].options,
                         line_seeds=groups[0].seeds)
    for a, b in zip(got[1], alone):
        _close(a, b, a.text)


def test_threads_writes_share_batches_and_write_what_they_would_alone(hw, monkeypatch):
    # in float32, whose rows do not depend on the batch size (bfloat16's packed matmuls, picked
    # where the CPU has bfloat16 arithmetic, round rows differently in other batch sizes)
    monkeypatch.setenv("HANDSYNTH_BF16", "0")
    shared = copy.copy(hw)
    shared.batcher = Batcher(hw.model, hw.alphabet, hw.mean, hw.std, read=hw.proofreader())   # (as the server's)
    jobs = [("hi there", None, 2.0, 1), ("see you soon", "s03", 1.5, 2), ("tea at five?", "s05", 3.0, 3),
            ("a second line\nand a third", None, 2.0, 4), ("ok", "s03", 2.0, 5), ("fine", None, 0.5, 6)]
    start, out, errors = threading.Barrier(len(jobs)), {}, []

    def run(k, text, style, bias, seed):
        try:
            start.wait(10)
            out[k] = shared.write(text, style=style, bias=bias, seed=seed, proofread=False)
        except Exception as e:   # (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k, *job)) for k, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    shared.batcher.close()
    assert not errors, errors
    assert shared.batcher.largest >= 2 and shared.batcher.batches < len(jobs)
    for k, (text, style, bias, seed) in enumerate(jobs):
        # (without proofreading: whether a line is misread is a threshold, and float rounding
        # between batch sizes can move a reading across it)
        alone = hw.write(text, style=style, bias=bias, seed=seed, proofread=False)
        assert [w.text for w in out[k].words] == [w.text for w in alone.words]
        for a, b in zip(out[k].lines, alone.lines):
            _close(a, b, text)


def test_a_family_that_cannot_mix_styles_gets_one_style_per_batch(hw):
    from handsynth.models.transformer import Model
    tiny = Model(Model.Config.preset("tiny", hw.alphabet.size))
    assert not tiny.mixes_styles and hw.model.mixes_styles
    a, b = hw.primer("s03"), hw.primer("s05")
    for model, want in ((tiny, [[0, 2], [1], [3]]), (hw.model, [[0, 1, 2], [3]])):
        batcher = Batcher(model, hw.alphabet, hw.mean, hw.std)
        opts = SamplingOptions()
        from handsynth.batching import _Waiting
        for primer, options in ((a, opts), (b, opts), (hw.primer("s03"), opts),   # an equal primer, another object
                                (a, SamplingOptions(steps_per_char=30.0))):        # other options never share
            batcher._queue.append(_Waiting(Group(["hi"], [0], options, primer)))
        order = list(batcher._queue)
        got = []
        while batcher._queue:
            got.append([next(i for i, o in enumerate(order) if o is w) for w in batcher._take()])
        assert got == want


def test_the_server_batches_concurrent_requests(hw):
    with LiveServer(create_app(hw, timeout_s=120, warm_previews=False)) as s:
        texts = [f"note {k}" for k in range(8)]
        start, got = threading.Barrier(len(texts)), {}

        def post(k):
            with httpx.Client(base_url=s.url, timeout=120) as c:
                start.wait(10)
                got[k] = c.post("/v1/write", json={"text": texts[k], "seed": k, "format": "svg"})

        threads = [threading.Thread(target=post, args=(k,)) for k in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [got[k].status_code for k in range(len(texts))] == [200] * len(texts)
        health = httpx.get(s.url + "/healthz").json()
        assert health["batches"]["most_requests"] >= 2
        assert health["batches"]["lines"] == len(texts) and health["batches"]["sampled"] < len(texts)
        for k in (0, 5):   # each answer is that request's own writing
            alone = hw.write(texts[k], seed=k)
            assert got[k].text.count("<path") == len(alone.strokes)


def test_groups_of_several_styles_are_sampled_apart_for_a_family_that_cannot_mix(hw):
    from handsynth.models.transformer import Model
    from handsynth.strokes import standardize
    a, b = hw.primer("s03"), hw.primer("s05")
    cfg = Model.fit(Model.Config.preset("tiny", hw.alphabet.size), [standardize(p.offsets, hw.mean, hw.std) for p in (a, b)])
    tiny = Model(cfg)
    opts = SamplingOptions(steps_per_char=4.0, bf16=False)
    got = sample_groups(tiny, hw.alphabet, hw.mean, hw.std, [Group(["hi"], [0], opts, a), Group(["ok"], [1], opts, b),
                                                              Group(["yo"], [2], opts, a)])
    assert [[line.text for line in g] for g in got] == [["hi"], ["ok"], ["yo"]]
    with pytest.raises(HandsynthError, match="one style per batch"):   # the family itself refuses a mixed batch
        tiny.start(None, [a.offsets, b.offsets])
