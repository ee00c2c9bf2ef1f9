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
import sys
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

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
from livebatch.events.bus import RESYNC, Bus, Marker
from livebatch.events.log import LoggedEvent, Notice
from livebatch.events.sse import frame
from livebatch.events.transport import EventStream, Flusher, Outlet
from livebatch.metrics import Metrics
from livebatch.users.models import User

if TYPE_CHECKING:
    from livebatch.events.slots import RedisSlots

RETRY_MS = 2000  # how long EventSource waits before reconnecting
REPLAY_PAGE = 1000
HOLE_WAIT_S = 0.05  # how long an event past a hole in the seqs waits for the missing one before a log read
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
        self._channels: dict[UUID, _Channel] = {}
        self._active: set[_Channel] = set()  # channels with frames or snapshots for the next flush
        self._flusher = Flusher(
            flush_s=settings.stream_flush_ms / 1000,
            heartbeat_s=settings.heartbeat_s,
            heartbeat=_heartbeat,
            send_timeout=settings.stream_send_timeout_s,
        )
        self._flusher.on_tick(self._flush)
        self._delivered: dict[str, Any] = {}  # `labels()` per flush would cost more than the write

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
            # Interned: the streams opened on one batch at one event share the text instead of a copy each.
            snapshot = sys.intern(snapshot_of(batch).to_json()) if after == batch.last_seq else None
        too_many = TooManyStreams(f"You have {settings.max_streams_per_user} progress streams open; close one first.")
        if self._open[user.id] >= settings.max_streams_per_user:
            raise too_many
        slot: str | None = None
        if self._slots is not None:  # scaled out: the user's streams on every instance count
            slot = await self._slots.acquire(str(user.id), settings.max_streams_per_user, server=server)
            if slot is None:
                raise too_many
        # Subscribe before reading the log, so nothing committed in between is missed.
        channel = self._acquire(batch_id)
        self._open[user.id] += 1
        self._metrics.open_streams.inc()
        closed = False
        user_id = user.id  # not the user: the row (and what its session loaded) would live as long as the stream

        def close(reason: str | None) -> None:
            # Once per stream, whoever ended it; its slot among every instance's streams goes back too.
            nonlocal closed
            if closed:
                return
            closed = True
            self._release(channel)
            if self._slots is not None and slot is not None:
                self._slots.release(str(user_id), slot)
            self._open[user_id] -= 1
            if self._open[user_id] <= 0:
                del self._open[user_id]
            self._metrics.open_streams.dec()
            if reason is not None:
                self._metrics.stream_cutoffs.labels(reason).inc()

        async def content(outlet: Outlet) -> None:
            await self._serve(channel, outlet, Cursor(after, snapshot))

        return EventStream(
            content, flusher=self._flusher, capacity=settings.stream_buffer, on_close=close, headers=HEADERS
        )

    async def writes(self, batch_id: UUID, cursor: Cursor) -> AsyncGenerator[bytes, None]:
        """What a stream from `cursor` writes, write by write, as sent through ASGI: a stream without a
        socket, for code (and tests) in this process."""
        channel = self._acquire(batch_id)
        outlet = Outlet(self._flusher, None, self._settings.stream_buffer)
        self._flusher.open(outlet)
        task = asyncio.ensure_future(self._serve(channel, outlet, cursor))
        task.add_done_callback(lambda _: outlet.close())
        try:
            while outlet.held or not outlet.done:
                await outlet.wait()
                if outlet.held:
                    yield outlet.take()
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                raise error
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._flusher.close(outlet)
            self._release(channel)

    def following(self, batch_id: UUID) -> int:
        """Streams of this batch in the live fan-out (past their replay)."""
        channel = self._channels.get(batch_id)
        return 0 if channel is None else len(channel.members)

    # --- the live fan-out: one subscription per batch, one pass over its streams per flush --------------

    def _acquire(self, batch_id: UUID) -> _Channel:
        channel = self._channels.get(batch_id)
        if channel is None:
            channel = self._channels[batch_id] = _Channel(self, batch_id)
        channel.refs += 1
        channel.sub.members = channel.refs
        return channel

    def _release(self, channel: _Channel) -> None:
        channel.refs -= 1
        channel.sub.members = channel.refs
        if channel.refs <= 0:
            self._drop(channel)

    def _drop(self, channel: _Channel) -> None:
        channel.sub.close()
        channel.closed = True
        if channel._filling is not None:
            channel._filling.cancel()
        if self._channels.get(channel.batch_id) is channel:
            del self._channels[channel.batch_id]
        self._active.discard(channel)

    def _wanted(self, channel: _Channel) -> None:
        self._active.add(channel)
        self._flusher.request()

    def _flush(self, now: float) -> bool:
        active, self._active = self._active, set()
        counts: Counter[str] = Counter()
        for channel in active:
            if channel.flush(now, self._interval, counts):
                self._active.add(channel)
        delivered = self._delivered
        for name, n in counts.items():
            counter = delivered.get(name)
            if counter is None:
                counter = delivered[name] = self._metrics.events_delivered.labels(name)
            counter.inc(n)
        return bool(self._active)

    # --- one stream: what it sends before it joins the fan-out, and whenever it falls out of step ----------

    async def _serve(self, channel: _Channel, outlet: Outlet, cursor: Cursor) -> None:
        """Sends the opening snapshot and the replay, then hands the stream to its channel; catches up again
        from the log whenever the channel says it is out of step (a hole, a lost peer connection)."""
        member = _Member(outlet, cursor.sent_progress_at)
        counts: Counter[str] = Counter()

        def send(chunk: Chunk) -> None:
            outlet.write(chunk.data, len(chunk.names))
            counts.update(chunk.names)

        try:
            if cursor.state is not None:
                send(Chunk(frame(PROGRESS, cursor.state, event_id=cursor.seq, retry_ms=RETRY_MS), (PROGRESS,)))
                cursor.sent_progress_at = time.monotonic()
                cursor.dirty = False
                replay = self._catch_up(channel.batch_id, cursor)
            else:  # resumed: the replay comes first, and its snapshot after it
                replay = _with_retry(self._catch_up(channel.batch_id, cursor))
            while not outlet.done:
                async for chunk in replay:
                    send(chunk)
                if outlet.done:
                    return
                if channel.closed or not channel.can_join(cursor.seq):
                    replay = self._catch_up(channel.batch_id, cursor)  # the fan-out went past it meanwhile
                    continue
                if cursor.dirty:
                    send(_progress(cursor))
                member.seq, member.progress_at = cursor.seq, cursor.sent_progress_at
                member.progress_state = cursor.state if cursor.dirty is False else None
                channel.join(member)
                self._count(counts)
                del replay  # spent: an idle stream keeps nothing it will not use again
                await member.out_of_step()
                channel.leave(member)
                if outlet.done:
                    return
                # Out of step: from where the fan-out left it.
                cursor.seq, cursor.sent_progress_at = member.seq, member.progress_at
                cursor.state, cursor.dirty = None, False
                replay = self._catch_up(channel.batch_id, cursor)
        except _Ended:
            outlet.close()
        finally:
            channel.leave(member)
            self._count(counts)

    def _count(self, counts: Counter[str]) -> None:
        delivered = self._metrics.events_delivered
        for name, n in counts.items():
            delivered.labels(name).inc(n)
        counts.clear()

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


