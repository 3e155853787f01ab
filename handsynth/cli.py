"""The ``handsynth`` command: write, styles, models, serve, tune, train, corpus, eval, recognizer. Its
defaults are the options dataclasses' (``SamplingOptions``, ``PageOptions``, ``Ink``, the training
configs)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import HandsynthError
from .hardware import configure_threads
from .layout import ALIGNS, PageOptions
from .render import Ink
from .sampling import SamplingOptions

MODEL_HELP = "a shipped model's name (`handsynth models`) or a model file (default: the shipped lstm)"


def _write(a) -> None:
    import handsynth

    from . import validate
    from .drawing import format_of
    from .writer import MAX_WRITE_CHARS
    if a.text == "-":   # at most what the character limit allows (4 bytes a character, a BOM): no endless read
        if sys.stdin is None:
            raise HandsynthError("the text is - but there is no standard input to read it from")
        limit = 4 * MAX_WRITE_CHARS + 4
        data = sys.stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise HandsynthError(f"standard input holds more than the limit of {MAX_WRITE_CHARS} characters")
        text = validate.decode_text(data, "standard input")
    else:   # a shell passes "\n" as two characters: in the argument they start a new line
        text = validate.utf8_text(a.text, "the text").replace("\\n", "\n")
    validate.output_file(a.output)   # fail on a bad output before spending time on sampling
    fmt = format_of(a.output)
    output = _output(a, fmt)
    if a.style and a.style_file:
        raise HandsynthError("give either --style or --style-file, not both")
    if a.redo_seed is not None and not a.redo_word:
        raise HandsynthError("--redo-seed needs --redo-word N (the word to write again)")
    if any(n < 1 for n in a.redo_word or []):
        raise HandsynthError("--redo-word counts the words from 1 (the first word of the text is 1)")
    if a.redo_seed is not None and a.redo_seed < 0:
        raise HandsynthError(f"--redo-seed must be 0 or more (got {a.redo_seed})")
    redo = {n - 1: 1 if a.redo_seed is None else a.redo_seed for n in a.redo_word or []}
    from .styles import get_style, style_from_file
    # the style before the model: a bad style file or name fails at once, not after loading
    style = style_from_file(Path(a.style_file)) if a.style_file else get_style(a.style) if a.style else None
    hw = handsynth.load_model(a.model)
    configure_threads("write")   # the cores free now (hardware.py)
    try:
        drawing = hw.write(text, style=style, bias=a.bias, seed=a.seed, width=a.width, align=a.align,
                           stroke_width=a.stroke_width, color=a.color,
                           background=None if a.transparent else Ink.background, dpi=a.dpi,
                           skip_unknown=a.skip_unknown, paper=a.paper, landscape=a.landscape, margin_mm=a.margin,
                           line_spacing_mm=a.line_spacing, x_height_mm=a.x_height, ruling=a.ruling, pen=a.pen,
                           ink_variation=a.ink_variation, redo=redo or None, proofread=not a.no_proofread)
    except HandsynthError as e:
        if getattr(e, "words", None) is None:
            raise
        raise HandsynthError(f"--redo-word {max(a.redo_word)}: the text has {e.words} word(s), "
                             f"counted from 1") from None
    for path in drawing.save(a.output, output):
        if not a.quiet:
            print(path)
    if not a.quiet and (a.plotter or fmt == "gcode"):
        from .plotter import travel_summary
        print(travel_summary(drawing.plot(output)), file=sys.stderr)
    capped = [line.text for line in drawing.lines if line.hit_cap]
    if capped and not a.quiet:
        print(f"warning: {len(capped)} line(s) hit the step cap: {capped}", file=sys.stderr)


def _output(a, fmt: str):
    """The write command's output options (``drawing.Output``), checked against the format."""
    from .drawing import Output
    gcode = None
    if fmt == "gcode":
        from .plotter import GcodeOptions
        try:
            offset = tuple(float(v) for v in a.offset.split(",")) if a.offset else (0.0, 0.0)
        except ValueError:
            offset = ()
        if len(offset) != 2:
            raise HandsynthError(f"--offset {a.offset!r}: give X,Y in mm, e.g. 10,20")
        known = {k: v for k, v in dict(pen=a.gcode_pen, servo_down=a.servo_down, servo_up=a.servo_up, z_down=a.z_down,
                                       z_up=a.z_up, pen_down=a.pen_down_cmd, pen_up=a.pen_up_cmd, dwell=a.dwell,
                                       feed=a.feed, travel_feed=a.travel_feed, origin=a.origin).items() if v is not None}
        gcode = GcodeOptions(**known, offset=offset, flip_y=not a.no_flip_y)
    elif any(v is not None for v in (a.gcode_pen, a.servo_down, a.servo_up, a.z_down, a.z_up, a.pen_down_cmd,
                                     a.pen_up_cmd, a.dwell, a.feed, a.travel_feed, a.origin, a.offset)) or a.no_flip_y:
        raise HandsynthError("G-code options are for .gcode files")
    output = Output(animate=a.animate, plotter=a.plotter, simplify=a.simplify, order=not a.no_order, gcode=gcode)
    output.check(fmt)
    return output


