import json

import numpy as np
import pytest
import torch

from handsynth.cli import main
from handsynth.evaluate import baseline_metrics, completed, pen_lifts_per_char, run_report
from handsynth.sampling import Line, SamplingOptions
from handsynth.strokes import strokes_to_offsets, transform


# metric functions on constructed inputs -----------------------------------------------------
def flat_line(words: int = 6, letters: int = 4, wobble: float = 0.0) -> list:
    """Made-up writing on a flat baseline at y = 0: each letter a loop from y = 0 up to y = 1, a
    word per stroke; with ``wobble`` every other word sits that many x-heights higher."""
    strokes, x = [], 0.0
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for w in range(words):
        lift = wobble if w % 2 else 0.0
        pts = [np.stack([x + i * 0.8 + 0.4 * np.sin(t) + t / (2 * np.pi) * 0.8, 0.5 - 0.5 * np.cos(t) + lift], 1)
               for i in range(letters)]
        strokes.append(np.concatenate(pts))
        x += letters * 0.8 + 1.0
    return strokes


@pytest.mark.parametrize("degrees", [-7.0, -2.0, 0.0, 3.0, 10.0])
def test_baseline_angle_of_a_rotated_line(degrees):
    strokes = transform(flat_line(), angle=np.radians(degrees))
    angle, spread = baseline_metrics(strokes_to_offsets(strokes))
    assert angle == pytest.approx(degrees, abs=0.3)
    assert spread < 0.05


def test_baseline_spread_grows_with_a_wobbly_baseline():
    _, flat = baseline_metrics(strokes_to_offsets(flat_line()))
    _, wobbly = baseline_metrics(strokes_to_offsets(flat_line(wobble=0.4)))
    assert flat < 0.05 and wobbly > 0.1 and wobbly > 3 * flat


def test_pen_lifts_per_char():
    off = np.zeros((12, 3), np.float32)
    off[[3, 7, 11], 2] = 1.0
    assert pen_lifts_per_char(off, "abc") == pytest.approx(1.0)
    assert pen_lifts_per_char(off, "ab c d") == pytest.approx(3 / 4)  # spaces are not written
    assert pen_lifts_per_char(strokes_to_offsets(flat_line(words=5)), "word " * 5) == pytest.approx(5 / 20)


def _phi(focus, U):
    phi = np.zeros((len(focus), U + 1), np.float32)
    phi[np.arange(len(focus)), focus] = 1.0
    return phi


def test_completed_on_constructed_lines():
    U = 5
    off = np.zeros((1, 3), np.float32)
    walk = np.repeat(np.arange(U + 1), 10)                                  # every character, then the end
    assert completed(Line("abcde", off, hit_cap=False, phi=_phi(walk, U)))
    assert not completed(Line("abcde", off, hit_cap=True, phi=_phi(walk, U)))  # the step cap ended it
    short = np.repeat(np.arange(U - 2), 10)                                  # the window stopped early
    assert not completed(Line("abcde", off, hit_cap=False, phi=_phi(short, U)))
    runon = np.r_[walk, np.full(100, U)]                                     # scribbles after the end
    assert not completed(Line("abcde", off, hit_cap=False, phi=_phi(runon, U)))
    assert completed(Line("abcde", off, hit_cap=False, phi=None))
    assert completed(Line("abcde", off, hit_cap=False), phi=_phi(walk, U))


# the report, end to end ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def held_out_iam(tmp_path_factory):
    """A tiny corpus like ``tiny_iam`` (same words, same first forms) but with enough forms that
    one lands in the test split (form a02-023u: 4 lines)."""
    from conftest import write_iam
    return write_iam(tmp_path_factory.mktemp("iam-held-out"), forms=24, extras=False)


