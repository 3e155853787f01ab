"""What this CPU does fast, and how many threads to compute with: choices that change speed by
a large factor.

bfloat16 matmuls run at up to twice float32's rate on CPUs with bfloat16 arithmetic (x86
AVX512-BF16 or AMX), and several times slower than float32 elsewhere (measured on an AVX2 AMD
EPYC: a 10-line page 22 s in bfloat16 against 2.8 s in float32 on one thread; a training step
8 s against 1 s for a float32 reference). So sampling and training pick bfloat16 only where the
CPU has it, unless told otherwise (``SamplingOptions.bf16``, ``TrainConfig.bf16``, or
``HANDSYNTH_BF16=0|1``). The choice follows the CPU, not a timing, so the same seed gives the
same drawing on a given machine.

Threads (``configure_threads``, the one policy the CLI, the server and training call). A page
is a few thousand pen steps, each a handful of small matmuls; with two threads every one of them
ends at a barrier where both threads meet. On a quiet machine two threads are faster than one
(issue 18: 0.14-0.16 s against 0.19-0.20 s a page), but when another process holds a core the
barrier waits, at every matmul, for a thread the scheduler has put aside: 0.3-0.45 s a page
with one core busy, 0.26-1.54 s for two writers at once (one thread each: 0.13-0.22 s), 12-16 s
on a loaded host while OpenMP spin-waits. So:

- the count: writing takes the cores that are free now (the physical cores this process may
  use, less what other processes kept busy on them, measured from ``/proc/stat`` since the last
  look), at least one; training takes the cores and never the load, so that a seed gives the
  same weights on a machine whatever else runs (the sums of a step depend on how many threads
  share them); ``HANDSYNTH_THREADS`` (or ``OMP_NUM_THREADS``) overrides both;
- the wait: ``prepare_openmp`` makes OpenMP's idle threads sleep at once rather than spin
  (``OMP_WAIT_POLICY=PASSIVE``, and ``KMP_BLOCKTIME=0`` for Intel's runtime), which only works
  before torch is imported (``python -m handsynth`` calls it first). A setting of the user's own
  is kept.
"""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> str:
    """The CPU's feature flags line (Linux: /proc/cpuinfo), or the processor name elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def fast_bf16() -> bool:
    """Whether bfloat16 matmuls are fast here: ``HANDSYNTH_BF16`` if set, else whether the CPU
    has bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    forced = os.environ.get("HANDSYNTH_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    flags = cpu_flags().split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(choice: bool | None) -> bool:
    """An option's bfloat16 choice: as given, or ``fast_bf16()`` when None (the default)."""
    return fast_bf16() if choice is None else bool(choice)


# threads ---------------------------------------------------------------------------------------------
THREADS_ENV = "HANDSYNTH_THREADS"
MAX_THREADS = 1024
FREE_SHARE = 0.75      # a thread needs this much of a core free (else it waits at every barrier)
REUSE_S = 0.1          # a look at the machine this recent stands (no new window, no wait)
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def prepare_openmp() -> bool:
    """Set OpenMP's wait policy (``OPENMP_DEFAULTS``) for torch's OpenMP runtime, which reads it
    once, when torch is imported; whether it did. It does not where a wait setting of the user's
    own (any of ``WAIT_SETTINGS``) is in the environment (kept as it is), nor once torch is
    imported (too late). Child processes inherit the setting."""
    if any(k in os.environ for k in WAIT_SETTINGS) or "torch" in sys.modules:
        return False
    os.environ.update(OPENMP_DEFAULTS)
    return True


def allowed_cpus() -> list[int]:
    """The logical CPUs this process may run on (its affinity mask)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # not Linux
        return list(range(os.cpu_count() or 1))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _cpu_quota() -> float | None:
    """The cgroup's CPU limit in cores (a container's ``--cpus``), or None when unlimited."""
    try:
        quota, period = _read("/sys/fs/cgroup/cpu.max").split()[:2]   # cgroup v2
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:   # cgroup v1
        quota, period = int(_read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")), int(_read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def cores() -> int:
    """Physical cores this process may use: the affinity mask's CPUs counted once per core
    (hyper-threads share one), within the cgroup's CPU limit; at least 1."""
    cpus = allowed_cpus()
    seen = set()
    for c in cpus:
        topo = f"/sys/devices/system/cpu/cpu{c}/topology/"
        try:
            seen.add((_read(topo + "physical_package_id"), _read(topo + "core_id")))
        except OSError:
            seen.add(("cpu", str(c)))
    n = len(seen) or len(cpus)
    quota = _cpu_quota()
    if quota is not None:
        n = min(n, math.ceil(quota - 1e-9))
    return max(1, n)


