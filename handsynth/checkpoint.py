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
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import HandsynthError

DEFAULT_ARCH = "graves"   # files without an ``arch`` entry
EXPORT_KEYS = ("arch", "config", "alphabet", "offset_mean", "offset_std", "norm", "step")
_FAMILIES: dict[str, type] = {}


# atomic writes -------------------------------------------------------------------------------------
# A temporary file is ".NAME." plus tempfile.mkstemp's 8 random characters; code before mkstemp
# wrote ".NAME.tmpPID". A process killed while writing leaves one behind (see remove_temp_files).
TEMP_SUFFIX = re.compile(r"[a-z0-9_]{8}|tmp[0-9]+")
_deferred = threading.local()   # the renames an open ``together()`` block holds back


@contextmanager
def atomic_target(path) -> Iterator[Path]:
    """A temporary file next to ``path`` to write to; renamed onto ``path`` when the block
    succeeds (inside ``together()``: when that block succeeds) and removed when it fails, so a
    failure never leaves a half-written file (and never touches an existing one). A killed
    process leaves the temporary file (``.NAME.XXXXXXXX``), never a half-written ``path``."""
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
    pending = getattr(_deferred, "pending", None)
    handed_over = False
    try:
        yield Path(tmp)
        if pending is not None:   # together() renames it with the others
            pending.append((Path(tmp), path))
            handed_over = True
            return
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise HandsynthError(f"{path}: cannot write the file ({e.strerror})") from None
    finally:
        if not handed_over:
            Path(tmp).unlink(missing_ok=True)


@contextmanager
def together() -> Iterator[None]:
    """Write several files as one: inside the block every ``atomic_target`` (so ``write_atomic``,
    ``save`` and ``export``) writes its temporary file but renames nothing; when the block
    succeeds they are renamed into place in the order written (a few microseconds), and when it
    fails none is (a full disk leaves every old file). A nested block joins the outer one."""
    if getattr(_deferred, "pending", None) is not None:
        yield
        return
    pending: list[tuple[Path, Path]] = []
    _deferred.pending = pending
    try:
        yield
        _deferred.pending = None
        while pending:
            tmp, path = pending[0]
            try:
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except OSError as e:
                raise HandsynthError(f"{path}: cannot write the file ({e.strerror})") from None
            pending.pop(0)
    finally:
        _deferred.pending = None
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


