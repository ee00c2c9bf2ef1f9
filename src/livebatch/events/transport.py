"""The SSE transport: sse-starlette's response, plus the two ways out it lacks, and quiet logs for them.

A subscriber that the bus cut off (its queue filled) is disconnected at once, even while its response is
blocked writing to a full socket; and server shutdown ends every stream cleanly, so that browsers
reconnect to another instance with their last id. What a stream sends is its caller's business
(batches/stream.py); this module knows nothing of batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

logger = logging.getLogger("livebatch.stream")
END_TIMEOUT_S = 1.0

# A cut-off stream whose client is not reading cannot end its response (the socket is full), and uvicorn
# then logs "ASGI callable returned without completing response." at ERROR: expected here, and already
# counted and logged as a cut-off. Set in the request's own task, where uvicorn logs it.
_ENDED_EARLY: ContextVar[bool] = ContextVar("livebatch_stream_ended_early", default=False)
_INCOMPLETE = "ASGI callable returned without completing response"


class QuietCutOffs(logging.Filter):
    """Drops uvicorn's error for a stream that was cut off on purpose; installed on `uvicorn.error`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ENDED_EARLY.get() and record.getMessage().startswith(_INCOMPLETE))


QUIET_CUT_OFFS = QuietCutOffs()


def install_log_filter() -> None:
    """Once per process, however many apps it builds (a filter added twice is kept once)."""
    logging.getLogger("uvicorn.error").addFilter(QUIET_CUT_OFFS)


class EventStream(EventSourceResponse):
    """Streams `content`; ends when `cut_off` is set (the client fell behind) or the server shuts down
    (`on_shutdown` must make `content` end). `on_close` gets the reason it was cut off, or None, once."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        cut_off: asyncio.Event,
        on_shutdown: Callable[[], None],
        on_close: Callable[[str | None], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(content, shutdown_event=anyio.Event(), **kwargs)
        self._cut_off = cut_off
        self._on_shutdown = on_shutdown
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _Tracked(send)
        reason = None
        try:
            async with anyio.create_task_group() as watchers:
                watchers.start_soon(self._cut_off_on_overflow, watchers.cancel_scope)
                watchers.start_soon(self._stop_on_shutdown)
                try:
                    await super().__call__(scope, receive, response.send)
                except SendTimeoutError:
                    reason = "send_timeout"
                finally:
                    watchers.cancel_scope.cancel()
        finally:
            if self._cut_off.is_set():
                reason = "buffer_full"
            self._on_close(reason)
        if reason is not None:
            await _end_cut_off(response, reason)

    async def _cut_off_on_overflow(self, scope: anyio.CancelScope) -> None:
        await self._cut_off.wait()
        scope.cancel()

    async def _stop_on_shutdown(self) -> None:
        assert self._shutdown_event is not None
        await self._shutdown_event.wait()
        self._on_shutdown()


class _Tracked:
    """An ASGI `send` that remembers whether the response started and was completed."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = self.complete = False

    async def send(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self.started = True
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.complete = True


async def _end_cut_off(response: _Tracked, reason: str) -> None:
    """Ends a cut-off stream's response cleanly when its socket still takes it (the client then reconnects
    and resumes), or leaves the connection for uvicorn to close."""
    logger.info("stream cut off: its client fell behind (%s)", reason, extra={"reason": reason})
    if response.started and not response.complete:
        with anyio.move_on_after(END_TIMEOUT_S):
            await response.send({"type": "http.response.body", "body": b"", "more_body": False})
    if not response.complete:
        _ENDED_EARLY.set(True)
