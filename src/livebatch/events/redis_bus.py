"""The fan-out between processes: notices travel over one Redis pub/sub channel to every API instance,
which hands them to its own `LocalBus`.

Pub/sub keeps nothing for a subscriber that is away, so every moment a notice may have been lost turns
into `RESYNC`: after each (re)subscription of the listener (redis-py reconnects and resubscribes the
same `PubSub` by itself; replacing it loses messages: docs/stack-notes.md), and after a publisher could not
publish, which it announces to everyone once Redis is back. Streams then catch up from the event log.

Publishing goes through an in-order outbox drained by one task, so a Redis outage never blocks the
worker that committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from livebatch.events.bus import LocalBus, Marker, Subscription
from livebatch.events.log import LoggedEvent, Notice

logger = logging.getLogger("livebatch.bus")

OUTBOX_LIMIT = 10_000
_RESYNC_MESSAGE = b'{"resync":true}'


def encode(notice: Notice) -> bytes:
    body = {"t": notice.topic, "e": [[e.seq, e.name, e.data] for e in notice.events], "s": notice.state}
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes) -> Notice | None:
    """The notice, or None for the resync announcement."""
    body: dict[str, Any] = json.loads(raw)
    if body.get("resync"):
        return None
    events = tuple(LoggedEvent.of(int(seq), str(name), str(data)) for seq, name, data in body["e"])
    return Notice(str(body["t"]), events, body.get("s"))


class RedisBus:
    def __init__(self, url: str, *, prefix: str, capacity: int = 2000) -> None:
        self.local = LocalBus(capacity)
        self.channel = f"{prefix}:events"
        self._redis = redis.from_url(url, health_check_interval=10, socket_connect_timeout=2, socket_timeout=5)
        self._pubsub = self._redis.pubsub()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(OUTBOX_LIMIT)
        self._owe_resync = False
        self._tasks: list[asyncio.Task[None]] = []
        self.resyncs = 0

    @property
    def subscriber_count(self) -> int:
        return self.local.subscriber_count

    def subscribe(self, topic: str, listener: Callable[[Notice | Marker], None] | None = None) -> Subscription:
        return self.local.subscribe(topic, listener)

    async def publish(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            try:
                self._outbox.put_nowait(encode(notice))
            except asyncio.QueueFull:
                self._owe_resync = True  # dropped: everyone catches up from the log once we can say so

    async def ping(self) -> None:
        await self._redis.ping()

    async def start(self) -> None:
        await self._pubsub.subscribe(self.channel)
        self._tasks = [
            asyncio.create_task(self._listen(), name="livebatch-bus-listen"),
            asyncio.create_task(self._drain(), name="livebatch-bus-publish"),
        ]

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while not self._outbox.empty():
                    await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=1.0)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if delay == 0.1:
                    logger.warning("fan-out connection lost (%s); reconnecting", exc)
                # Meanwhile the log keeps the streams going: each one catches up on every retry.
                self.resyncs += 1
                self.local.resync_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if message is None or self.local.subscriber_count == 0:
                continue  # a process with no open stream (a worker) need not decode anything
            if message["type"] == "subscribe":
                # Joined (again): anything published while we were away is gone; catch up from the log.
                self.resyncs += 1
                self.local.resync_all()
            elif message["type"] == "message":
                try:
                    notice = decode(message["data"])
                except (ValueError, KeyError, TypeError):
                    logger.warning("ignoring a malformed fan-out message")
                    continue
                if notice is None:
                    self.resyncs += 1
                    self.local.resync_all()
                else:
                    self.local.deliver(notice)
            # Messages already read from the socket come back from get_message without a pause: yield, so
            # the streams take each one before the next, or a burst larger than their buffers would cut
            # healthy streams off (tests/reliability/test_fanout_burst.py).
            await asyncio.sleep(0)

    async def _drain(self) -> None:
        delay = 0.1
        while True:
            payload = await self._outbox.get()
            while True:
                try:
                    if self._owe_resync:
                        await self._redis.publish(self.channel, _RESYNC_MESSAGE)
                        self._owe_resync = False
                    await self._redis.publish(self.channel, payload)
                    delay = 0.1
                    break
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError) as exc:
                    logger.warning("could not publish to the fan-out (%s); retrying", exc)
                    self._owe_resync = True
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