def _models(a) -> None:
    from . import available_models

    for m in available_models():
        print(f"{m.name:12s} {m.arch:10s} {m.description}")


def _styles(a) -> None:
    from . import available_styles

    styles = available_styles()
    if a.sheet:
        import handsynth
        from .evaluate import style_sheet
        from .validate import output_file
        output_file(a.sheet, "--sheet")   # a folder that takes files, before writing every style
        hw = handsynth.load_model(a.model)
        style_sheet(hw, a.text, a.sheet, bias=a.bias, seed=a.seed)
        if not a.quiet:
            print(a.sheet)
        return
    for s in styles:
        print(f"{s.id:6s} {s.name:28s} {s.text!r}")


def _serve(a) -> None:
    from .server import serve
    serve(a.host, a.port, a.model, max_concurrent=a.max_concurrent, queue_size=a.queue_size, timeout_s=a.timeout,
          tune_minutes=a.tune_minutes)


def _train(a) -> None:
    from .train import train
    train(iam=a.iam, samples=a.samples, out=a.out, config=a.config, resume=a.resume, max_steps=a.max_steps,
          max_minutes=a.max_minutes, batch_size=a.batch_size, lr=a.lr, seed=a.seed, eval_every=a.eval_every,
          attention_warmup=a.attention_warmup, attention_floor=a.attention_floor, schedule_steps=a.schedule_steps, bf16=False if a.no_bf16 else None,
          cache_dir=a.cache_dir, progress=not a.quiet, arch=a.arch, unipen=a.unipen, unipen_share=a.unipen_share,
          init=a.init, lr_warmup=a.lr_warmup, unipen_characters=a.unipen_characters)


def _corpus(a) -> None:
    from .data.corpus import load_corpus, statistics
    stats = statistics(load_corpus(a.iam, a.samples, cache_dir=a.cache_dir, progress=not a.quiet, unipen=a.unipen,
                                   unipen_characters=a.unipen_characters))
    if a.json:
        print(json.dumps(stats, indent=1))
        return
    counts = stats.pop("character_counts")
    for k, v in stats.items():
        print(f"{k:26s} {v:.2f}" if isinstance(v, float) else f"{k:26s} {v}")
    print("character counts:", " ".join(f"{c!r}:{n}" for c, n in counts.items()))
    print("rare characters: ", " ".join(f"{c}:{counts.get(c, 0)}" for c in "XQZ0123456789$@#=<>&%/"))


def _eval(a) -> None:
    from .evaluate import run_report
    report = run_report(model=a.model, iam=a.iam, out=a.out, texts=a.texts, bias=a.bias, seed=a.seed,
                        recognizer=a.recognizer, progress=not a.quiet, quick=a.quick, hard=a.hard, forms=a.forms,
                        judge=not a.no_judge, style_encoder=a.style_encoder, hard_alphabet=_alphabet_of(a.hard_like),
                        proofread=not a.no_proofread)
    if not a.quiet:
        print(json.dumps(report["headline"], indent=1))


def _alphabet_of(model) -> str | None:
    """``--hard-like MODEL``: the characters that model writes (None: no restriction)."""
    if model is None:
        return None
    from . import checkpoint, model_file
    return checkpoint.read(model_file(model)[0])["alphabet"]


