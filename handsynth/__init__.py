"""handsynth: typed text in, believable handwriting out.

    import handsynth
    hw = handsynth.load_model()                  # the shipped model: "lstm", or a path to a model file
    drawing = hw.write("Dear Ada,\\nthank you!", style="s03", bias=2.0, seed=1)
    drawing.save("note.png")                     # .png .svg .pdf .gcode .inkml .gif .webp
    png_bytes, svg_text = drawing.to_png(), drawing.to_svg()
    drawing.strokes                              # list of (n, 2) arrays, page pixels
    drawing.words                                # each word with its strokes
    again = hw.redo_word(drawing, 2, seed=5)     # word 2 written anew, the rest of the page kept

This module is the index of the public API; the flow itself reads from the file names:
``writer`` (the facade) -> ``sampling`` (options, the policy) -> ``models/<family>`` (the
networks) -> ``layout`` -> ``render``; ``data``, ``loop`` and ``train`` for training,
``evaluate`` and ``recognizer`` for the measures, ``checkpoint`` for files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import HandsynthError

if TYPE_CHECKING:   # the heavy names load on first use (__getattr__), so that importing a light
    from .drawing import Drawing                    # part (the vpype plugin) does not load torch
    from .layout import PageOptions
    from .render import Ink
    from .sampling import SamplingOptions
    from .styles import Style
    from .writer import MAX_WRITE_CHARS, Handwriter

__all__ = ["load_model", "available_models", "available_styles", "Handwriter", "HandsynthError", "SamplingOptions",
           "PageOptions", "Ink", "Drawing", "Style", "ModelInfo", "MAX_WRITE_CHARS"]


def __getattr__(name: str):
    """The public names that need torch, matplotlib or the style bank, imported when first asked
    for (PEP 562); and submodules by attribute (``handsynth.styles``), as when this module
    imported them all."""
    if name in ("Handwriter", "MAX_WRITE_CHARS"):
        from . import writer as module
    elif name == "SamplingOptions":
        from . import sampling as module
    elif name == "PageOptions":
        from . import layout as module
    elif name == "Ink":
        from . import render as module
    elif name == "Drawing":
        from . import drawing as module
    elif name == "Style":
        from . import styles as module
    elif name == "Alphabet":
        from . import alphabet as module
    elif not name.startswith("_") and (Path(__file__).with_name(name + ".py").exists()
                                       or Path(__file__).with_name(name).joinpath("__init__.py").exists()):
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"Alphabet"})


WEIGHTS = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    arch: str
    path: Path
    description: str


# the shipped models, by name; the first is the default
MODELS = {m.name: m for m in [
    ModelInfo("lstm", "graves", WEIGHTS / "default.pt",
              "Graves (2013) LSTM, 3 x 400 with an attention window; IAM-OnDB, 10,000 steps"),
    ModelInfo("lstm-mix", "graves", WEIGHTS / "lstm-mix.pt",
              "the same LSTM trained on with UNIPEN (4,000 steps at 30% of its lines, then 2,000 at 15%; the "
              "two runs' weights averaged): digits, capitals and the symbols $ @ # = < > ^ _ { } | ~"),
]}
DEFAULT_MODEL = next(iter(MODELS.values())).path


def available_models() -> list[ModelInfo]:
    """The shipped models (name, family, file, description) whose files are installed."""
    return [m for m in MODELS.values() if m.path.exists()]


def available_styles() -> list[Style]:
    """The built-in styles (id, name, the text of their priming sample)."""
    from .styles import builtin_styles
    return list(builtin_styles())


def model_file(model: str | os.PathLike | None = None) -> tuple[Path, str | None]:
    """Where a model is: a shipped name (``"lstm"``; None: the default) -> (its file, its name),
    or a model file path -> (the path, None)."""
    if model is None or str(model) in MODELS:
        info = MODELS[str(model)] if model is not None else next(iter(MODELS.values()))
        return info.path, info.name
    if not isinstance(model, (str, os.PathLike)):
        raise HandsynthError(f"model must be a shipped model's name or a file path (got {type(model).__name__})")
    if not str(model).strip() or "\0" in str(model):
        raise HandsynthError(f"model {str(model)!r}: give a shipped model's name ({', '.join(MODELS)}) or a model file")
    path = Path(model)
    if not path.exists():
        raise HandsynthError(f"{model}: no such model file, and not a shipped model name "
                             f"(known: {', '.join(MODELS)})")
    return path, None


def load_model(model: str | os.PathLike | None = None) -> Handwriter:
    """A shipped model by name (``"lstm"``; default: the first of ``available_models()``), or a
    model file: weights exported by ``handsynth train``, one of its checkpoints, or a model tuned
    to a person's hand by ``handsynth tune``."""
    import numpy as np

    from . import checkpoint
    from .alphabet import Alphabet
    from .validate import check_model_file, check_model_meta
    from .writer import Handwriter

    path, name = model_file(model)
    check_model_file(path)   # truncated, empty, not a PyTorch file: said before the reader tries
    ck = checkpoint.read(path)
    if ck.get("kind") == "handsynth-tuned":   # a change to a base model (handsynth tune)
        from .tune import apply_tuned
        return apply_tuned(ck, path, load_model, list(MODELS))
    net, meta = checkpoint.from_dict(ck, path)
    chars, mean, std = check_model_meta(meta, net, path)   # alphabet, statistics, finite weights
    return Handwriter(net, Alphabet(chars), np.array(mean, np.float32), np.array(std, np.float32), path, name)
