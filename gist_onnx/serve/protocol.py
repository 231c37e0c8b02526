"""The HTTP/1.1 connection guard: uvicorn's httptools protocol with the limits it lacks.

uvicorn times out idle keep-alive connections, but not a request head that never ends: 1,200
connections that each sent half a header line were all still held after 30 s, and a 1 MB header
was read whole. Here a request's head (request line and headers) must arrive within
``head_timeout_s`` (else 408) and be at most ``max_head_bytes`` (else 431); both answer with the
server's JSON error shape and close the connection. The body's deadline is the app's (it reads
the body): see ``Limits.body_timeout_s``.

It subclasses uvicorn's ``HttpToolsProtocol`` and uses its callbacks and fields; the server tests
(slow and oversized heads against a real process) catch a uvicorn release that changes them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..wire import error_body

# How long a refused connection's remaining bytes are read and dropped before it is closed.
_LINGER_S = 2.0
# At shutdown, how long an idle kept-alive connection stays open for a request its client may
# already have written (it is on the wire, or in our socket's buffer, unread): answered, not reset.
IDLE_GRACE_S = 1.0
_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
}


def guarded_protocol(*, head_timeout_s: float, max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` setting, with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"head_timeout_s": head_timeout_s, "max_head_bytes": max_head_bytes},
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One connection: a request head must arrive in time and within its size."""

    head_timeout_s = 10.0
    max_head_bytes = 32 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout_s = self.head_timeout_s
        self._max_head_bytes = self.max_head_bytes
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._shutting_down = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()  # a new connection owes a request head at once

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self._max_head_bytes:
            self._refuse(431, f"The request head passed {self._max_head_bytes} bytes.")

    def send_400_response(self, msg: str) -> None:
        """A request uvicorn's parser cannot read (malformed HTTP): answered in the JSON error
        shape of every other answer, not as uvicorn's plain text."""
        self._refuse(400, "The request is not valid HTTP/1.1: " + msg.rstrip(".") + ".")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._start_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self._max_head_bytes:
            self._refuse(
                431, f"The request head has {size} bytes; the limit is {self._max_head_bytes}."
            )
            return
        super().on_headers_complete()
        if self._shutting_down and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed: the server is going

    def shutdown(self) -> None:
        """Called by uvicorn when the server stops (after SIGTERM's drain delay). uvicorn closes
        an idle kept-alive connection at once; a request its client wrote a moment before (on
        the wire, or unread in our socket's buffer) then meets a reset, and a POST is not
        retried. Here an idle connection stays open for a short grace: a request that arrives
        in it is answered (with ``connection: close``); one whose head is part-read is finished
        and answered. A request being answered ends with the connection closed, as uvicorn
        does."""
        self._shutting_down = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
        elif not self._receiving_head():
            self.loop.call_later(IDLE_GRACE_S, self._close_if_idle)

    def _receiving_head(self) -> bool:
        return self._in_head and self._head_bytes > 0

    def _close_if_idle(self) -> None:
        """The grace is over: close the connection unless a request came in it (that request
        closes it when answered)."""
        if self.transport.is_closing() or self._receiving_head():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        """After each answer: where the request's body was not read through (an answer given
        without reading it: 404, 405, an early 413, a health probe with a body), the rest of it
        would have to be read before the next request, and a client trickling it would hold the
        connection for ever (each byte resets uvicorn's keep-alive timer). Such a connection is
        closed, after a fixed moment that no byte extends."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self.transport.is_closing():
            self.server_state.total_requests += 1
            self._refused = True  # what still comes is dropped, unread
            self._in_head = False
            self._stop_head_timer()
            if self.transport.can_write_eof():
                self.transport.write_eof()
                self.loop.call_later(_LINGER_S, self.transport.close)
            else:
                self.transport.close()
            return
        super().on_response_complete()

    def _start_head(self) -> None:
        self._in_head, self._head_bytes = True, 0
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"The request head did not arrive within {self._head_timeout_s:g} s.")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error and close the connection."""
        self._refused = True
        self._in_head = False
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        body = orjson.dumps(error_body(message, kind="invalid_request_error", status=status))
        head = [
            b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status]),
            *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        # Closing with the client's bytes still unread makes the kernel send a reset, which can
        # reach the client before the answer does: end our side, read and drop what still comes
        # for a moment (a "lingering close"), then close.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)
        else:
            self.transport.close()
