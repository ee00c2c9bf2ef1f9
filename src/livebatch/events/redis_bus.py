"""The fan-out between processes: notices travel over one Redis pub/sub channel to every API instance,
which hands them to its own `LocalBus`.

Pub/sub keeps nothing for a subscriber that is away, so every moment a notice may have been lost turns
into `RESYNC`: after each (re)subscription of the listener (redis-py reconnects and resubscribes the
same `PubSub` by itself; replacing it loses messages: docs/stack-notes.md), and after a publisher could not
publish, which it announces to everyone once Redis is back. Streams then catch up from the event log.

Publishing goes through an in-order outbox drained by one task, so a Redis outage never blocks the
worker that committed.

Whoever can publish on the channel could otherwise put any event into any live stream (a fake
`batch.complete`, an id of their choosing), so every message is signed: an HMAC-SHA256 with a key derived
from the JWT secret, which every process of a deployment already shares. A message without a valid
signature is dropped (and logged), and a signed one is still checked: each event's seq must be a positive
whole number and its name one of the names the caller streams, before anything of it reaches a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError

from livebatch.events.bus import LocalBus, Marker, Subscription
from livebatch.events.log import LoggedEvent, Notice

logger = logging.getLogger("livebatch.bus")

OUTBOX_LIMIT = 10_000
_RESYNC_BODY = b'{"resync":true}'
_KEY_PURPOSE = b"livebatch fan-out signing key v1"
_MAC_CHARS = 64  # hex SHA-256
REJECT_LOG_INTERVAL_S = 10.0  # a flood of forged messages is logged once per interval, with its count


def bus_key(secret: str) -> bytes:
    """The key that signs fan-out messages, derived from a deployment's shared secret (the JWT secret) so that
    a token and a message are never signed with the same key."""
    return hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def seal(key: bytes, body: bytes) -> bytes:
    """`<hex HMAC-SHA256 of body>.<body>`: what goes on the channel."""
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"." + body


def unseal(key: bytes, message: bytes) -> bytes | None:
    """The body of a message signed with `key`; None when it is unsigned or signed otherwise."""
    mac, dot, body = message.partition(b".")
    if not dot or len(mac) != _MAC_CHARS:
        return None
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return body if hmac.compare_digest(mac, expected) else None


def encode(notice: Notice, key: bytes) -> bytes:
    body = {"t": notice.topic, "e": [[e.seq, e.name, e.data] for e in notice.events], "s": notice.state}
    return seal(key, json.dumps(body, separators=(",", ":")).encode())


def decode(body: bytes, names: Collection[str]) -> Notice | None:
    """The notice of an unsealed body, or None for the resync announcement; ValueError when an event's seq is
    not a positive whole number or its name is not one of `names` (it would be written into streams as is)."""
    parsed: Any = json.loads(body)
    if not isinstance(parsed, dict):
        raise ValueError("not an object")
    if parsed.get("resync") is True:
        return None
    topic, state, raw_events = parsed["t"], parsed.get("s"), parsed["e"]
    if not isinstance(topic, str) or not (state is None or isinstance(state, str)) or not isinstance(raw_events, list):
        raise ValueError("malformed notice")
    events = []
    for seq, name, data in raw_events:
        if type(seq) is not int or seq < 1:  # not a bool, a float or a string: the SSE id is written from it
            raise ValueError(f"seq {seq!r} is not a positive whole number")
        if name not in names:
            raise ValueError(f"unknown event name {str(name)[:40]!r}")
        if not isinstance(data, str):
            raise ValueError("event data is not text")
        events.append(LoggedEvent.of(seq, name, data))
    return Notice(topic, tuple(events), state)


class RedisBus:
    """`key` signs and checks every message (`bus_key`); `names` are the event names a notice may carry."""

    def __init__(self, url: str, *, prefix: str, key: bytes, names: Collection[str], capacity: int = 2000) -> None:
        self.local = LocalBus(capacity)
        self.channel = f"{prefix}:events"
        self._key = key
        self._names = frozenset(names)
        self._resync_message = seal(key, _RESYNC_BODY)
        self.rejected = 0
        self._rejected_logged = 0
        self._rejected_logged_at = -REJECT_LOG_INTERVAL_S
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
                self._outbox.put_nowait(encode(notice, self._key))
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
                body = unseal(self._key, message["data"])
                if body is None:
                    self._reject("unsigned or wrongly signed")
                    continue
                try:
                    notice = decode(body, self._names)
                except (ValueError, KeyError, TypeError) as exc:
                    self._reject(f"signed but malformed: {exc}")
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
                        await self._redis.publish(self.channel, self._resync_message)
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

    def _reject(self, why: str) -> None:
        """Counts a dropped message; logs the first, then at most once per interval with how many since."""
        self.rejected += 1
        now = time.monotonic()
        if now - self._rejected_logged_at >= REJECT_LOG_INTERVAL_S:
            logger.warning(
                "dropped %d fan-out message(s) on %s (%s): only processes with this deployment's "
                "LIVEBATCH_JWT_SECRET may publish there",
                self.rejected - self._rejected_logged,
                self.channel,
                why,
                extra={"rejected": self.rejected},
            )
            self._rejected_logged, self._rejected_logged_at = self.rejected, now