@pytest.fixture(scope="module")
def tiny_recognizer(held_out_iam, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-rec")
    assert main(["recognizer", "--iam", str(held_out_iam), "--out", str(out), "--config", "tiny",
                 "--max-steps", "300", "--batch-size", "8", "--lr", "0.02", "--eval-every", "300",
                 "--cache-dir", str(tmp_path_factory.mktemp("rec-cache")), "-q"]) == 0
    return out / "recognizer.pt"


@pytest.fixture
def tiny_styles(monkeypatch):
    """Built-in styles the tiny model can prime with (its alphabet lacks most letters of the real
    ones), plus one real style it cannot, which the report must skip."""
    import handsynth
    import handsynth.styles
    from conftest import line_strokes

    real = handsynth.styles.builtin_styles()[:1]
    mine = tuple(handsynth.styles.Style(f"t{k}", f"tiny {k}", text,
                                        tuple(np.c_[s[:, 0], -s[:, 1]].astype(np.float32) for s in line_strokes(text)))
                 for k, text in enumerate(["the cat sat on a mat", "a dog ran to it", "it sat on the mat"]))
    monkeypatch.setattr(handsynth.styles, "builtin_styles", lambda: mine + real)
    return [s.id for s in mine], [s.id for s in real]


def test_eval_command_end_to_end(tiny_model, held_out_iam, tiny_recognizer, tiny_styles, tmp_path, monkeypatch):
    monkeypatch.setenv("HANDSYNTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    assert main(["eval", "--model", str(tiny_model), "--iam", str(held_out_iam), "--out", str(out),
                 "--texts", "4", "--recognizer", str(tiny_recognizer), "--no-proofread", "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sampling"]["proofread"] is False   # (the tiny model's scribble would all be written twice)
    assert (out / "sheet.png").stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "legibility_cer" in md and "sheet.png" in md
    assert report["seed"] == 0 and report["bias"] == SamplingOptions.bias and report["recognizer"] == str(tiny_recognizer)
    assert np.isfinite(report["validation_nll_per_line"])
    assert 0 <= report["completion"] <= 1
    assert report["baseline_angle_after_layout_deg"] >= 0 and report["baseline_spread_xheights"] >= 0
    assert report["pen_lifts_per_char"] >= 0 and report["pen_lifts_per_char_real"] > 0
    leg = report["legibility"]
    assert leg["cer_generated"] >= 0 and 0 <= leg["cer_real"] < 0.5  # the judge reads real lines it never saw
    usable, unusable = tiny_styles
    assert set(leg["cer_generated_per_style"]) == set(report["per_style"]) == {"none", *usable}
    assert report["styles_skipped"] == unusable
    assert leg["style_gap"] >= 0
    for style in report["per_style"].values():
        assert style["texts"] == 1 and 0 <= style["completion"] <= 1 and style["cer"] >= 0
    assert report["headline"]["legibility_cer"] == leg["cer_generated"]
    assert report["headline"]["legibility_cer_real"] == leg["cer_real"]
    # the measures of what a reader sees: the report.json contract
    by_class = report["cer_by_class"]["iam"]["recognizer"]
    assert by_class["cer"] == pytest.approx(leg["cer_generated"]) and "lowercase" in by_class["by_class"]
    assert report["baseline_angle_before_layout_deg"] == report["baseline_angle_raw_deg"] >= 0
    for key in ("size_ratio_last_first", "size_ratio_last_first_real", "page_line_height_spread",
                "end_strays_per_100_lines"):
        assert key in report and (report[key] != report[key] or report[key] >= 0)
    assert report["hard_texts"] == 0   # the tiny model writes a dozen letters: no hard text fits
    assert isinstance(report["style_retrieval"], dict) and report["style_retrieval"]["n_forms"] <= 1
    import handsynth.judge
    if handsynth.judge.available():
        j = report["judge"]
        assert 0 <= j["generated"] and 0 <= j["real"] and j["print"] < 0.05   # print is read near perfectly
        assert "tesseract" in report["cer_by_class"]["iam"]
    assert "## The independent judge" in md and "## Style fidelity" in md
    assert all((out / f).exists() for f in report["sheets"].values())


def test_report_says_when_no_recogniser_is_available(tiny_model, held_out_iam, tmp_path, monkeypatch):
    import handsynth.recognizer
    monkeypatch.setattr(handsynth.recognizer, "DEFAULT_RECOGNIZER", tmp_path / "none.pt")
    monkeypatch.setenv("HANDSYNTH_CACHE", str(tmp_path / "cache"))
    report = run_report(model=tiny_model, iam=held_out_iam, out=tmp_path / "r", texts=1, progress=False)
    assert report["legibility"] == "no recogniser available"
    assert report["headline"]["legibility"] == "no recogniser available"
    assert report["recognizer"] is None
    assert "no recogniser available" in (tmp_path / "r" / "report.md").read_text()


def test_report_refuses_a_recogniser_that_saw_the_test_forms(tiny_model, held_out_iam, tiny_recognizer,
                                                               tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HANDSYNTH_CACHE", str(tmp_path / "cache"))
    ck = torch.load(tiny_recognizer, weights_only=True)
    ck["train_forms"] = ck["train_forms"] + ["a02-023u"]
    leaky = tmp_path / "leaky.pt"
    torch.save(ck, leaky)
    assert main(["eval", "--model", str(tiny_model), "--iam", str(held_out_iam), "--out", str(tmp_path / "r"),
                 "--texts", "1", "--recognizer", str(leaky), "-q"]) == 2
    err = capsys.readouterr().err
    assert "held-out test forms" in err and err.count("\n") == 1
    assert main(["eval", "--model", str(tiny_model), "--iam", str(held_out_iam), "--out", str(tmp_path / "r"),
                 "--recognizer", str(tmp_path / "missing.pt"), "-q"]) == 2
    assert "no such recogniser" in capsys.readouterr().err
