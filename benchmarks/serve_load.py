"""Load test of the HTTP API: N concurrent clients on loopback send a fixed number of
``POST /v1/write`` requests; reports throughput, latency percentiles, errors (by status) and the
server process's memory (resident set: at start, and its peak, from /proc/PID/status VmHWM).

    python benchmarks/serve_load.py --clients 4 --requests 24 --text "hello"
    python benchmarks/serve_load.py --url http://127.0.0.1:8000 ...   # an already running server

By default it starts its own server (a subprocess, the shipped model) on a free loopback port.
Every request has its own seed, so none is answered from the server's drawing cache. The client
side is the standard library only (http.client, one keep-alive connection per client thread), so
it runs on a plain install; the server it starts needs the package's own dependencies.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

SERVER = """
import sys, uvicorn
from handsynth.server import create_app
app = create_app(max_concurrent={max_concurrent}, queue_size={queue_size}, timeout_s={timeout_s})
try:   # the server's own connection guard, as `handsynth serve` runs it
    from handsynth.server.connections import server_config
except ImportError:   # (an older handsynth)
    uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)
else:
    uvicorn.Server(server_config(app, host="127.0.0.1", port={port}, log_level="warning", access_log=False)).run()
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


class Connection:
    """One client's keep-alive HTTP connection (http.client), reopened after a failure."""

    ERRORS = (OSError, http.client.HTTPException)   # refused, reset, timed out, bad responses

    def __init__(self, url: str, timeout: float):
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit(f"--url {url}: give an http://HOST:PORT address")
        self.host, self.port, self.timeout, self.conn = u.hostname, u.port or 80, timeout, None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        """(status, body); a connection the server closed while idle is reopened once."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                content = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, content
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if fresh or attempt:
                    raise
            except self.ERRORS:
                self.close()
                raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def error_of(content: bytes) -> str:
    try:
        return str(json.loads(content).get("error", "?"))[:80]
    except (ValueError, AttributeError):
        return content[:80].decode("utf-8", "replace") or "?"


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
    ap.add_argument("--max-concurrent", type=int, default=32,
                    help="server setting (own server only; default 32, the server's)")
    ap.add_argument("--queue-size", type=int, default=64, help="server setting (own server only; default 64)")
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
        probe = Connection(url, 2)
        while True:
            try:
                if probe.request("GET", "/healthz")[0] == 200:
                    break
            except Connection.ERRORS:
                pass
            if time.monotonic() > deadline or (proc and proc.poll() is not None):
                print("the server did not start", file=sys.stderr)
                return 1
            time.sleep(0.1)
        base = {"text": a.text, "format": a.format}
        if a.style:
            base["style"] = a.style
        probe.close()
        try:
            status, content = Connection(url, a.timeout_s + 10).request("POST", "/v1/write", {**base, "seed": 10**6})
        except Connection.ERRORS as e:
            status, content = e.__class__.__name__, b""
        if status != 200:
            print(f"warm-up request failed: {status} {content[:200].decode('utf-8', 'replace')}", file=sys.stderr)
            return 1
        mem_start = proc_status(proc.pid) if proc else {}

        lock = threading.Lock()
        next_id = iter(range(a.requests))
        latencies: list[float] = []
        statuses: Counter = Counter()
        failures: Counter = Counter()
        sizes: list[int] = []

        def client():
            c = Connection(url, a.timeout_s + 30)
            try:
                while True:
                    with lock:
                        i = next(next_id, None)
                    if i is None:
                        return
                    t0 = time.perf_counter()
                    try:
                        status, content = c.request("POST", "/v1/write", {**base, "seed": i})
                        dt = time.perf_counter() - t0
                        with lock:
                            statuses[status] += 1
                            if status == 200:
                                latencies.append(dt)
                                sizes.append(len(content))
                            else:
                                failures[error_of(content)] += 1
                    except Connection.ERRORS as e:
                        with lock:
                            statuses["transport"] += 1
                            failures[e.__class__.__name__] += 1
            finally:
                c.close()

        threads = [threading.Thread(target=client) for _ in range(a.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        mem_end = proc_status(proc.pid) if proc else {}
        try:   # the server's own count of its sampling batches (a server that batches across requests)
            status, content = Connection(url, 10).request("GET", "/healthz")
            batches = json.loads(content).get("batches") if status == 200 else None
        except (Connection.ERRORS + (ValueError,)):
            batches = None
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
            "batches": batches,
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
            if batches:
                print(f"sampling batches: {batches['sampled']} for {batches['lines']} lines, "
                      f"at most {batches['most_requests']} requests in one")
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