def _recognizer(a) -> None:
    from .data.corpus import load_corpus
    from .recognizer import train_recognizer
    corpus = load_corpus(a.iam, cache_dir=a.cache_dir, progress=not a.quiet, unipen=a.unipen).learnable()
    train_recognizer(corpus, a.out, config=a.config, max_steps=a.max_steps, max_minutes=a.max_minutes,
                     batch_size=a.batch_size, lr=a.lr, seed=a.seed, eval_every=a.eval_every, bf16=False if a.no_bf16 else None,
                     resume=a.resume, schedule_steps=a.schedule_steps, progress=not a.quiet, init=a.init,
                     unipen_share=a.unipen_share)
    if not a.quiet:
        print(Path(a.out) / "recognizer.pt")


def _style_encoder(a) -> None:
    from .data.corpus import load_corpus
    from .style_encoder import train_style_encoder
    corpus = load_corpus(a.iam, cache_dir=a.cache_dir, progress=not a.quiet)
    train_style_encoder(corpus, a.out, config=a.config, max_steps=a.max_steps, max_minutes=a.max_minutes,
                        forms=a.forms, lines_per_form=a.lines_per_form, lr=a.lr, seed=a.seed,
                        eval_every=a.eval_every, temperature=a.temperature, bf16=a.bf16, resume=a.resume,
                        schedule_steps=a.schedule_steps, progress=not a.quiet)
    if not a.quiet:
        print(Path(a.out) / "style_encoder.pt")


def _tune(a) -> None:
    import handsynth

    from . import validate
    from .data.samples import load_samples
    from .tune import TuneConfig, save_tuned, tune

    samples = load_samples(a.samples)
    validate.output_file(a.out)   # a bad output fails before minutes of tuning
    hw = handsynth.load_model(a.model)
    configure_threads("train")
    config = TuneConfig(parts=a.parts, lr=a.lr, max_steps=a.steps, max_minutes=a.minutes, patience=a.patience,
                        rank=a.rank, strength=a.strength, primed=a.primed, seed=a.seed)
    from tqdm import tqdm
    bar = tqdm(total=config.max_steps, unit="step", disable=a.quiet, desc="tuning")

    def progress(step, total, nll):
        bar.update(step - bar.n)
        bar.set_postfix_str(f"held-out NLL {nll:.3f}")

    try:
        tuned = tune(hw, samples, config, progress)
    finally:
        bar.close()
    got = save_tuned(tuned, a.out)
    if not a.quiet:
        first, best = tuned.history[0][1], min(h for _, h in tuned.history)
        print(f"{a.out}: {got['bytes'] / 1024:.0f} KiB, from {tuned.lines} line(s); held-out NLL per pen step "
              f"{first:.3f} -> {best:.3f} at step {tuned.best_step}; stopped: {tuned.stopped}")
        print(f"it writes primed with {tuned.primer[0]!r} (--style or --style-file for another primer)")


def _run_args(p: argparse.ArgumentParser, tc, what: str) -> None:
    """The options every training command shares, with defaults from its config ``tc``."""
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--max-minutes", type=float, help="stop after this much wall time")
    p.add_argument("--schedule-steps", type=int, help=f"length of the cosine schedule (default: max-steps or {tc.max_steps})")
    p.add_argument("--lr", type=float, default=tc.lr)
    p.add_argument("--seed", type=int, default=tc.seed)
    p.add_argument("--eval-every", type=int, default=tc.eval_every, help=f"steps between {what} and checkpoint")
    p.add_argument("--cache-dir", help="where the processed corpus is cached (default ~/.cache/handsynth)")
    p.add_argument("-q", "--quiet", action="store_true")


def _characters_arg(p) -> None:
    """``--unipen-characters``: UNIPEN's isolated digits and/or capitals as lines (``unipen.character_lines``)."""
    from .data.unipen import CHARACTER_LINES
    p.add_argument("--unipen-characters", type=lambda v: tuple(c for c in v.split(",") if c), default=(),
                   metavar=",".join(CHARACTER_LINES), help="also UNIPEN's isolated characters, set side by side "
                   "into lines: 1a digits, 1b capitals, comma-separated (default: none; words and free text only)")


