"""`GET /api/v1/generation/batch/{batchId}/progress`: one batch's events, in the order of its log.

A new connection gets a `batch.progress` snapshot first, then live events from the bus. One that resumes
from `Last-Event-ID` (header) or `?lastEventId=` (first load of the page) gets every logged event after it
exactly once, then a fresh snapshot, then live events. The SSE `id` is the event's per-batch seq, and a
snapshot describes exactly the events up to its id, so that a client may add the item events after it onto
it. The batch row read on connect is as of its last event: a stream that resumes from an older one sends no
snapshot before its replay, as that row would be newer than its id and the replayed events would be counted
twice. (The snapshot right before `batch.complete` describes the batch with it, under the id of the event
before: a client that drops between the two still gets `batch.complete` on reconnect.) A client that resumes
from an event pruned from the log (`livebatch prune`) cannot be given what it missed: it gets `batch.reset`,
whose id is where the stream goes on from, and a fresh snapshot (for a finished batch: the snapshot and
`batch.complete`), never a silent gap. A stream never polls: it reads the log on connect, and again only
when the bus says it may have missed something (a hole in the seqs, or `RESYNC` after a lost peer
connection). `batch.progress` is coalesced to one per `progress_interval_ms`: once due, it goes out with the
next item event, in the same write, or alone when none has come for another interval; it is always sent
right before `batch.complete`, after which the stream ends; a client that has seen it gets `204` on
reconnect.
The SSE transport (cut-offs, shutdown) is events/transport.py; this module is the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from sse_starlette import ServerSentEvent
from starlette.responses import Response

from livebatch.batches import reads
from livebatch.batches.events import BatchComplete, BatchProgressSnapshot, BatchReset, Heartbeat
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Batch
from livebatch.batches.service import parse_batch_id
from livebatch.clock import iso, utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.errors import BadRequest, TooManyRequests
from livebatch.events.bus import STOP, Bus, Marker, Subscription, SubscriptionCutOff
from livebatch.events.log import LoggedEvent, Notice
from livebatch.events.sse import frame
from livebatch.events.transport import EventStream
from livebatch.metrics import Metrics
from livebatch.users.models import User

if TYPE_CHECKING:
    from livebatch.events.slots import RedisSlots

RETRY_MS = 2000  # how long EventSource waits before reconnecting
REPLAY_PAGE = 1000
HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
PROGRESS, COMPLETE, RESET = BatchProgressSnapshot.name, BatchComplete.name, BatchReset.name
_T = TypeVar("_T")


class TooManyStreams(TooManyRequests):
    code = "TOO_MANY_STREAMS"


def parse_last_event_id(raw: str | None) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID must be a non-negative whole number, not {raw[:40]!r}.")
    return int(raw)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One write: frames joined, and the names of the events in it (counted once it has been sent)."""

    data: bytes
    names: tuple[str, ...]


@dataclass
class Cursor:
    """Where one stream is: the last seq it sent, and the latest snapshot (`dirty` until sent); None until
    the stream knows one as of `seq` (it resumes from an older event than the batch's last)."""

    seq: int
    state: str | None
    dirty: bool = False
    sent_progress_at: float = field(default_factory=time.monotonic)

    def update(self, state: str) -> None:
        self.state, self.dirty = state, True


class _Writes:
    """Frames waiting to go out as one write."""

    def __init__(self) -> None:
        self._frames: list[bytes] = []
        self._names: list[str] = []

    def __bool__(self) -> bool:
        return bool(self._frames)

    def add(self, name: str, data: bytes) -> None:
        self._frames.append(data)
        self._names.append(name)

    def take(self) -> Chunk:
        chunk = Chunk(b"".join(self._frames), tuple(self._names))
        self._frames, self._names = [], []
        return chunk


