"""Load test of the HTTP API: N concurrent clients on loopback send a fixed number of
``POST /v1/write`` requests; reports throughput, latency percentiles, errors (by status) and the
server process's memory (resident set: at start, and its peak, from /proc/PID/status VmHWM).

    python benchmarks/serve_load.py --clients 4 --requests 24 --text "hello"
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 ...   # an already running server

By default it starts its own server (a subprocess, the shipped model) on a free loopback port.
Every request has its own seed, so none is answered from the server's drawing cache.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx

SERVER = """
import sys, uvicorn
from handsynth.server import create_app
app = create_app(max_concurrent={max_concurrent}, queue_size={queue_size}, timeout_s={timeout_s})
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM (peak resident set) of a process, in MiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    ap.add_argument("--requests", type=int, default=24, help="requests in all (default 24)")
    ap.add_argument("--text", default="hello", help="the text every request writes")
    ap.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    ap.add_argument("--style", default=None, help="a built-in style id (default: none)")
    ap.add_argument("--url", default=None, help="use this running server instead of starting one")
    ap.add_argument("--max-concurrent", type=int, default=2, help="server setting (own server only)")
    ap.add_argument("--queue-size", type=int, default=8, help="server setting (own server only)")
    ap.add_argument("--timeout-s", type=float, default=120.0, help="server setting (own server only)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = ap.parse_args(argv)

    proc = None
    url = a.url
    if url is None:
        port = free_port()
        code = SERVER.format(max_concurrent=a.max_concurrent, queue_size=a.queue_size, timeout_s=a.timeout_s,
                             port=port)
        proc = subprocess.Popen([sys.executable, "-c", code])
        url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or (proc and proc.poll() is not None):
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        base = {"text": a.text, "format": a.format}
        if a.style:
            base["style"] = a.style
        warm = httpx.post(url + "/v1/write", json={**base, "seed": 10**6}, timeout=a.timeout_s + 10)
        if warm.status_code != 200:
            print(f"warm-up request failed: {warm.status_code} {warm.text}", file=sys.stderr)
            return 1
        mem_start = proc_status(proc.pid) if proc else {}

        lock = threading.Lock()
        next_id = iter(range(a.requests))
        latencies: list[float] = []
        statuses: Counter = Counter()
        failures: Counter = Counter()
        sizes: list[int] = []

        def client():
            with httpx.Client(base_url=url, timeout=a.timeout_s + 30) as c:
                while True:
                    with lock:
                        i = next(next_id, None)
                    if i is None:
                        return
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/v1/write", json={**base, "seed": i})
                        dt = time.perf_counter() - t0
                        with lock:
                            statuses[r.status_code] += 1
                            if r.status_code == 200:
                                latencies.append(dt)
                                sizes.append(len(r.content))
                            else:
                                failures[r.json().get("error", "?")[:80]] += 1
                    except httpx.HTTPError as e:
                        with lock:
                            statuses["transport"] += 1
                            failures[e.__class__.__name__] += 1

        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        mem_end = proc_status(proc.pid) if proc else {}
        ok = statuses.get(200, 0)
        summary = {
            "clients": a.clients, "requests": a.requests, "text_chars": len(a.text), "format": a.format,
            "server": {"max_concurrent": a.max_concurrent, "queue_size": a.queue_size} if proc else url,
            "wall_s": round(wall, 2),
            "throughput_rps": round(ok / wall, 3) if wall else None,
            "latency_s": {"p50": round(percentile(latencies, 50), 3), "p90": round(percentile(latencies, 90), 3),
                          "p99": round(percentile(latencies, 99), 3),
                          "max": round(max(latencies), 3) if latencies else None},
            "ok": ok, "errors": a.requests - ok, "statuses": {str(k): v for k, v in statuses.items()},
            "error_messages": dict(failures),
            "mean_bytes": int(sum(sizes) / len(sizes)) if sizes else 0,
            "server_rss_mib": {"after_warmup": round(mem_start.get("VmRSS", float("nan")), 1),
                               "end": round(mem_end.get("VmRSS", float("nan")), 1),
                               "peak": round(mem_end.get("VmHWM", float("nan")), 1)} if proc else "n/a (--url)",
            "cpus": os.cpu_count(),
        }
        if a.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"{ok}/{a.requests} ok from {a.clients} clients in {wall:.1f} s: "
                  f"{summary['throughput_rps']} requests/s")
            lat = summary["latency_s"]
            print(f"latency: p50 {lat['p50']} s, p90 {lat['p90']} s, p99 {lat['p99']} s, max {lat['max']} s")
            print(f"errors: {summary['errors']} {summary['statuses']} {summary['error_messages'] or ''}")
            if proc:
                m = summary["server_rss_mib"]
                print(f"server RSS: {m['after_warmup']} MiB after warm-up, {m['end']} MiB at the end, "
                      f"peak {m['peak']} MiB")
        return 0 if summary["errors"] == 0 else 2
    finally:
        if proc:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