class _Member:
    """A stream in its channel's fan-out: the last seq it was sent, and when and which snapshot it was sent;
    put out of step (`wake`), its task catches up from the log."""

    __slots__ = ("_waiter", "outlet", "progress_at", "progress_state", "seq")

    def __init__(self, outlet: Outlet, progress_at: float) -> None:
        self.outlet = outlet
        self.progress_at = progress_at
        self.seq = 0
        self.progress_state: str | None = None
        self._waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def out_of_step(self) -> None:
        """Until the channel puts this stream out of step (the transport cancels it when the stream ends)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class _Channel:
    """One batch's live fan-out on this process: its notices, taken once (a bus listener), and its streams.

    Between two flushes the channel gathers the events that follow `base` in order; at the flush, every
    stream that was sent up to `base` gets the same bytes (joined and framed once), with the latest snapshot
    when its own is due. A stream elsewhere gets the part after its seq; one behind `base` is put out of
    step: its task catches up from the log and joins again. Notices come out of order (two transactions
    publish in the order their commits return, not that of their seqs): an event past a hole waits for it,
    and when the hole stays open for `HOLE_WAIT_S`, or after `RESYNC`, the channel reads the log once for
    all its streams (a read per stream, at 1 000 streams, is what bench/fanout.py's profile showed)."""

    def __init__(self, streams: BatchStreams, batch_id: UUID) -> None:
        self.streams = streams
        self.batch_id = batch_id
        self.members: set[_Member] = set()
        self.refs = 0
        self.closed = False
        self.base: int | None = None  # the last seq flushed (None: no notice yet, or after a miss)
        self.events: list[LoggedEvent] = []  # after `base`, in order, with no hole
        self.state: str | None = None  # the latest snapshot, as of `state_seq`
        self.state_seq = -1
        self._progress: tuple[str, int, bytes] | None = None
        self.ahead: dict[int, LoggedEvent] = {}  # events past a hole, until it is filled
        self.hole_since: float | None = None
        self._filling: asyncio.Task[None] | None = None
        self.sub = streams._bus.subscribe(str(batch_id), self.offer)

    @property
    def head(self) -> int | None:
        return None if self.base is None else self.base + len(self.events)

    def can_join(self, seq: int) -> bool:
        return self.base is None or seq >= self.base

    def join(self, member: _Member) -> None:
        self.members.add(member)
        if self.state is not None:
            self.streams._wanted(self)  # its snapshot may be owed

    def leave(self, member: _Member) -> None:
        self.members.discard(member)

    def offer(self, notice: Notice | Marker) -> None:
        if isinstance(notice, Marker):
            if notice is RESYNC:
                if self.base is None:
                    self._out_of_step(None)  # nothing to read the log after: each stream reads it
                else:
                    self._fill()
            return
        for event in notice.events:
            self._take(event)
        # A notice can carry a snapshot older than the events already gathered (workers publish on their own
        # connections, so out of order): keep the one of the latest event.
        if notice.state is not None:
            seq = notice.events[-1].seq if notice.events else self.head
            if seq is not None and seq >= self.state_seq:
                self.state, self.state_seq = notice.state, seq
        self.streams._wanted(self)

    def _take(self, event: LoggedEvent) -> None:
        head = self.head
        if head is None:
            self.base = event.seq - 1
        elif event.seq <= head:
            return
        elif event.seq > head + 1:
            self.ahead[event.seq] = event
            if self.hole_since is None:
                self.hole_since = time.monotonic()
            return
        self.events.append(event)
        if self.ahead:
            seq = event.seq + 1
            while (later := self.ahead.pop(seq, None)) is not None:
                self.events.append(later)
                seq += 1
            if not self.ahead:
                self.hole_since = None

    def _fill(self) -> None:
        """Reads the log after `head` once for every stream (a hole that stayed open, or `RESYNC`)."""
        if self._filling is None and not self.closed:
            self._filling = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            after = self.head
            if after is None:
                return
            batch, events = await _uncancelled(self.streams._read_log(self.batch_id, after))
            if batch is None or self.closed or self.head is None:
                return
            if after < batch.pruned_through:
                self._out_of_step(None)  # each stream gets its `batch.reset`
                return
            for event in events:
                self._take(event)
            if events and events[-1].seq == batch.last_seq and batch.last_seq >= self.state_seq:
                self.state, self.state_seq = snapshot_of(batch).to_json(), batch.last_seq
            self.hole_since = time.monotonic() if self.ahead else None
            self.streams._wanted(self)
        finally:
            self._filling = None

    def _out_of_step(self, base: int | None) -> None:
        self.base, self.events = base, []
        self.ahead, self.hole_since = {}, None
        self.state, self.state_seq = None, -1
        for member in tuple(self.members):
            self.leave(member)
            member.wake()

    def _progress_frame(self, seq: int) -> bytes:
        """The latest snapshot under `seq`, encoded once per process."""
        state = self.state
        assert state is not None
        cached = self._progress
        if cached is None or cached[0] is not state or cached[1] != seq:
            cached = self._progress = (state, seq, frame(PROGRESS, state, event_id=seq))
        return cached[2]

    def flush(self, now: float, interval: float, counts: Counter[str]) -> bool:
        """Writes what each stream is owed; True while some stream still waits for a snapshot."""
        if self.hole_since is not None and now - self.hole_since >= HOLE_WAIT_S:
            self._fill()
        events, base = self.events, self.base
        if base is None:
            return False  # nothing known to send since the channel missed notices
        self.base, self.events = base + len(events), []
        complete = next((i for i, e in enumerate(events) if e.name == COMPLETE), None)
        if complete is not None:
            events = events[: complete + 1]
        end = base + len(events)
        state_known = self.state is not None
        chunks: dict[tuple[int, bool], Chunk] = {}
        uses: Counter[tuple[int, bool]] = Counter()
        owed = False
        for member in tuple(self.members):
            start = member.seq - base
            if start < 0:  # behind what the channel holds: it reads the log
                self.leave(member)
                member.wake()
                continue
            if start < len(events):
                last = end if complete is None else end - 1
                due = now - member.progress_at >= interval
                with_progress = state_known and self.state_seq == last and due and complete is None
                key = (start, with_progress)
                chunk = chunks.get(key)
                if chunk is None:
                    chunk = chunks[key] = self._chunk(events[start:], with_progress, last)
                member.outlet.write(chunk.data, len(chunk.names))
                uses[key] += 1
                member.seq = end
                if with_progress or complete is not None:
                    member.progress_at, member.progress_state = now, self.state
                if complete is not None:
                    member.outlet.close()
                    self.leave(member)
                    continue
            if state_known and self.state_seq == member.seq and member.progress_state != self.state:
                if now - member.progress_at >= 2 * interval:
                    data = self._progress_frame(member.seq)
                    member.outlet.write(data)
                    counts[PROGRESS] += 1
                    member.progress_at, member.progress_state = now, self.state
                else:
                    owed = True
        for key, n in uses.items():
            for name in chunks[key].names:
                counts[name] += n
        if complete is not None:
            self.streams._drop(self)
            for member in tuple(self.members):  # none should be left: any that is reads its end from the log
                self.leave(member)
                member.wake()
            return False
        return owed or bool(self.ahead)

    def _chunk(self, events: list[LoggedEvent], with_progress: bool, last: int) -> Chunk:
        writes = _Writes()
        for event in events:
            if event.name == COMPLETE:
                if self.state is not None:  # the last snapshot, right before the end
                    writes.add(PROGRESS, self._progress_frame(event.seq - 1))
            writes.add(event.name, event.frame)
        if with_progress:
            writes.add(PROGRESS, self._progress_frame(last))
        return writes.take()


def _heartbeat() -> bytes:
    # No id: EventSource would keep its last id anyway, and a heartbeat is not progress.
    return frame("heartbeat", Heartbeat(timestamp=iso(utcnow())).to_json())


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