class BatchStreams:
    """Opens progress streams, at most `max_streams_per_user` at once per user on this process, and scaled out
    on all instances together (`slots`)."""

    def __init__(
        self, *, db: Database, bus: Bus, metrics: Metrics, settings: Settings, slots: RedisSlots | None = None
    ) -> None:
        """`slots`: the streams of every instance, when scaled out (the limit holds across them)."""
        self._slots = slots
        self._db = db
        self._bus = bus
        self._metrics = metrics
        self._settings = settings
        self._interval = settings.progress_interval_ms / 1000
        self._open: Counter[UUID] = Counter()

    def open_count(self, user_id: UUID) -> int:
        return self._open[user_id]

    async def open(
        self,
        raw_batch_id: str,
        user: User,
        *,
        header_id: str | None,
        query_id: str | None,
        server: str | None = None,
    ) -> Response:
        """`server`: the address the request came in on (`host:port`), naming this instance's stream slots."""
        settings = self._settings
        batch_id = parse_batch_id(raw_batch_id)
        async with self._db.read_session() as session:
            batch = await reads.get_owned_batch(session, batch_id, user)
            # Both must be well-formed; the header wins: EventSource sends it on reconnect, while the query id is
            # from the page's load.
            from_header, from_query = parse_last_event_id(header_id), parse_last_event_id(query_id)
            after = from_header if from_header is not None else from_query
            if after is not None and after > batch.last_seq:
                raise BadRequest(f"Last-Event-ID {after} is beyond this batch's last event ({batch.last_seq}).")
            finished = batch.status.is_terminal
            if finished and after is not None and after >= batch.last_seq:
                return Response(status_code=204)
            if after is None:
                # A finished batch's last event is its `batch.complete`: a new viewer gets that, then the end.
                after = batch.last_seq - 1 if finished else batch.last_seq
            # The row is the batch as of its last event: a snapshot as of `after` only when that is the same.
            snapshot = snapshot_of(batch).to_json() if after == batch.last_seq else None
        too_many = TooManyStreams(f"You have {settings.max_streams_per_user} progress streams open; close one first.")
        if self._open[user.id] >= settings.max_streams_per_user:
            raise too_many
        slot: str | None = None
        if self._slots is not None:  # scaled out: the user's streams on every instance count
            slot = await self._slots.acquire(str(user.id), settings.max_streams_per_user, server=server)
            if slot is None:
                raise too_many
        # Subscribe before reading the log, so nothing committed in between is missed.
        subscription = self._bus.subscribe(str(batch_id))
        self._open[user.id] += 1
        self._metrics.open_streams.inc()

        def stop() -> None:
            subscription.offer(STOP)

        def close(reason: str | None) -> None:
            # Once per stream, whoever ended it: the bus closes the subscription itself when it cuts a slow
            # subscriber off, and that stream's slot and gauge must still be given back.
            subscription.close()
            if self._slots is not None and slot is not None:
                self._slots.release(str(user.id), slot)
            self._open[user.id] -= 1
            if self._open[user.id] <= 0:
                del self._open[user.id]
            self._metrics.open_streams.dec()
            if reason is not None:
                self._metrics.stream_cutoffs.labels(reason).inc()

        return EventStream(
            self.frames(batch_id, subscription, Cursor(after, snapshot)),
            cut_off=subscription.cut_off,
            on_shutdown=stop,
            on_close=close,
            headers=HEADERS,
            sep="\n",
            ping=settings.heartbeat_s,
            ping_message_factory=_heartbeat,
            send_timeout=settings.stream_send_timeout_s,
            shutdown_grace_period=settings.shutdown_grace_s,
        )

    async def frames(self, batch_id: UUID, sub: Subscription, cursor: Cursor) -> AsyncGenerator[bytes, None]:
        """What a stream writes from `cursor` on, one write per item; every event is counted, by name,
        snapshots and the end included, once its write has been sent."""
        delivered = self._metrics.events_delivered
        counters: dict[str, Any] = {}  # `labels()` per event would cost more than the write
        async with contextlib.aclosing(self._events(batch_id, sub, cursor)) as chunks:
            async for chunk in chunks:
                yield chunk.data
                for name in chunk.names:
                    counter = counters.get(name)
                    if counter is None:
                        counter = counters[name] = delivered.labels(name)
                    counter.inc()

    async def _events(self, batch_id: UUID, sub: Subscription, cursor: Cursor) -> AsyncGenerator[Chunk, None]:
        interval = self._interval
        if cursor.state is not None:
            yield Chunk(frame(PROGRESS, cursor.state, event_id=cursor.seq, retry_ms=RETRY_MS), (PROGRESS,))
            cursor.sent_progress_at = time.monotonic()
            replay = self._catch_up(batch_id, cursor)
        else:  # resumed: the replay comes first, and its snapshot after it
            replay = _with_retry(self._catch_up(batch_id, cursor))
        try:
            async for chunk in replay:
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
                    return  # counted by the transport, which also ends a stream blocked on a full socket
                if notice is None:  # the coalescing delay is over
                    yield _progress(cursor)
                    continue
                async for chunk in self._send_queued(batch_id, sub, cursor, notice):
                    yield chunk
        except _Ended:
            return

    async def _send_queued(
        self, batch_id: UUID, sub: Subscription, cursor: Cursor, notice: Notice | Marker | None
    ) -> AsyncIterator[Chunk]:
        """`notice` and every notice queued behind it, as one write: a write per event per stream is what a
        busy fan-out spends its time on (bench/fanout.py), and under load the queues hold several. Raises
        `_Ended` after `batch.complete`, or when the server stops."""
        writes = _Writes()
        while notice is not None:
            if isinstance(notice, Marker):
                if writes:
                    yield writes.take()
                if notice is STOP:
                    raise _Ended
                async for chunk in self._catch_up(batch_id, cursor):
                    yield chunk
            else:
                for event in notice.events:
                    if event.seq <= cursor.seq:
                        continue  # already sent (replayed, or caught up)
                    if event.seq > cursor.seq + 1:
                        if writes:
                            yield writes.take()
                        async for chunk in self._catch_up(batch_id, cursor):  # a notice went missing
                            yield chunk
                        continue
                    if event.name == COMPLETE:
                        if notice.state is not None:
                            cursor.update(notice.state)
                        _final(writes, cursor, event)
                        yield writes.take()
                        raise _Ended
                    writes.add(event.name, event.frame)
                    cursor.seq = event.seq
                # A notice can carry a snapshot older than the events already sent: it was queued while the
                # stream caught up from the log, or it arrived late (workers publish on their own connections,
                # so out of order). Keep a snapshot only from the notice of the last event sent, or counts
                # would step back.
                if notice.state is not None and (not notice.events or notice.events[-1].seq == cursor.seq):
                    cursor.update(notice.state)
            notice = sub.get_nowait()
        if cursor.dirty and time.monotonic() - cursor.sent_progress_at >= self._interval:
            writes.add(PROGRESS, _progress(cursor).data)
        if writes:
            yield writes.take()

    async def _catch_up(self, batch_id: UUID, cursor: Cursor) -> AsyncIterator[Chunk]:
        """Everything in the log after the cursor, and the current snapshot into the cursor (dirty only if
        something was sent). Raises `_Ended` after sending `batch.complete`."""
        reread = True
        while True:
            batch, events = await _uncancelled(self._read_log(batch_id, cursor.seq))
            if batch is None:
                return
            if cursor.seq < batch.pruned_through:
                yield _reset(batch, cursor)
                continue
            if not events and reread and batch.status.is_terminal and cursor.seq < batch.last_seq:
                # The log was pruned between the row and the events read with it: no notice will come for a
                # finished batch, so read the row again now.
                reread = False
                continue
            if events:
                cursor.update(snapshot_of(batch).to_json())
            backlog = _Writes()  # a page is one write
            for event in events:
                if event.name == COMPLETE:
                    _final(backlog, cursor, event)
                    yield backlog.take()
                    raise _Ended
                backlog.add(event.name, event.frame)
                cursor.seq = event.seq
            if backlog:
                yield backlog.take()
            if len(events) < REPLAY_PAGE:
                return

    async def _read_log(self, batch_id: UUID, after: int) -> tuple[Batch | None, list[LoggedEvent]]:
        async with self._db.read_session() as session:
            return await reads.log_after(session, batch_id, after, limit=REPLAY_PAGE)


