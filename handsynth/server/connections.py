"""Slow clients timed out at the connection: uvicorn closes idle keep-alive connections, but it
waits for ever on a connection that sends nothing, or sends its request line and headers a byte
at a time (a "slowloris"), each holding a socket and memory. ``GuardedH11`` gives every request's
head a deadline; the body's deadline is the app's (``app.BodyLimit``).

    uvicorn.run(app, http=GuardedH11)    # as ``serve`` and ``server_config`` do
"""
from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0      # from a connection's opening (or a request's first byte) to its whole head
KEEP_ALIVE_S = 5.0         # an idle keep-alive connection is closed after this (uvicorn's setting)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol, where a connection whose request head (request line and headers)
    is not all in ``head_timeout`` seconds after the connection opened, or after the request's
    first byte arrived, is closed."""

    head_timeout = HEAD_TIMEOUT_S
    _head_timer: asyncio.TimerHandle | None = None
    closed_slow = 0            # connections closed for a slow head (all servers of this process)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests():   # a request's head is arriving
            self._arm()
        super().data_received(data)
        if not self._between_requests():   # its head is in: the app has the request
            self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(self.head_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self._between_requests() and not self.transport.is_closing():
            GuardedH11.closed_slow += 1
            self.transport.close()


def server_config(app, **options) -> uvicorn.Config:
    """A uvicorn configuration with the guarded protocol (``options`` go to ``uvicorn.Config``)."""
    options.setdefault("http", GuardedH11)
    options.setdefault("timeout_keep_alive", KEEP_ALIVE_S)
    return uvicorn.Config(app, **options)