def _cpu_times(cpus: list[int]) -> tuple[float, float] | None:
    """(busy, total) seconds of ``cpus`` since boot from /proc/stat, or None where unreadable."""
    want = {f"cpu{c}" for c in cpus}
    busy = total = 0
    try:
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] in want:
                    v = [int(x) for x in parts[1:9]]   # user nice system idle iowait irq softirq steal
                    busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
                    total += sum(v)
    except (OSError, ValueError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (busy / tick, total / tick) if total else None


def _own_cpu() -> float:
    """CPU seconds this process (all its threads) has used."""
    t = os.times()
    return t.user + t.system


_look: dict = {}


def _looked() -> tuple[float, tuple[float, float] | None, float]:
    return time.monotonic(), _cpu_times(allowed_cpus()), _own_cpu()


def busy_elsewhere(min_window: float = 0.05) -> float | None:
    """How many of this process's CPUs other processes kept busy since the last call (the first
    call: since this module was imported), over at least ``min_window`` seconds (it waits for
    the rest); None where /proc/stat cannot say (not Linux)."""
    t0, then, own0 = _look.get("last") or _looked()
    if time.monotonic() - t0 < min_window:
        time.sleep(min_window - (time.monotonic() - t0))
    _, now, own1 = _look["last"] = _looked()
    if then is None or now is None:
        return None
    total = now[1] - then[1]
    if total <= 0:
        return None
    wall = total / len(allowed_cpus())          # seconds the CPUs ran (the clock ticks' view of t1 - t0)
    busy = (now[0] - then[0]) - (own1 - own0)   # others' share: all the busy time less our own
    return max(0.0, busy / wall)


def thread_override() -> int | None:
    """The thread count the environment sets (``HANDSYNTH_THREADS``, else ``OMP_NUM_THREADS``),
    or None; a clear error for a bad ``HANDSYNTH_THREADS``."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw and raw.lower() != "auto":
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
            from .errors import HandsynthError
            raise HandsynthError(f"{THREADS_ENV}={raw!r}: give a whole number of threads from 1 to {MAX_THREADS}, "
                                 "or auto")
        return int(raw)
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(omp) if omp.isdigit() and 1 <= int(omp) <= MAX_THREADS else None


@dataclass(frozen=True)
class Threads:
    """A thread choice: ``n`` threads, and why (for logs and benchmarks)."""
    n: int
    why: str

    def __int__(self) -> int:
        return self.n


WORKS = ("write", "serve", "train")


def choose_threads(work: str = "write", workers: int = 1) -> Threads:
    """The policy (see the module's notes): the thread count for ``work`` (write: a page now;
    serve: each of ``workers`` requests at once; train: each of ``workers`` processes of a run
    on this machine)."""
    if work not in WORKS:
        raise ValueError(f"work {work!r}: one of {', '.join(WORKS)}")
    workers = max(1, int(workers))
    forced = thread_override()
    if forced is not None:
        return Threads(forced, "set by " + (THREADS_ENV if os.environ.get(THREADS_ENV, "").strip().isdigit()
                                            else "OMP_NUM_THREADS"))
    n = cores()
    if work == "train":
        return Threads(max(1, n // workers), f"{n} cores for {workers} process(es), never the load")
    last = _look.get((work, workers))
    if last is not None and time.monotonic() - _look["last"][0] < REUSE_S:
        return last   # looked a moment ago (a server's requests in a burst): no new look, no wait
    busy = busy_elsewhere()
    if busy is None:   # no /proc/stat: the load average, less this process itself
        try:
            busy = max(0.0, os.getloadavg()[0] - 1)
        except (AttributeError, OSError):
            busy = 0.0
    free = max(0.0, min(n, len(allowed_cpus()) - busy))   # idle CPUs, at most our cores (a quota)
    k = max(1, min(n, int((free + 1 - FREE_SHARE) // workers)))
    _look[(work, workers)] = choice = Threads(k, f"{n} cores, {busy:.1f} busy elsewhere, {workers} worker(s)")
    return choice


def configure_threads(work: str = "write", workers: int = 1) -> Threads:
    """Choose (``choose_threads``) and set torch's thread count for ``work``; returns the choice.
    Cheap enough to call before every page (it looks at /proc/stat)."""
    import torch

    choice = choose_threads(work, workers)
    if torch.get_num_threads() != choice.n:
        torch.set_num_threads(choice.n)
    return choice


_look["last"] = _looked()   # the first window starts at import
