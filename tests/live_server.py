"""A real uvicorn server on a free loopback port, for the API and browser tests."""
import socket
import threading
import time
from urllib.parse import urlsplit

import uvicorn

from handsynth.server.connections import server_config


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port) in a background thread, with the
    server's own connection guard (``options`` go to ``uvicorn.Config``)."""

    def __init__(self, app, **options):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(server_config(app, log_level="warning", lifespan="on", **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def post_head_and_part(url: str, route: str, body: bytes, ctype: str) -> tuple[int, str, str]:
    """POST a body over the server's limit as a client would start to: the headers (with the
    true Content-Length) and the first 64 KiB, then wait for the answer (the server reads what
    keeps coming, answers and closes; sending the rest would only race its close).
    -> (status, content type, body)"""
    u = urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=30) as sock:
        head = (f"POST {route} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body[:65536])
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, content = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type", ""), content.decode("utf-8", "replace")
