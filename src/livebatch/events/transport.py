"""The SSE transport: each stream's socket (`Outlet`), written once per flush tick of the process (`Flusher`).

What costs a busy fan-out is work per stream per event: a task woken, a generator resumed, a send through
every middleware, a system call. Here frames handed to a stream go out at the process's next flush tick
(`LIVEBATCH_STREAM_FLUSH_MS`), all of them in one write, so that writes per stream per second are bounded
whatever the event rate; and a write is made by whoever holds the frames (the fan-out's tick, in one pass
over its streams), never by waking the stream's task. Under uvicorn's httptools protocol (`livebatch serve`)
a write goes straight to the connection's transport, framed as one HTTP chunk (uvicorn's own `send` does no
more for a chunked body); anywhere else (another server, a test's in-process client) the stream's task
sends through ASGI `send`, once per tick.

The ways a stream ends: its caller closes it (the stream's end, sent after everything written), its client
goes away, the server shuts down (every stream ends cleanly, so that browsers reconnect to another instance
with their last id), or it is cut off: its socket has taken nothing for `send_timeout` while frames wait
(`send_timeout`), or more than `capacity` frames wait for it (`buffer_full`). A cut-off stream is
disconnected at once, even while its socket is full. Heartbeats are one frame per interval, encoded once and
written to every stream of the process. What a stream sends is its caller's business (batches/stream.py);
this module knows nothing of batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import Any

from sse_starlette.sse import EventSourceResponse
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("livebatch.stream")
END_TIMEOUT_S = 1.0
RAW_SEND = "livebatch.raw_send"  # the scope key under which the app keeps the server's own `send`
DETACHED = "livebatch.detached"  # where a stream puts itself to run outside the app's middleware

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


_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _http_chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked HTTP/1.1 body. The fan-out hands the same bytes to every stream
    of a tick in a row, so the last one framed is kept: framed once, written N times."""
    global _last_chunk
    if _last_chunk[0] is not data:
        _last_chunk = (data, b"%x\r\n%b\r\n" % (len(data), data))
    return _last_chunk[1]


class _Raw:
    """uvicorn's httptools request cycle, written to directly: its transport, flow control and state."""

    __slots__ = ("cycle", "flow", "transport")

    def __init__(self, cycle: Any) -> None:
        self.cycle = cycle
        self.transport: asyncio.Transport = cycle.transport
        self.flow = cycle.flow

    @classmethod
    def of(cls, scope: Scope) -> _Raw | None:
        """The cycle of the server's own `send`, kept in the scope (`detachable`), under httptools only."""
        cycle = getattr(scope.get(RAW_SEND), "__self__", None)
        if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
            return None
        if not all(hasattr(cycle, a) for a in ("transport", "flow", "disconnected", "chunked_encoding")):
            return None
        return cls(cycle)

    @property
    def usable(self) -> bool:
        """The connection is still there."""
        return not self.cycle.disconnected and not self.transport.is_closing()

    @property
    def paused(self) -> bool:
        return bool(self.flow.write_paused)

    def write(self, data: bytes) -> None:
        self.transport.write(_http_chunk(data))


