"""`GET /api/v1/generation/batch/{batchId}/progress`: one batch's events as Server-Sent Events.

On connect: a `batch.progress` snapshot; then every logged event after `Last-Event-ID` (header) or
`?lastEventId=` (first load of the page) exactly once; then a fresh snapshot; then live events from the
bus. The SSE `id` is the event's per-batch seq; a snapshot carries the seq it is current up to, so
resuming from it is exact. A stream never polls: it reads the log on connect, and again only when the
bus says it may have missed something (a hole in the seqs, or `RESYNC` after a lost peer connection).
`batch.progress` is coalesced to one per `progress_interval_ms`: once due, it goes out with the next item
event, in the same write, or alone when none has come for another interval; it is always sent right
before `batch.complete`, after which the stream ends; a client that has seen it gets `204` on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from livebatch.batches import repository, service
from livebatch.batches.events import BatchComplete, BatchProgressSnapshot, Heartbeat
from livebatch.batches.models import Batch
from livebatch.clock import iso, utcnow
from livebatch.errors import BadRequest, TooManyRequests
from livebatch.events import log
from livebatch.events.bus import STOP, Marker, Subscription, SubscriptionCutOff
from livebatch.events.log import LoggedEvent
from livebatch.events.sse import frame
from livebatch.runtime import Runtime
from livebatch.users.models import User

logger = logging.getLogger("livebatch.stream")
RETRY_MS = 2000  # how long EventSource waits before reconnecting
REPLAY_PAGE = 1000
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
PROGRESS, COMPLETE = BatchProgressSnapshot.name, BatchComplete.name
_T = TypeVar("_T")
_EVENT_LINE = re.compile(rb"^event: (.*)$", re.MULTILINE)  # data lines start with `data: `, never this


class TooManyStreams(TooManyRequests):
    code = "TOO_MANY_STREAMS"


def parse_last_event_id(raw: str | None) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID must be a non-negative whole number, not {raw[:40]!r}.")
    return int(raw)


@dataclass
class Cursor:
    """Where one stream is: the last seq it sent, and the latest snapshot (`dirty` until sent)."""

    seq: int
    state: str
    dirty: bool = False
    sent_progress_at: float = field(default_factory=time.monotonic)

    def update(self, state: str) -> None:
        self.state, self.dirty = state, True


async def open_stream(
    rt: Runtime, raw_batch_id: str, user: User, *, header_id: str | None, query_id: str | None
) -> Response:
    batch_id = service.parse_batch_id(raw_batch_id)
    async with rt.db.read_session() as session:
        batch = await service.get_owned_batch(session, batch_id, user)
        # The header wins: EventSource sends it on reconnect, while the query id is from the page's load.
        after = parse_last_event_id(header_id if header_id else query_id)
        if after is not None and after > batch.last_seq:
            raise BadRequest(f"Last-Event-ID {after} is beyond this batch's last event ({batch.last_seq}).")
        finished = batch.batch_status.is_terminal
        if finished and after is not None and after >= batch.last_seq:
            return Response(status_code=204)
        if after is None:
            # A finished batch's last event is its `batch.complete`: a new viewer gets that, then the end.
            after = batch.last_seq - 1 if finished else batch.last_seq
        snapshot = service.snapshot_of(batch).to_json()
    if rt.streams_by_user[user.id] >= rt.settings.max_streams_per_user:
        raise TooManyStreams(f"You have {rt.settings.max_streams_per_user} progress streams open; close one first.")
    # Subscribe before reading the log, so nothing committed in between is missed.
    subscription = rt.bus.subscribe(str(batch_id))
    rt.streams_by_user[user.id] += 1
    rt.metrics.open_streams.inc()

    released = False

    def release() -> None:
        # Once per stream, whoever ended it: the bus closes the subscription itself when it cuts a slow
        # subscriber off, and that stream's slot and gauge must still be given back.
        nonlocal released
        if released:
            return
        released = True
        subscription.close()
        rt.streams_by_user[user.id] -= 1
        if rt.streams_by_user[user.id] <= 0:
            del rt.streams_by_user[user.id]
        rt.metrics.open_streams.dec()

    return BatchStream(
        _counted(rt, _events(rt, batch_id, subscription, Cursor(after, snapshot))),
        subscription=subscription,
        release=release,
        rt=rt,
        headers=HEADERS,
        sep="\n",
        ping=rt.settings.heartbeat_s,
        ping_message_factory=_heartbeat,
        send_timeout=rt.settings.stream_send_timeout_s,
        shutdown_event=anyio.Event(),
        shutdown_grace_period=rt.settings.shutdown_grace_s,
    )


def _heartbeat() -> ServerSentEvent:
    # No id: EventSource would keep its last id anyway, and a heartbeat is not progress.
    return ServerSentEvent(data=Heartbeat(timestamp=iso(utcnow())).to_json(), event="heartbeat", sep="\n")


class _Ended(Exception):
    """The stream sent `batch.complete` and is over."""


async def _counted(rt: Runtime, frames: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """Counts every event written, by name (read back from its frame), snapshots and the end included."""
    delivered = rt.metrics.events_delivered
    counters: dict[bytes, Any] = {}  # `labels()` per event would cost more than the write
    async with contextlib.aclosing(frames):
        async for chunk in frames:
            yield chunk
            for name in _EVENT_LINE.findall(chunk):  # a chunk may hold several frames
                counter = counters.get(name)
                if counter is None:
                    counter = counters[name] = delivered.labels(name.decode())
                counter.inc()


async def _events(rt: Runtime, batch_id: UUID, sub: Subscription, cursor: Cursor) -> AsyncGenerator[bytes, None]:
    interval = rt.settings.progress_interval_ms / 1000
    yield frame(PROGRESS, cursor.state, event_id=cursor.seq, retry_ms=RETRY_MS)
    cursor.sent_progress_at = time.monotonic()
    try:
        async for chunk in _catch_up(rt, batch_id, cursor):
            yield chunk
        if cursor.dirty:
            yield _progress(cursor)
        while True:
            # A snapshot sent alone is a write of its own to every stream, as dear as an item event: wait for
            # the next event to carry it, for one more interval at most (bench/fanout.py counted them).
            due = cursor.sent_progress_at + 2 * interval
            timeout = max(0.0, due - time.monotonic()) if cursor.dirty else None
            try:
                notice = await sub.get(timeout)
            except SubscriptionCutOff:
                return  # counted by BatchStream, which also ends a stream blocked on a full socket
            if notice is None:  # the coalescing delay is over
                yield _progress(cursor)
                continue
            # Every notice already queued goes out in one write: a write per event per stream is what a busy
            # fan-out spends its time on (bench/fanout.py), and under load the queues hold several.
            pending: list[bytes] = []
            while notice is not None:
                if isinstance(notice, Marker):
                    if pending:
                        yield b"".join(pending)
                        pending = []
                    if notice is STOP:
                        return
                    async for chunk in _catch_up(rt, batch_id, cursor):
                        yield chunk
                else:
                    for event in notice.events:
                        if event.seq <= cursor.seq:
                            continue  # already sent (replayed, or caught up)
                        if event.seq > cursor.seq + 1:
                            if pending:
                                yield b"".join(pending)
                                pending = []
                            async for chunk in _catch_up(rt, batch_id, cursor):  # a notice went missing
                                yield chunk
                            continue
                        if event.name == COMPLETE:
                            if notice.state is not None:
                                cursor.update(notice.state)
                            pending += _final(cursor, event)
                            yield b"".join(pending)
                            raise _Ended
                        pending.append(event.frame)
                        cursor.seq = event.seq
                    # A notice can carry a snapshot older than the events already sent: it was queued while the
                    # stream caught up from the log, or it arrived late (workers publish on their own connections,
                    # so out of order). Keep a snapshot only from the notice of the last event sent, or counts
                    # would step back.
                    if notice.state is not None and (not notice.events or notice.events[-1].seq == cursor.seq):
                        cursor.update(notice.state)
                notice = sub.get_nowait()
            if cursor.dirty and time.monotonic() - cursor.sent_progress_at >= interval:
                pending.append(_progress(cursor))
            if pending:
                yield b"".join(pending)
    except _Ended:
        return


async def _catch_up(rt: Runtime, batch_id: UUID, cursor: Cursor) -> AsyncIterator[bytes]:
    """Everything in the log after the cursor, and the current snapshot into the cursor (dirty only if
    something was sent). Raises `_Ended` after sending `batch.complete`."""
    while True:
        batch, page = await _uncancelled(_read_log(rt, batch_id, cursor.seq))
        if batch is None:
            return
        events = [e for e in page if e.seq <= batch.last_seq]
        if events:
            cursor.update(service.snapshot_of(batch).to_json())
        backlog: list[bytes] = []  # a page is one write
        for event in events:
            if event.name == COMPLETE:
                backlog += _final(cursor, event)
                yield b"".join(backlog)
                raise _Ended
            backlog.append(event.frame)
            cursor.seq = event.seq
        if backlog:
            yield b"".join(backlog)
        if len(page) < REPLAY_PAGE:
            return


async def _read_log(rt: Runtime, batch_id: UUID, after: int) -> tuple[Batch | None, list[LoggedEvent]]:
    async with rt.db.read_session() as session:
        # The batch row first, then its events up to the row's last seq: under READ COMMITTED each
        # statement sees the latest commits, and events read first could be older than the row read
        # after them. This way the snapshot describes exactly the events sent before it.
        batch = await repository.get_batch(session, batch_id)
        page = await log.events_after(session, batch_id, after, limit=REPLAY_PAGE) if batch else []
    return batch, page


async def _uncancelled(read: Coroutine[Any, Any, _T]) -> _T:
    """Runs a database read to its end even when the stream is cancelled meanwhile (its client left).

    Cancelled halfway, a read makes SQLAlchemy terminate its aiosqlite connection, and the graceful close
    it shields then waits forever on the stopped connection thread: one task left behind for every client
    that left during a read (tests/reliability/test_stream_churn.py)."""
    task = asyncio.ensure_future(read)
    task.add_done_callback(_forget)
    return await asyncio.shield(task)


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a read that failed after its stream ended is nobody's to report


def _progress(cursor: Cursor) -> bytes:
    cursor.dirty, cursor.sent_progress_at = False, time.monotonic()
    return frame(PROGRESS, cursor.state, event_id=cursor.seq)


def _final(cursor: Cursor, complete: LoggedEvent) -> list[bytes]:
    """The last snapshot, then `batch.complete`: the brief wants progress right before the end."""
    chunks = [_progress(cursor), complete.frame]
    cursor.seq = complete.seq
    return chunks


# A cut-off stream whose client is not reading cannot end its response (the socket is full), and uvicorn
# then logs "ASGI callable returned without completing response." at ERROR: expected here, and already
# counted and logged as a cut-off. Set in the request's own task, where uvicorn logs it.
_ENDED_EARLY: ContextVar[bool] = ContextVar("livebatch_stream_ended_early", default=False)
_INCOMPLETE = "ASGI callable returned without completing response"
END_TIMEOUT_S = 1.0


class QuietCutOffs(logging.Filter):
    """Drops uvicorn's error for a stream that was cut off on purpose; installed on `uvicorn.error`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ENDED_EARLY.get() and record.getMessage().startswith(_INCOMPLETE))


QUIET_CUT_OFFS = QuietCutOffs()


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


class BatchStream(EventSourceResponse):
    """sse-starlette's response, plus two ways out it lacks: a subscriber cut off by the bus is
    disconnected at once (even while blocked writing to a full socket), and server shutdown ends the
    stream cleanly so that the browser reconnects to another instance."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        subscription: Subscription,
        release: Any,
        rt: Runtime,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._subscription = subscription
        self._release = release
        self._rt = rt

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
            if self._subscription.cut_off.is_set():
                reason = "buffer_full"
            if reason is not None:
                self._rt.metrics.stream_cutoffs.labels(reason).inc()
            self._release()
        if reason is not None:
            await _end_cut_off(response, reason)

    async def _cut_off_on_overflow(self, scope: anyio.CancelScope) -> None:
        await self._subscription.cut_off.wait()
        scope.cancel()

    async def _stop_on_shutdown(self) -> None:
        assert self._shutdown_event is not None
        await self._shutdown_event.wait()
        self._subscription.offer(STOP)
