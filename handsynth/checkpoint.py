"""Files: atomic writes, training checkpoints, exported model files, and the registry of model
families.

Every model file names its family in an ``arch`` entry (files written before there were two
families have none and are ``graves``). A family is a class implementing
``handsynth.models.SynthesisModel``; the built-in ones live in ``handsynth/models/<arch>/`` and
are found by that name (the package exports the class as ``Model``), others are added with
``register``. A model file carries everything needed to use it: ``arch``, ``config``,
``alphabet``, the normalisation statistics (``offset_mean``, ``offset_std``, ``norm``) and the
weights (``model``), so a file alone is loadable.
"""
from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HandsynthError

DEFAULT_ARCH = "graves"   # files without an ``arch`` entry
EXPORT_KEYS = ("arch", "config", "alphabet", "offset_mean", "offset_std", "norm", "step")
_FAMILIES: dict[str, type] = {}


# atomic writes -------------------------------------------------------------------------------------
@contextmanager
def atomic_target(path) -> Iterator[Path]:
    """A temporary file next to ``path`` to write to; renamed onto ``path`` when the block
    succeeds and removed when it fails, so a failure or a killed process never leaves a
    half-written file (and never touches an existing one)."""
    path = Path(path)
    if path.is_dir():
        raise HandsynthError(f"{path} is a folder: give a file name such as {path / 'out.png'}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    except FileNotFoundError:
        raise HandsynthError(f"{path}: the folder {path.parent} does not exist") from None
    except OSError as e:
        raise HandsynthError(f"{path}: cannot write here ({e.strerror})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise HandsynthError(f"{path}: cannot write the file ({e.strerror})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_target``)."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


def write_all_atomic(files) -> None:
    """Write ``(path, data)`` pairs all or none: every file goes to its temporary first, and
    only when all are written are they renamed into place (a full disk leaves the old files)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        for path, data in files:
            stack.enter_context(atomic_target(path)).write_bytes(data)


def save(obj, path) -> None:
    """``torch.save`` atomically: a run killed while saving keeps its last good checkpoint."""
    import torch

    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def export(ckpt: dict, path, keys=EXPORT_KEYS, dtype=None) -> None:
    """The shippable part of a training checkpoint: ``keys`` (those present) and the weights,
    as float16 unless ``dtype`` says otherwise."""
    import torch

    keep = {k: ckpt[k] for k in keys if k in ckpt}
    keep["model"] = {k: v.to(dtype or torch.float16) for k, v in ckpt["model"].items()}
    save(keep, path)


def read(path, what: str = "handsynth model") -> dict:
    """A file written by ``save`` or ``export``, loaded as plain tensors and containers
    (``weights_only``); a clear ``HandsynthError`` when it is missing or not such a file."""
    import torch

    path = Path(path)
    if not path.exists():
        raise HandsynthError(f"{path}: no such {what} file")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise HandsynthError(f"{path}: not a readable {what} file ({e.__class__.__name__})") from None
    if not isinstance(ck, dict) or "model" not in ck:
        raise HandsynthError(f"{path}: not a {what} file")
    return ck


def read_training(path, alphabet: str, config: dict, what: str = "handsynth") -> dict:
    """A training checkpoint to resume from, checked against this run's alphabet and network
    config; a clear ``HandsynthError`` otherwise."""
    path = Path(path)
    if not path.exists():
        raise HandsynthError(f"{path}: no checkpoint to resume from")
    ck = read(path, f"{what} checkpoint")
    if "optimizer" not in ck:
        raise HandsynthError(f"{path}: not a {what} training checkpoint")
    if ck["alphabet"] != alphabet or ck["config"] != config:
        raise HandsynthError(f"{path}: the checkpoint's network or alphabet differs from this run's "
                             "(same --config and data needed to resume)")
    return ck


# the family registry -------------------------------------------------------------------------------
def register(cls: type) -> type:
    """Add a model family (a ``SynthesisModel`` subclass with an ``arch`` name); usable as a
    class decorator. The built-in families need no registering: ``family`` finds them."""
    _FAMILIES[cls.arch] = cls
    return cls


def family(arch: str) -> type:
    """The model class of a family: a registered one, else ``handsynth.models.<arch>.Model``."""
    if arch not in _FAMILIES:
        try:
            mod = importlib.import_module(f"handsynth.models.{arch}")
        except ModuleNotFoundError:
            mod = None
        if mod is None or not hasattr(mod, "Model"):
            raise HandsynthError(f"unknown model family {arch!r} (known: {', '.join(families())})")
        _FAMILIES[arch] = mod.Model
    return _FAMILIES[arch]


def families() -> list[str]:
    """The families known here: the built-in folders whose package exports ``Model`` (a family
    still being built has none yet) and any registered ones."""
    here = Path(__file__).with_name("models")
    found = {p.name for p in here.iterdir() if (p / "__init__.py").exists()
             and hasattr(importlib.import_module(f"handsynth.models.{p.name}"), "Model")}
    return sorted(found | set(_FAMILIES))


def build(arch: str, config: dict):
    """A fresh network of a family from its config dict."""
    cls = family(arch)
    return cls(cls.Config.from_dict(config))


def load(path):
    """A model (in eval mode, float32) from a checkpoint or exported file, with the file's
    metadata dict."""
    ck = read(path)
    arch = ck.get("arch", DEFAULT_ARCH)
    try:
        model = build(arch, ck["config"])
        model.load_state_dict({k: v.float() for k, v in ck["model"].items()})
    except HandsynthError:
        raise
    except Exception as e:
        raise HandsynthError(f"{path}: not a handsynth model file ({e.__class__.__name__})") from None
    model.eval()
    ck.setdefault("arch", arch)
    return model, ck