class Outlet:
    """One stream's socket as the fan-out sees it: `write` frames (from anywhere, at once), `close` once done."""

    __slots__ = (
        "_flusher",
        "_raw",
        "_waiter",
        "blocked_since",
        "capacity",
        "done",
        "held",
        "held_frames",
        "reason",
        "woken",
    )

    def __init__(self, flusher: Flusher, raw: _Raw | None, capacity: int) -> None:
        self._flusher = flusher
        self._raw = raw
        self.capacity = capacity
        self.held: list[bytes] = []  # not yet written: waiting for the socket (raw) or for the task (ASGI)
        self.held_frames = 0
        self.blocked_since: float | None = None
        self.done = False  # no more writes: closed, gone, cut off or stopped
        self.reason: str | None = None  # why it was cut off
        self.woken = False
        self._waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes, frames: int = 1) -> None:
        """Hands `data` (`frames` SSE messages) to the socket: at once when it takes it, else held."""
        if self.done:
            return
        raw = self._raw
        if raw is not None and not self.held and not raw.paused:
            if raw.usable:
                raw.write(data)
            else:
                self.gone()
            return
        self.held.append(data)
        self.held_frames += frames
        if self.held_frames > self.capacity:
            self.cut_off("buffer_full")
        elif raw is None:
            self.wake()  # the task sends it
        else:
            if self.blocked_since is None:
                self.blocked_since = time.monotonic()
            self._flusher.hold(self)

    def retry(self, now: float, send_timeout: float) -> bool:
        """At a flush tick, for a stream whose socket was full: writes what it holds if it takes it now,
        or cuts the stream off once it has taken nothing for `send_timeout`. True while it still holds some."""
        raw = self._raw
        if self.done or raw is None or not self.held:
            return False
        if not raw.paused:
            if raw.usable:
                raw.write(b"".join(self.held))
                self.held, self.held_frames, self.blocked_since = [], 0, None
            else:
                self.gone()
            return False
        if self.blocked_since is not None and now - self.blocked_since >= send_timeout:
            self.cut_off("send_timeout")
            return False
        return True

    def close(self) -> None:
        """Ends the stream after what was written (its last event, or the server stopping)."""
        if not self.done:
            self.done = True
            self.wake()

    def gone(self) -> None:
        """The client went away."""
        if not self.done:
            self.done = True
            self.held, self.held_frames = [], 0
            self.wake()

    def cut_off(self, reason: str) -> None:
        if not self.done:
            self.done, self.reason = True, reason
            self.held, self.held_frames = [], 0
            self.wake()

    def wake(self) -> None:
        """Wakes the stream's task (its `wait`)."""
        self.woken = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until `wake` (or at once if woken since the last wait)."""
        if not self.woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.woken = False

    def take(self) -> bytes:
        data, self.held, self.held_frames, self.blocked_since = b"".join(self.held), [], 0, None
        return data


class Flusher:
    """The flush tick, heartbeats and shutdown of one process's streams (one event loop). Timers run only
    while streams are open: no task per stream, and none at all when idle."""

    def __init__(
        self, *, flush_s: float, heartbeat_s: float, heartbeat: Callable[[], bytes], send_timeout: float
    ) -> None:
        self.flush_s = flush_s
        self.heartbeat_s = heartbeat_s
        self.send_timeout = send_timeout
        self._heartbeat = heartbeat
        self._ticks: list[Callable[[float], bool]] = []
        self.outlets: set[Outlet] = set()
        self._held: set[Outlet] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._beat: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.stopping = False

    def on_tick(self, tick: Callable[[float], bool]) -> None:
        """`tick(now)` runs at every flush; it returns True to be run at the next one too."""
        self._ticks.append(tick)

    def request(self) -> None:
        """A flush at the next tick (frames are waiting)."""
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.flush_s, self._run)

    def hold(self, outlet: Outlet) -> None:
        self._held.add(outlet)
        self.request()

    def open(self, outlet: Outlet) -> None:
        self.outlets.add(outlet)
        loop = asyncio.get_running_loop()
        if self._beat is None:
            self._beat = loop.call_later(self.heartbeat_s, self._beat_now)
        if self._watcher is None:
            self._watcher = loop.create_task(self._watch_shutdown(), name="livebatch-stream-shutdown")
        if self.stopping:
            outlet.close()

    def close(self, outlet: Outlet) -> None:
        self.outlets.discard(outlet)
        self._held.discard(outlet)
        if not self.outlets:
            for handle in (self._beat, self._flush):
                if handle is not None:
                    handle.cancel()
            self._beat = self._flush = None
            if self._watcher is not None:
                self._watcher.cancel()
                self._watcher = None

    def _run(self) -> None:
        self._flush = None
        now = time.monotonic()
        again = False
        for tick in self._ticks:
            again = tick(now) or again
        if self._held:
            send_timeout = self.send_timeout
            self._held = {o for o in self._held if o.retry(now, send_timeout)}
            again = again or bool(self._held)
        if again and self.outlets:
            self.request()

    def _beat_now(self) -> None:
        # A timer at the interval, from when it last fired: never early, whatever the load.
        self._beat = asyncio.get_running_loop().call_later(self.heartbeat_s, self._beat_now)
        frame = self._heartbeat()
        for outlet in tuple(self.outlets):
            outlet.write(frame, 0)

    async def _watch_shutdown(self) -> None:
        # sse-starlette's: it learns of uvicorn's shutdown signal (patched in at import); one wait per process.
        await EventSourceResponse._listen_for_exit_signal()
        self.stopping = True
        for outlet in tuple(self.outlets):
            outlet.close()


class EventStream(Response):
    """A `text/event-stream` response whose body is written through its `Outlet`. `content(outlet)` is the
    stream's own work (what to send before the live fan-out takes over, and when to catch up); it returns
    when the stream is over, or is cancelled when the client leaves first. `on_close` gets the reason it
    was cut off, or None, once."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Callable[[Outlet], Coroutine[Any, Any, None]],
        *,
        flusher: Flusher,
        capacity: int,
        on_close: Callable[[str | None], None],
        headers: Mapping[str, str],
    ) -> None:
        # Not `Response.__init__`: it would give the empty body a Content-Length, and a stream has none.
        self.status_code = 200
        self.background = None
        self.init_headers(dict(headers))
        self._content = content
        self._flusher = flusher
        self._capacity = capacity
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        detached: list[EventStream] | None = scope.get(DETACHED)
        if detached is not None and scope.get("method") == "GET" and _Raw.of(scope) is not None:
            # Run by `detachable` once the app (its middleware, routing and dependencies) has returned: a
            # stream's lifetime does not keep that call's frames and objects, and writes bypass them.
            detached.append(self)
            return
        await self.run(scope, receive, send)

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _Tracked(send)
        try:
            await response.send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            self.raw_headers = []  # sent: not kept for the stream's whole life
            if scope.get("method", "GET").upper() == "HEAD":  # headers only: a stream on HEAD never ends
                await response.send({"type": "http.response.body", "body": b"", "more_body": False})
                self._on_close(None)
                return
        except BaseException:
            self._on_close(None)
            raise
        flusher = self._flusher
        raw = _Raw.of(scope)
        if raw is not None and not (raw.cycle.chunked_encoding and raw.usable):
            raw = None  # written through `send`: uvicorn did not choose a chunked body, or the client left
        outlet = Outlet(flusher, raw, self._capacity)
        flusher.open(outlet)

        def content_done(task: asyncio.Future[None]) -> None:
            if task.cancelled() or task.exception() is None:
                outlet.close()
            else:
                outlet.gone()  # not a clean end: the client reconnects and resumes

        content = asyncio.ensure_future(self._content(outlet))
        content.add_done_callback(content_done)
        listener = asyncio.ensure_future(_until_disconnect(receive))
        listener.add_done_callback(lambda _: outlet.gone())
        timeout = flusher.send_timeout
        try:
            while True:
                await outlet.wait()
                # Held frames are this task's to send on the ASGI path, and on the raw one once no more come.
                while outlet.held and outlet.reason is None and (raw is None or outlet.done):
                    try:
                        async with asyncio.timeout(timeout):
                            await response.send(
                                {"type": "http.response.body", "body": outlet.take(), "more_body": True}
                            )
                    except TimeoutError:
                        outlet.cut_off("send_timeout")
                if outlet.done:
                    break
        finally:
            flusher.close(outlet)
            for task in (content, listener):
                task.cancel()
            await asyncio.gather(content, listener, return_exceptions=True)
            self._on_close(outlet.reason)
        if not content.cancelled() and content.exception() is not None:
            raise content.exception()  # type: ignore[misc]
        if outlet.reason is not None:
            await _end_cut_off(response, outlet.reason)
        elif listener.cancelled():  # the client is still there (a client that left ended the listener)
            try:
                async with asyncio.timeout(END_TIMEOUT_S):
                    await response.send({"type": "http.response.body", "body": b"", "more_body": False})
            except TimeoutError:
                _ENDED_EARLY.set(True)


async def detachable(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Calls `app`, keeping the server's own `send` in the scope; then runs the `EventStream` the app
    detached, if any, with the server's `receive` and `send`: the whole of a stream's life is spent here,
    not inside the app's middleware, and its writes go straight to uvicorn's transport when it allows."""
    if scope["type"] != "http":
        await app(scope, receive, send)
        return
    detached: list[EventStream] = []
    server_keys = frozenset(scope)
    scope[RAW_SEND], scope[DETACHED] = send, detached
    await app(scope, receive, send)
    if detached:
        # What the app added to the scope (its exit stacks, route, state) is not the stream's to keep; nor is
        # the set of the server's keys, for the stream's whole life in this frame.
        for key in set(scope) - server_keys - {RAW_SEND}:
            del scope[key]
        del server_keys
        await detached[0].run(scope, receive, send)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


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
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_TIMEOUT_S):
                await response.send({"type": "http.response.body", "body": b"", "more_body": False})
    if not response.complete:
        _ENDED_EARLY.set(True)