def temp_files(folder, owner: Callable[[str], bool]) -> list[Path]:
    """The temporary files ``atomic_target`` left in ``folder`` (a killed write) for the file
    names ``owner`` accepts: regular files named ``.NAME.XXXXXXXX`` (mkstemp's 8 characters) or
    ``.NAME.tmpPID``, nothing else."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for e in entries:
        if not e.name.startswith(".") or "." not in e.name[1:]:
            continue
        name, _, suffix = e.name[1:].rpartition(".")
        if not name or not TEMP_SUFFIX.fullmatch(suffix) or not owner(name):
            continue
        try:
            if stat.S_ISREG(e.stat(follow_symlinks=False).st_mode):
                found.append(Path(e.path))
        except OSError:
            continue
    return sorted(found)


def remove_temp_files(folder, owner: Callable[[str], bool]) -> list[Path]:
    """Remove ``temp_files(folder, owner)``; returns those removed. Only safe while no other
    process writes those files (the training loop holds ``FolderLock`` first)."""
    removed = []
    for p in temp_files(folder, owner):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise HandsynthError(f"{p}: cannot remove this leftover temporary file ({e.strerror})") from None
    return removed


class FolderLock:
    """An exclusive lock on a folder (``flock`` on the folder itself, so no lock file), held by
    one process at a time and released when it closes or dies (SIGKILL included). Where the
    system has no ``flock`` or the file system refuses it, the lock is a no-op."""

    def __init__(self, folder, what: str = "a run"):
        self.folder, self.fd = Path(folder), None
        try:
            import fcntl
        except ImportError:   # pragma: no cover (Windows)
            return
        try:
            fd = os.open(self.folder, os.O_RDONLY)
        except OSError as e:
            raise HandsynthError(f"{self.folder}: cannot open the folder ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise HandsynthError(f"{self.folder} is in use by another {what} (a second process writing the "
                                 "same folder would spoil its files): wait for it, or choose another --out") from None
        except OSError:   # a file system without locks
            os.close(fd)
            return
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor releases the lock
            self.fd = None

    def __del__(self):
        self.close()


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
    save(exported(ckpt, keys, dtype), path)


def exported(ckpt: dict, keys=EXPORT_KEYS, dtype=None) -> dict:
    """What ``export`` writes: ``keys`` (those present) and the weights, float16 by default."""
    import torch

    keep = {k: ckpt[k] for k in keys if k in ckpt}
    keep["model"] = {k: v.to(dtype or torch.float16) for k, v in ckpt["model"].items()}
    return keep


def average(paths, weights=None) -> dict:
    """The weighted mean of model files of one family, network config and normalisation (a
    "model soup": runs warm-started from one another stay in one basin, so their mean is a
    model too), as an exported file's dict (float16). The alphabets may differ when one holds
    all the others: a model lacking some characters joins on the largest alphabet through its
    family's ``adopt``, and those characters' weights are the mean over the models that have
    them. A clear ``HandsynthError`` for files that cannot be averaged."""
    paths = [Path(p) for p in paths]
    weights = [1.0] * len(paths) if weights is None else [float(w) for w in weights]
    if not paths or len(weights) != len(paths) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise HandsynthError("averaging needs one or more models and one weight each, non-negative, not all zero")
    files = [read(p) for p in paths]
    target = max(files, key=lambda f: len(f["alphabet"]))
    arch, chars = target.get("arch", DEFAULT_ARCH), target["alphabet"]

    def shape(f):   # all that must agree besides the alphabet
        cfg = {k: v for k, v in f["config"].items() if k != "alphabet_size"}
        return f.get("arch", DEFAULT_ARCH), cfg, f.get("offset_mean"), f.get("offset_std"), f.get("norm")

    for p, f in zip(paths, files):
        if shape(f) != shape(target):
            raise HandsynthError(f"{p}: another family, network or normalisation than {paths[files.index(target)]}; "
                                 "only models trained on from one another can be averaged")
        if not set(f["alphabet"]) <= set(chars):
            raise HandsynthError(f"{p}: its alphabet is not part of the largest one; no model holds all the characters")
    total = sum(w for f, w in zip(files, weights) if f["alphabet"] == chars)
    if total <= 0:
        raise HandsynthError("the models with the largest alphabet all have weight 0")
    full = {k: sum(w / total * f["model"][k].float() for f, w in zip(files, weights) if f["alphabet"] == chars)
            for k in target["model"]}
    states = []
    for f in files:
        if f["alphabet"] == chars:
            states.append({k: v.float() for k, v in f["model"].items()})
        else:
            net = build(arch, target["config"])
            net.adopt(f["model"], f["alphabet"], chars, fill=full)
            states.append(net.state_dict())
    mean = {k: sum(w / sum(weights) * s[k] for s, w in zip(states, weights)) for k in target["model"]}
    return exported({**target, "model": mean, "step": max(int(f.get("step") or 0) for f in files),
                     "averaged_from": [f"{p.name} x {w / sum(weights):.3f}" for p, w in zip(paths, weights)]},
                    EXPORT_KEYS + ("averaged_from",))


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


def read_bytes(data: bytes, what: str = "handsynth model") -> dict:
    """``read`` for a file's contents in memory (a tuned file a browser sends back): a whole zip
    archive of plain tensors and containers, or a clear ``HandsynthError``."""
    import io
    import zipfile

    import torch

    try:
        if not data.startswith(b"PK"):
            raise ValueError
        z = zipfile.ZipFile(io.BytesIO(data))
        # torch.save stores its members uncompressed: more than that is a zip bomb, refused unread
        if sum(i.file_size for i in z.infolist()) > 2 * len(data) + (64 << 10) or z.testzip() is not None:
            raise ValueError
        ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception:
        raise HandsynthError(f"not a readable {what} file (damaged or cut short?)") from None
    if not isinstance(ck, dict) or "model" not in ck:
        raise HandsynthError(f"not a {what} file")
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
    return from_dict(read(path), path)


def from_dict(ck: dict, path):
    """``load`` for a file already read (``read``)."""
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
