"""Live fan-out of committed events to open streams, behind one small interface.

`LocalBus` delivers within one process (the embedded default); `RedisBus` (redis_bus.py) carries notices
between processes and hands them to a `LocalBus` of its own. Either way the bus is only a doorbell with
the news attached: the event log stays the truth, and a subscriber that may have missed something gets
`RESYNC` and catches up from the log.

Each subscriber has a bounded queue filled with `put_nowait`. A subscriber whose queue is full is cut
off (its stream ends and the client resumes from its last id) instead of growing memory or making the
publisher wait for it, which would stall every other stream (docs/stack-notes.md). A subscriber may instead
give a `listener`, called with each notice as it is delivered (no queue, no task woken): the fan-out of
batches/stream.py takes a topic's notices this way once for all its streams of the process, and says how
many streams that subscription stands for (`members`), which is what `subscriber_count` counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Protocol

from livebatch.events.log import Notice


class Marker(Enum):
    RESYNC = "resync"  # notices may have been lost: catch up from the log
    STOP = "stop"  # the process is shutting down: end the stream


RESYNC, STOP = Marker.RESYNC, Marker.STOP


class SubscriptionCutOff(Exception):
    """The subscriber fell `capacity` notices behind and was dropped."""


class Subscription:
    def __init__(
        self, bus: LocalBus, topic: str, capacity: int, listener: Callable[[Notice | Marker], None] | None = None
    ) -> None:
        self.topic = topic
        self._bus = bus
        self._queue: asyncio.Queue[Notice | Marker] = asyncio.Queue(capacity)
        self._listener = listener
        self.cut_off = asyncio.Event()
        self.closed = False
        self.members = 1  # the streams this subscription stands for

    def offer(self, item: Notice | Marker) -> bool:
        if self._listener is not None:
            self._listener(item)
            return True
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.cut_off.set()
            return False
        return True

    async def get(self, timeout: float | None = None) -> Notice | Marker | None:
        """The next notice, or None when `timeout` passes first; raises `SubscriptionCutOff`."""
        if self.cut_off.is_set():
            raise SubscriptionCutOff(self.topic)
        if not self._queue.empty():
            return self._queue.get_nowait()
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def get_nowait(self) -> Notice | Marker | None:
        """The next notice if one is queued, else None (also once cut off: `get` then says so)."""
        if self.cut_off.is_set() or self._queue.empty():
            return None
        return self._queue.get_nowait()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Bus(Protocol):
    @property
    def subscriber_count(self) -> int: ...

    def subscribe(self, topic: str, listener: Callable[[Notice | Marker], None] | None = None) -> Subscription: ...

    async def publish(self, notices: Sequence[Notice]) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class LocalBus:
    """Fan-out within this process."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._topics: dict[str, set[Subscription]] = {}
        self.cut_offs = 0

    @property
    def subscriber_count(self) -> int:
        return sum(sub.members for subs in self._topics.values() for sub in subs)

    def subscribe(self, topic: str, listener: Callable[[Notice | Marker], None] | None = None) -> Subscription:
        """`listener`: called with each notice (and marker) instead of queueing it; it must not block."""
        sub = Subscription(self, topic, self.capacity, listener)
        self._topics.setdefault(topic, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]

    def deliver(self, notice: Notice) -> None:
        for sub in tuple(self._topics.get(notice.topic, ())):
            if not sub.offer(notice):
                self.cut_offs += 1
                sub.close()

    def resync_all(self) -> None:
        """Tells every subscriber that notices may have been lost (a peer connection dropped)."""
        for subs in tuple(self._topics.values()):
            for sub in tuple(subs):
                if not sub.offer(RESYNC):
                    self.cut_offs += 1
                    sub.close()

    async def publish(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            self.deliver(notice)

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
