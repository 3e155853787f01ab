"""Learning a person's hand on the server: ``POST /v1/tune`` (the web page's "learn my hand").

One tuning job runs at a time, in its own thread, within a time limit (``minutes``); a second
request while one runs is told the server is busy (503, with how long the running one has
left). The job's result, the tuned file (``tune.tuned_bytes``: the change to the server's model,
a few hundred KiB), is held in memory only until the browser fetches it, or for ``RESULT_TTL_S``
at most; the samples are dropped when the job ends. The browser keeps the file and sends it
back with each request to write in that hand (``tuned`` in ``POST /v1/write``), so the server
stores nothing it was not asked to.
"""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from ..errors import HandsynthError

MIN_SAMPLES = 3          # sentences: two to learn from and one held out to stop at the best step
MAX_SAMPLES = 10
STEPS = 60               # tuning steps (the CLI's default); the best held-out step is kept
MINUTES = 3.0            # a job's time limit
RESULT_TTL_S = 600       # a finished job is forgotten this long after it ends, fetched or not
HISTORY = 64             # held-out evaluations reported


@dataclass
class TuneJob:
    id: str
    samples: list                      # data.samples.Sample; dropped when the job ends
    max_steps: int
    created: float = field(default_factory=time.monotonic)
    state: str = "queued"              # queued, running, done, failed, cancelled
    step: int = 0
    history: list = field(default_factory=list)   # (step, held-out NLL per pen step)
    best_step: int = 0
    stopped: str = ""
    error: str = ""
    started: float | None = None
    finished: float | None = None
    result: bytes | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def status(self) -> dict:
        now = time.monotonic()
        elapsed = ((self.finished or now) - self.started) if self.started else 0.0
        out = {"id": self.id, "state": self.state, "step": self.step, "max_steps": self.max_steps,
               "elapsed_s": round(elapsed, 1), "held_out_nll": [[s, round(h, 4)] for s, h in self.history[-HISTORY:]]}
        if self.state == "done":
            out.update(best_step=self.best_step, stopped=self.stopped, bytes=len(self.result or b""),
                       model_url=f"/v1/tune/{self.id}/model")
        if self.error:
            out["error"] = self.error
        return out


class TuneJobs:
    """The server's tuning jobs: at most one queued or running, finished ones kept for
    ``ttl_s`` for their result."""

    def __init__(self, hw, minutes: float = MINUTES, steps: int = STEPS, ttl_s: float = RESULT_TTL_S):
        self.hw, self.minutes, self.steps, self.ttl_s = hw, minutes, steps, ttl_s
        self._jobs: dict[str, TuneJob] = {}
        self._active: TuneJob | None = None   # queued or running (a stopped one until its thread ends)
        self._lock = threading.Lock()
        self.finished = 0

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, j in self._jobs.items() if j.finished and now - j.finished > self.ttl_s]:
            del self._jobs[k]

    def running(self) -> TuneJob | None:
        return self._active

    def submit(self, samples: list) -> TuneJob:
        """Start tuning on ``samples`` (``data.samples.Sample``, checked already); a
        ``Busy`` error while another job runs."""
        from ..tune import TuneConfig, tune, tuned_bytes

        with self._lock:
            self._expire()
            busy = self._active
            if busy is not None:
                left = max(0.0, 60 * self.minutes - (time.monotonic() - (busy.started or busy.created)))
                raise Busy(f"the server is learning another hand (at most {left / 60:.1f} more minutes); "
                           f"try again then", left)
            job = TuneJob(secrets.token_urlsafe(12), list(samples), self.steps)
            self._jobs[job.id] = self._active = job
        config = TuneConfig(max_steps=self.steps, max_minutes=self.minutes)

        def progress(step, total, nll):
            job.step = step
            job.history.append((step, float(nll)))

        def run():
            job.state, job.started = "running", time.monotonic()
            try:
                tuned = tune(self.hw, job.samples, config, progress, stop=job.cancel.is_set)
                if job.cancel.is_set():
                    job.state = "cancelled"
                else:
                    job.result, job.best_step, job.stopped = tuned_bytes(tuned), tuned.best_step, tuned.stopped
                    job.state = "done"
            except HandsynthError as e:
                job.state, job.error = "failed", str(e).splitlines()[0]
            except Exception as e:   # reported in the job's status, never a crash of the server
                job.state, job.error = "failed", f"internal error ({e.__class__.__name__}); please report it"
            finally:
                job.samples = []
                with self._lock:
                    job.finished = time.monotonic()
                    self.finished += 1
                    self._active = None

        threading.Thread(target=run, name=f"handsynth-tune-{job.id[:6]}", daemon=True).start()
        return job

    def get(self, job_id: str) -> TuneJob | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def take(self, job_id: str) -> TuneJob | None:
        """The job, forgotten from now on (its result has been fetched or it was cancelled)."""
        with self._lock:
            return self._jobs.pop(job_id, None)


class Busy(HandsynthError):
    """Another tuning job is running (``retry_after`` seconds at most)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after