def _heartbeat() -> ServerSentEvent:
    # No id: EventSource would keep its last id anyway, and a heartbeat is not progress.
    return ServerSentEvent(data=Heartbeat(timestamp=iso(utcnow())).to_json(), event="heartbeat", sep="\n")


class _Ended(Exception):
    """The stream sent `batch.complete` and is over."""


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


async def _with_retry(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    """`chunks`, with the reconnection delay (which a new stream's first snapshot carries) in the first
    message of the first: a `retry` field alone would be a message without data, which some clients pass on."""
    first = True
    async for chunk in chunks:
        if first:
            chunk, first = Chunk(f"retry: {RETRY_MS}\n".encode() + chunk.data, chunk.names), False
        yield chunk


def _progress(cursor: Cursor) -> Chunk:
    cursor.dirty, cursor.sent_progress_at = False, time.monotonic()
    assert cursor.state is not None, "a snapshot is marked dirty only once known"
    return Chunk(frame(PROGRESS, cursor.state, event_id=cursor.seq), (PROGRESS,))


def _reset(batch: Batch, cursor: Cursor) -> Chunk:
    """`batch.reset`: the events after the cursor were pruned. The stream goes on from the batch's last event
    with a fresh snapshot; for a finished batch, from the event before, so that its `batch.complete` (never
    pruned) follows with the snapshot."""
    target = batch.last_seq - 1 if batch.status.is_terminal else batch.last_seq
    event = BatchReset(batch_id=str(batch.id), last_event_id=target, pruned_through=batch.pruned_through)
    cursor.seq = target
    chunk = Chunk(frame(RESET, event.to_json(), event_id=target), (RESET,))
    if batch.status.is_terminal:
        return chunk
    cursor.update(snapshot_of(batch).to_json())
    return Chunk(chunk.data + _progress(cursor).data, (RESET, PROGRESS))


def _final(writes: _Writes, cursor: Cursor, complete: LoggedEvent) -> None:
    """The last snapshot, then `batch.complete`: the brief wants progress right before the end."""
    if cursor.state is not None:  # known: it came with the notice or the log page of `batch.complete`
        writes.add(PROGRESS, _progress(cursor).data)
    writes.add(complete.name, complete.frame)
    cursor.seq = complete.seq
