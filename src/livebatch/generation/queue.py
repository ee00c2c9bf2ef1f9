"""The work queue: dispatched items as Taskiq tasks (`TaskQueue`), on the in-process broker or, scaled
out, on Taskiq's Redis stream broker made to live through Redis going away (`ItemQueue`).

taskiq-redis's `listen()` raises on the first connection error and Taskiq's receiver restarts it at
once, in a tight loop that logs a traceback per spin while Redis is down. A Redis restarted without
persistence comes back with neither the stream nor its consumer group, so every read then fails with
NOGROUP, and the messages it held are gone. Here the listener backs off and reconnects, re-creates
the group from the start of the stream (so work queued after the restart, before the group existed,
is still delivered), and reports the loss (NOGROUP, or a new Redis `run_id`) to `on_lost`: the worker
then queues every dispatched item again at once instead of waiting for the dispatch timeout. A
duplicate delivery does nothing, since the claim is a conditional update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage, AsyncBroker
from taskiq_redis import RedisStreamBroker

from livebatch.generation import tasks

logger = logging.getLogger("livebatch.queue")

# Acked messages stay in a stream until trimmed; this bounds its memory. A message trimmed before it was
# delivered is re-queued by the sweeper like any lost one.
STREAM_MAXLEN = 100_000
BACKOFF_MAX_S = 2.0
RECLAIM_EVERY_S = 30.0


class TaskQueue:
    """Queues dispatched items, one task each (the uow's `WorkQueue`)."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self._task = tasks.register(broker)
        self._closed = False
        self._sends = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def enqueue(self, item_ids: Sequence[UUID]) -> None:
        if self._closed:
            return  # committed as dispatched: a live process's sweeper queues them again
        self._sends += 1
        self._idle.clear()
        try:
            for item_id in item_ids:
                try:
                    await self._task.kiq(str(item_id))
                except Exception as exc:
                    # Committed as dispatched: the sweeper queues it again once it looks lost.
                    logger.warning("could not queue item %s (%s); the sweeper will queue it again", item_id, exc)
        finally:
            self._sends -= 1
            if self._sends == 0:
                self._idle.set()

    async def aclose(self, timeout: float = 2.0) -> None:
        """Takes no more work, lets the sends under way end, then closes the broker: a send that opened a
        Redis connection after the broker's pool was closed would leave that connection open for good."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        await self.broker.shutdown()


class ItemQueue(RedisStreamBroker):
    def __init__(
        self, url: str, *, prefix: str, idle_timeout_ms: int, on_lost: Callable[[], None] | None = None
    ) -> None:
        super().__init__(
            url,
            queue_name=f"{prefix}:items",
            consumer_group_name=f"{prefix}:workers",
            consumer_id="0",  # a new group starts at the stream's beginning: nothing queued before it is skipped
            xread_block=1000,
            maxlen=STREAM_MAXLEN,
            idle_timeout=idle_timeout_ms,
            socket_connect_timeout=2,
            socket_timeout=5,
            socket_keepalive=True,
            health_check_interval=10,
            # A pooled connection that went stale across a Redis restart fails once: retry on a fresh one.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self.on_lost = on_lost
        self.reconnects = 0
        self.losses = 0
        self._run_id: str | None = None
        self._shut = False

    async def startup(self) -> None:
        await super().startup()
        self._run_id = await self._server_run_id()

    async def shutdown(self) -> None:
        # A receiver whose cancel was lost sees its read fail when the pool closes: it must end then, not
        # reconnect, or the connection it opens after the pool closed stays open for good.
        self._shut = True
        await super().shutdown()

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        delay, failed, regroup = 0.1, False, False
        while not self._shut:
            try:
                if regroup:
                    await self._declare_consumer_group()
                    regroup = False
                if failed:
                    await self._check_server()
                    self.reconnects += 1
                    logger.info("work queue reachable again")
                    failed, delay = False, 0.1
                async with contextlib.aclosing(self._read()) as messages:
                    async for message in messages:
                        yield message
            except (RedisError, OSError) as exc:
                if self._shut:
                    return
                if isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP"):
                    logger.warning("the work queue's consumer group is gone (Redis lost its data); re-creating it")
                    regroup = True
                    self._lost()
                    continue
                if not failed:
                    logger.warning("work queue unreachable (%s); reconnecting", exc)
                failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)

    async def _read(self) -> AsyncGenerator[AckableMessage, None]:
        """taskiq-redis's read loop, minus its autoclaim lock (a lock queued in a pipeline locks nothing)
        and its pipelines (left unclosed when the connection drops), plus a reclaim on a quiet queue too."""
        last_reclaim = 0.0
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                fetched: Any = await conn.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=self.count,
                )
                for stream, messages in fetched or ():
                    for message_id, fields in messages:
                        yield self._message(message_id, fields, stream)
                if time.monotonic() - last_reclaim < RECLAIM_EVERY_S:
                    continue
                last_reclaim = time.monotonic()
                # A dead consumer's unacked messages, once idle past idle_timeout: run (a no-op for items already
                # done) and acked, so that the group's pending list does not grow forever.
                reclaimed: Any = await conn.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                for message_id, fields in reclaimed[1]:
                    if fields:
                        yield self._message(message_id, fields, self.queue_name)

    async def take_unfinished(self) -> list[str]:
        """The arguments of every message delivered to this consumer and never acknowledged (fetched but
        dropped at shutdown, say), acknowledged now: the caller hands their items back."""
        arguments: list[str] = []
        async with Redis(connection_pool=self.connection_pool) as conn:
            pending: Any = await conn.xpending_range(
                self.queue_name, self.consumer_group_name, "-", "+", 10_000, consumername=self.consumer_name
            )
            message_ids = [entry["message_id"] for entry in pending]
            for message_id in message_ids:
                entries: Any = await conn.xrange(self.queue_name, min=message_id, max=message_id)
                for _, fields in entries:
                    arguments.extend(str(arg) for arg in self.formatter.loads(fields[b"data"]).args)
            if message_ids:
                await conn.xack(self.queue_name, self.consumer_group_name, *message_ids)
        return arguments

    def _message(self, message_id: Any, fields: Any, stream: Any) -> AckableMessage:
        return AckableMessage(data=fields[b"data"], ack=self._ack_generator(id=message_id, queue_name=stream))

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        ack = super()._ack_generator(id, queue_name)

        async def ack_or_leave() -> None:
            # The item's outcome is already in the database; an unacked message is only ever redelivered
            # to a claim that finds the item done.
            try:
                await ack()
            except (RedisError, OSError) as exc:
                logger.warning("could not acknowledge a work message (%s)", exc)

        return ack_or_leave

    async def _server_run_id(self) -> str:
        async with Redis(connection_pool=self.connection_pool) as conn:
            info = await conn.info("server")
        return str(info["run_id"])

    async def _check_server(self) -> None:
        run_id = await self._server_run_id()
        if self._run_id is not None and run_id != self._run_id:
            logger.warning("Redis restarted (new run_id); its queued work may be lost")
            self._lost()
        self._run_id = run_id

    def _lost(self) -> None:
        self.losses += 1
        if self.on_lost is not None:
            self.on_lost()