def _share_arg(p: argparse.ArgumentParser, tc) -> None:
    """``--unipen-share`` of a command that trains on the mix (``CorpusTask.epoch_lines``)."""
    p.add_argument("--unipen-share", type=float, default=tc.unipen_share,
                   help=f"share of each epoch's lines drawn from UNIPEN (default {tc.unipen_share})")


def _port(text: str) -> int:
    """A TCP port number, 0 to 65535 (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return port


def _ranged(cast, lo: float, hi: float, what: str):
    """An argparse type: ``cast(text)`` between ``lo`` and ``hi``, else a one-line usage error."""
    def parse(text: str):
        try:
            v = cast(text)
        except (ValueError, OverflowError):
            v = None
        if v is None or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return v
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line like every other error (status 2)."""

    def error(self, message):
        self.exit(2, f"handsynth: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    from .checkpoint import DEFAULT_ARCH, families
    from .layout import RULINGS
    from .paper import LINE_SPACING_MM, MARGIN_MM, PAPERS
    from .recognizer import RecognizerTrainConfig as RTC
    from .render import PENS
    from .train import TrainConfig as TC

    p = _Parser(prog="handsynth", description="Typed text in, believable handwriting out.")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("write", help="write text as handwriting to a PNG, SVG or PDF file")
    w.add_argument("text", help="the text to write (\\n in it starts a new line); - reads standard input")
    w.add_argument("-o", "--output", required=True,
                   help="output file: .png, .svg, .pdf, .gcode (pen plotters), .inkml (ink exchange), "
                        ".gif or .webp (the writing as it appears)")
    w.add_argument("--style", help="a built-in style id or name (see `handsynth styles`)")
    w.add_argument("--style-file", help="a JSON (or InkML) sample of your own handwriting (see docs/samples.md); "
                                        "of several sentences, the first two prime, joined")
    w.add_argument("--bias", type=float, default=SamplingOptions.bias, help=f"neatness: 0 wild ... 10 very neat (default {SamplingOptions.bias})")
    w.add_argument("--seed", type=int, default=SamplingOptions.seed)
    w.add_argument("--width", type=int, help=f"page width in pixels (default {PageOptions.width}), without --paper")
    w.add_argument("--paper", help=f"real paper: {', '.join(PAPERS)} or WxHmm (e.g. 148x105mm); "
                                   "kept whole, SVG and PDF in millimetres, PNG at --dpi")
    w.add_argument("--landscape", action="store_true", help="the paper's long side across (default: portrait)")
    w.add_argument("--margin", type=float, metavar="MM", help=f"margin on every side in mm (default {MARGIN_MM:g})")
    w.add_argument("--line-spacing", type=float, metavar="MM",
                   help=f"between baselines in mm (default {LINE_SPACING_MM:g}, or {PageOptions.line_pitch:g} x-heights)")
    w.add_argument("--x-height", type=float, metavar="MM", help="writing size: the height of an x in mm "
                                                                 f"(default the line spacing / {PageOptions.line_pitch:g})")
    w.add_argument("--ruling", choices=RULINGS, help="paper ruled through the baselines, squared or dotted "
                                                      "(SVG: a layer of its own)")
    w.add_argument("--pen", choices=list(PENS), default=Ink.pen,
                   help="pen model for PNG and PDF: width with speed (and a fountain pen's nib with direction); "
                        "SVG keeps one uniform width")
    w.add_argument("--ink-variation", type=float, metavar="0-1",
                   help="per-stroke shade of the ink, 0 none to 1 (default: the pen's own; uniform: 0)")
    w.add_argument("--stroke-width", type=float, default=Ink.stroke_width, help="pen width in pixels")
    w.add_argument("--color", default=Ink.color, help="ink colour: a name or #rrggbb")
    w.add_argument("--transparent", action="store_true", help="no background (PNG, SVG)")
    w.add_argument("--dpi", type=int, default=Ink.dpi)
    w.add_argument("--align", choices=ALIGNS, default=PageOptions.align)
    w.add_argument("--skip-unknown", action="store_true", help="drop characters the model cannot write")
    w.add_argument("--model", help=MODEL_HELP)
    w.add_argument("-q", "--quiet", action="store_true")
    w.add_argument("--animate", action="store_true", help="an SVG in which the pen draws each stroke in turn")
    w.add_argument("--no-proofread", action="store_true",
                   help="faster: keep each line as first written (by default the recogniser reads every line "
                        "and a misread one is written once more)")
    w.add_argument("--redo-word", type=int, action="append", metavar="N",
                   help="write word N again (counted from 1 over the whole text; repeatable), "
                        "keeping the rest of the page: the same text, seed and options give the same page")
    w.add_argument("--redo-seed", type=int, metavar="S",
                   help="the seed of the rewritten word(s) (default 1); another seed, another writing")
    pl = w.add_argument_group("pen plotters (.gcode, or .svg with --plotter; see docs/plotter.md)")
    pl.add_argument("--plotter", action="store_true",
                    help="SVG for plotters: one polyline per stroke in an Inkscape layer per colour, for vpype and AxiDraw")
    pl.add_argument("--simplify", type=float, default=0.0, metavar="MM", help="simplify strokes to this tolerance")
    pl.add_argument("--no-order", action="store_true", help="keep the written stroke order (default: ordered to cut pen-up travel)")
    pl.add_argument("--gcode-pen", choices=["servo", "z", "custom"], help="how the pen goes down: a servo (M3 S/M5, "
                                                                        "the default), a Z axis, or your own commands")
    pl.add_argument("--servo-down", type=int, metavar="S", help="M3 S value that lowers the pen (default 1000)")
    pl.add_argument("--servo-up", type=int, metavar="S", help="M3 S value that lifts it (default: M5)")
    pl.add_argument("--z-down", type=float, metavar="MM")
    pl.add_argument("--z-up", type=float, metavar="MM")
    pl.add_argument("--pen-down-cmd", help="with --gcode-pen custom: the pen-down command")
    pl.add_argument("--pen-up-cmd", help="with --gcode-pen custom: the pen-up command")
    pl.add_argument("--dwell", type=float, metavar="S", help="seconds to wait after each pen move")
    pl.add_argument("--feed", type=float, metavar="MM_MIN", help="drawing feed rate (default 3000)")
    pl.add_argument("--travel-feed", type=float, metavar="MM_MIN", help="pen-up feed rate (default: rapid G0)")
    pl.add_argument("--origin", choices=["page", "writing"], help="what sits at the offset: the paper's corner (default) or the writing's")
    pl.add_argument("--offset", metavar="X,Y", help="machine position of the origin in mm (default 0,0)")
    pl.add_argument("--no-flip-y", action="store_true", help="page y as it is (default: mirrored for machines with y away from you)")
    w.set_defaults(func=_write)

    s = sub.add_parser("styles", help="list the built-in styles, or render a sheet of them")
    s.add_argument("--sheet", help="write every style writing the same text to this image")
    s.add_argument("--text", default="The quick brown fox jumps over the lazy dog.")
    s.add_argument("--bias", type=float, default=SamplingOptions.bias)
    s.add_argument("--seed", type=int, default=SamplingOptions.seed)
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=_styles)

    v = sub.add_parser("serve", help="the web page and HTTP API")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=_port, default=8000)
    v.add_argument("--model", action="append", help=MODEL_HELP + "; repeat it to serve several (the first is the "
                   "default, a request picks another by name: GET /v1/models)")
    v.add_argument("--max-concurrent", type=_ranged(int, 1, 1024, "a whole number from 1 to 1024"), default=32, metavar="N",
                   help="requests written at once, their lines sampled together (default 32)")
    v.add_argument("--queue-size", type=_ranged(int, 0, 100_000, "a whole number from 0 to 100000"), default=64, metavar="N",
                   help="requests that may wait beyond those; more are answered 503 (default 64)")
    v.add_argument("--timeout", type=_ranged(float, 0.1, 86_400, "a time limit from 0.1 to 86400 seconds"), default=60.0, metavar="S",
                   help="each request's time limit, waiting included; past it 504 (default 60)")
    v.add_argument("--tune-minutes", type=_ranged(float, 0.1, 1440, "a number of minutes from 0.1 to 1440"),
                   default=3.0, metavar="M", help="time limit of a \"learn my hand\" job (one runs at a time; default 3)")
    v.set_defaults(func=_serve)

    from .tune import PARTS, TuneConfig
    tu = sub.add_parser("tune", help="adapt the model to your own handwriting samples (a small file for --model)")
    tu.add_argument("--samples", required=True, metavar="FILE_OR_FOLDER",
                    help="your samples: a JSON or InkML file (docs/samples.md) or a folder of them; 3-10 sentences, "
                         "the last held out to stop at the best step")
    tu.add_argument("--out", required=True, metavar="FILE", help="the tuned model file to write (e.g. me.pt)")
    tu.add_argument("--model", help=MODEL_HELP + " (the base)")
    tu.add_argument("--steps", type=_ranged(int, 1, 100_000, "a whole number of steps from 1"),
                    default=TuneConfig.max_steps, help=f"at most this many steps (default {TuneConfig.max_steps})")
    tu.add_argument("--minutes", type=_ranged(float, 0.01, 1440, "a number of minutes from 0.01 to 1440"),
                    default=TuneConfig.max_minutes, help=f"time limit (default {TuneConfig.max_minutes:g})")
    tu.add_argument("--lr", type=_ranged(float, 1e-9, 1.0, "a learning rate from 1e-9 to 1"), default=TuneConfig.lr)
    tu.add_argument("--patience", type=_ranged(int, 0, 100_000, "a whole number from 0"), default=TuneConfig.patience,
                    help=f"stop after this many evaluations without a better held-out line; 0: never "
                         f"(default {TuneConfig.patience})")
    tu.add_argument("--parts", choices=PARTS, default=TuneConfig.parts, help="which weights adapt (default all)")
    tu.add_argument("--rank", type=_ranged(int, 0, 4096, "a whole number from 0 (the whole change) to 4096"),
                    default=TuneConfig.rank, help=f"rank of each weight matrix's change in the file (default {TuneConfig.rank})")
    tu.add_argument("--strength", type=_ranged(float, 0.01, 1.0, "a share from 0.01 to 1"), default=TuneConfig.strength,
                    help=f"the share of the tuned change kept: 1 as tuned, 0.5 half way to the base model, more "
                         f"legible (default {TuneConfig.strength:g})")
    tu.add_argument("--primed", action=argparse.BooleanOptionalAction, default=TuneConfig.primed,
                    help="also learn each sentence as the continuation of another, as a primed model writes it: "
                         "with 2-4 sentences of one person, the tuned and primed hand is found by the style encoder "
                         "more often (docs/measurements.md); on by default, --no-primed for sentences of several "
                         "writers")
    tu.add_argument("--seed", type=_ranged(int, 0, 2**31 - 1, "a whole number from 0"), default=0)
    tu.add_argument("-q", "--quiet", action="store_true")
    tu.set_defaults(func=_tune)

    m = sub.add_parser("models", help="list the shipped models")
    m.set_defaults(func=_models)

    t = sub.add_parser("train", help="train the synthesis network on IAM-OnDB and/or captured samples")
    t.add_argument("--iam", help="folder with lineStrokes-all.tar.gz and ascii-all.tar.gz (or unpacked)")
    t.add_argument("--unipen", help="unipen-train_r01_v07.tar.xz or its unpacked folder (mixed with --iam)")
    _share_arg(t, TC)
    _characters_arg(t)
    t.add_argument("--samples", action="append", default=[], help="a JSON sample file or folder (repeatable)")
    t.add_argument("--init", help="warm-start from a model (a shipped name such as lstm, or a file); "
                                  "its network size is kept and its alphabet grows to the data's")
    t.add_argument("--lr-warmup", type=int, default=TC.lr_warmup, help=f"linear warm-up steps of the learning rate (default {TC.lr_warmup})")
    t.add_argument("--out", default="runs/train", help="folder for checkpoints, samples and plots")
    _run_args(t, TC, "validation NLL, sample picture")
    t.add_argument("--arch", choices=families(), default=DEFAULT_ARCH, help=f"the model family (default {DEFAULT_ARCH})")
    t.add_argument("--config", choices=["full", "cpu", "small", "tiny"], default="full",
                   help="the family's size preset (cpu: the transformer's size for training on a CPU)")
    t.add_argument("--batch-size", type=int, default=TC.batch_size)
    t.add_argument("--attention-warmup", type=int, default=TC.attention_warmup,
                   help=f"steps of guided attention (default {TC.attention_warmup}: off)")
    t.add_argument("--attention-floor", type=float, default=TC.attention_floor,
                   help="the transformer's guided-attention weight after the warm-up (default 0: off)")
    t.add_argument("--no-bf16", action="store_true",
                   help="train in float32 (the default where the CPU has no bfloat16 arithmetic)")
    t.set_defaults(func=_train)

    c = sub.add_parser("corpus", help="statistics of the training corpus")
    c.add_argument("--iam", help="folder with the IAM-OnDB archives")
    c.add_argument("--unipen", help="unipen-train_r01_v07.tar.xz or its unpacked folder")
    _characters_arg(c)
    c.add_argument("--samples", action="append", default=[])
    c.add_argument("--cache-dir")
    c.add_argument("--json", action="store_true")
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=_corpus)

    e = sub.add_parser("eval", help="quality report: NLL, legibility, completion, baseline drift")
    e.add_argument("--model", help=MODEL_HELP)
    e.add_argument("--iam", help="IAM-OnDB folder (for validation NLL and real-line comparisons)")
    e.add_argument("--out", default="eval", help="report folder")
    e.add_argument("--texts", type=int, default=200)
    e.add_argument("--bias", type=float, default=SamplingOptions.bias)
    e.add_argument("--seed", type=int, default=SamplingOptions.seed)
    e.add_argument("--recognizer", help="recogniser weights (default: the shipped one)")
    e.add_argument("--hard", type=int, help="how many of the hard-text set to write (default: all)")
    e.add_argument("--forms", type=int, default=40, help="held-out forms for writer retrieval (0: skip)")
    e.add_argument("--style-encoder", help="style encoder weights (default: the shipped one)")
    e.add_argument("--no-judge", action="store_true", help="skip Tesseract, the independent reader")
    e.add_argument("--hard-like", metavar="MODEL", help="only the hard texts that MODEL can write too "
                                                         "(to compare models with different alphabets)")
    e.add_argument("--no-proofread", action="store_true",
                   help="sample without the proofreading pass (write's default has it: the recogniser then "
                        "chose, so Tesseract is the independent reader)")
    e.add_argument("--quick", action="store_true", help="a small run for development (a few minutes)")
    e.add_argument("-q", "--quiet", action="store_true")
    e.set_defaults(func=_eval)

    r = sub.add_parser("recognizer", help="train the online handwriting recogniser that judges legibility")
    r.add_argument("--iam", required=True, help="IAM-OnDB folder (only its training forms are used)")
    r.add_argument("--unipen", help="unipen-train_r01_v07.tar.xz or its unpacked folder (its training writers "
                                    "join; characters as train --unipen learns them)")
    _share_arg(r, RTC)
    r.add_argument("--init", help="warm-start from a recogniser file (shipped: the shipped one); its size is "
                                  "kept and its alphabet grows to the data's")
    r.add_argument("--out", default="runs/recognizer", help="folder for checkpoint.pt and recognizer.pt")
    r.add_argument("--config", choices=["full", "tiny"], default="full")
    _run_args(r, RTC, "validation CER")
    r.add_argument("--batch-size", type=int, default=RTC.batch_size)
    r.add_argument("--no-bf16", action="store_true",
                   help="train in float32 (the default where the CPU has no bfloat16 arithmetic)")
    r.set_defaults(func=_recognizer)

    from .style_encoder import StyleEncoderTrainConfig as STC
    y = sub.add_parser("style-encoder", help="train the contrastive style encoder that judges style fidelity (writer retrieval)")
    y.add_argument("--iam", required=True, help="IAM-OnDB folder (only its training forms are used)")
    y.add_argument("--out", default="runs/style", help="folder for checkpoint.pt and style_encoder.pt")
    y.add_argument("--config", choices=["full", "tiny"], default="full")
    _run_args(y, STC, "validation retrieval")
    y.add_argument("--forms", type=int, default=STC.forms, help=f"forms per step (default {STC.forms})")
    y.add_argument("--lines-per-form", type=int, default=STC.lines_per_form, help=f"lines of each form per step (default {STC.lines_per_form})")
    y.add_argument("--temperature", type=float, default=STC.temperature, help="of the contrastive loss")
    y.add_argument("--bf16", action="store_true", help="bfloat16 autocast (slower on CPUs without AMX)")
    y.set_defaults(func=_style_encoder)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except HandsynthError as e:
        print(f"handsynth: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("handsynth: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
