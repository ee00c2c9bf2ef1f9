"""How `livebatch serve` runs uvicorn: bounded time for a client to send its request headers, and for an
idle keep-alive connection, so that clients trickling headers byte by byte cannot hold connections (and
file descriptors) for ever.

uvicorn 0.54 has a keep-alive timeout but none for headers: a connection that never completes its headers,
or sends nothing at all, is kept open until the client leaves. The protocol below adds that deadline to
uvicorn's httptools protocol (the one `uvicorn[standard]` runs): armed when a connection opens and when the
next request on it begins, disarmed when its headers are complete; when it fires, the client gets a 408
and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from livebatch.config import Settings

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request's headers."""

    header_timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request of a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_timed_out(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(TIMED_OUT)
            self.transport.close()


def protocol_for(settings: Settings) -> type[HeaderDeadlineProtocol]:
    """The protocol class with this deployment's header timeout (uvicorn takes a class, not an instance)."""
    return type("LivebatchHttpProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": settings.header_timeout_s})


def options(settings: Settings) -> dict[str, Any]:
    """What every uvicorn this package starts is given, beside its address."""
    return {"http": protocol_for(settings), "timeout_keep_alive": settings.keep_alive_s, "log_config": None}


def run(app: Any, settings: Settings, *, host: str, port: int) -> None:
    graceful = int(settings.shutdown_grace_s) + 5
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=graceful, **options(settings))
