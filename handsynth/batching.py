"""Lines of concurrent writes sampled together: the server's batching across requests.

A pen step of the network costs about the same for one row as for dozens (one line alone: about
175 ms; 50 lines in one batch: about 14 ms a line, see docs/measurements.md), so requests that
arrive together are written together. Each request's ``Handwriter.write`` hands its lines to
``Batcher.sample`` (one call per chunk of ``writer.BATCH_LINES`` lines) and waits; one sampling
thread takes every waiting chunk that fits (at most ``max_lines`` lines and ``max_cells``
recorded numbers), samples them in one batch (``sampling.checked_groups``: bias, seed and style
may differ between them) and hands each caller its own lines. Chunks that arrive during a batch
wait for the next one, which starts as soon as the batch ends, so a long text (several chunks)
takes turns with short ones instead of holding the sampler.

Each caller's lines come out as they would alone; a caller's ``check`` (the time limit, the
client gone) ends its own lines only.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

from .hardware import configure_threads
from .models import SynthesisModel
from .sampling import CANDIDATES, Group, Line, Primer, SamplingOptions, checked_groups, same_but_style, same_primer

MAX_LINES = 64             # lines in one shared batch (each starts with CANDIDATES rows)
MAX_CELLS = 24_000_000     # rows x pen steps x text positions the batch records (float32: 96 MB)


@dataclass(eq=False)
class _Waiting:
    group: Group
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None


def _cells(groups: list[Group], steps_per_char: float) -> int:
    """The alignment table's size for a batch of these groups (``sampling.Tables.phi_all``)."""
    texts = [(len(t), len(g.primer.text) + 1 if g.primer is not None else 0) for g in groups for t in g.texts]
    if not texts:
        return 0
    cap = max(int(40 + steps_per_char * n) for n, _ in texts)
    width = max(n + p for n, p in texts) + 1
    return CANDIDATES * len(texts) * cap * width


class Batcher:
    """One sampling thread for a loaded model, shared by the threads that call ``sample``."""

    def __init__(self, model: SynthesisModel, alphabet, mean, std, max_lines: int = MAX_LINES,
                 max_cells: int = MAX_CELLS, read=None):
        if max_lines < 1:
            raise ValueError("max_lines must be >= 1")
        self.model, self.alphabet, self.mean, self.std = model, alphabet, mean, std
        self.max_lines, self.max_cells = max_lines, max_cells
        self.read = read   # the proofreader (recognizer.Reader) for groups that ask for it
        self._queue: deque[_Waiting] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0       # batches sampled
        self.lines = 0         # lines sampled in them
        self.largest = 0       # the most callers in one batch

    @property
    def waiting(self) -> int:
        with self._cv:
            return len(self._queue)

    def sample(self, texts: list[str], seeds: list[int], options: SamplingOptions, primer: Primer | None,
               check=None) -> list[Line]:
        """``sampling.sample_checked``'s lines, sampled in a batch with other callers' lines."""
        item = _Waiting(Group(list(texts), list(seeds), options, primer, check))
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="handsynth-batcher", daemon=True)
                self._thread.start()
            self._cv.notify()
        item.done.wait()
        if isinstance(item.result, BaseException):
            raise item.result
        return item.result

    def close(self) -> None:
        """Stop the sampling thread once the batches waiting are done."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()

    def _take(self) -> list[_Waiting]:
        """The next batch: the first waiting chunk, and every later one that fits and can share
        its batch (same options but bias and seed; the same style where the family cannot mix
        styles), in arrival order."""
        first = self._queue.popleft()
        taken, lines = [first], len(first.group.texts)
        spc = first.group.options.steps_per_char
        mixes = getattr(self.model, "mixes_styles", False)
        rest = deque()
        while self._queue:
            item = self._queue.popleft()
            g = item.group
            fits = (lines + len(g.texts) <= self.max_lines
                    and same_but_style(g.options, first.group.options)
                    and (mixes or same_primer(g.primer, first.group.primer))
                    and _cells([w.group for w in taken] + [g], spc) <= self.max_cells)
            if fits:
                taken.append(item)
                lines += len(g.texts)
            else:
                rest.append(item)
        self._queue = rest
        return taken

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                taken = self._take()
            try:
                configure_threads("serve")   # the cores free now (hardware.py): one sampling thread's share
                results = checked_groups(self.model, self.alphabet, self.mean, self.std, [w.group for w in taken],
                                         self.read)
            except BaseException as e:   # (a bug or out of memory: every caller hears of it, the thread goes on)
                results = [e] * len(taken)
            self.batches += 1
            self.lines += sum(len(w.group.texts) for w in taken)
            self.largest = max(self.largest, len(taken))
            for w, r in zip(taken, results):
                w.result = r
                w.done.set()

