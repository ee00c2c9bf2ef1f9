"""A burst of notices on the Redis fan-out, larger than a stream's buffer, reaches a stream that keeps up:
the listener hands them over one at a time, letting the streams drain their queues in between, instead of
filling a healthy stream's queue in one go and cutting it off."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from livebatch.batches.events import LOGGED_EVENT_NAMES
from livebatch.config import Settings
from livebatch.events.bus import Marker
from livebatch.events.log import LoggedEvent, Notice
from livebatch.events.redis_bus import RedisBus, bus_key, encode

pytestmark = pytest.mark.usefixtures("scaled_only")  # the fan-out between processes is Redis's

BUFFER = 8
BURST = 200


async def test_a_burst_larger_than_the_buffer_does_not_cut_off_a_stream_that_keeps_up(settings: Settings) -> None:
    assert settings.redis_url is not None
    key = bus_key(settings.effective_jwt_secret)
    bus = RedisBus(settings.redis_url, prefix=settings.redis_prefix, key=key, names=LOGGED_EVENT_NAMES, capacity=BUFFER)
    await bus.start()
    publisher = redis.from_url(settings.redis_url)
    try:
        with bus.subscribe("batch-1") as subscription:
            received: list[int] = []

            async def keep_up() -> None:
                """A stream that is never slow: it takes each notice as soon as it is handed over."""
                while len(received) < BURST:
                    notice = await subscription.get()
                    if isinstance(notice, Notice):
                        received.extend(e.seq for e in notice.events)
                    else:
                        assert notice is Marker.RESYNC  # the (re)subscription's own catch-up signal

            reader = asyncio.create_task(keep_up())
            await asyncio.sleep(0.2)  # the listener has joined the channel
            async with publisher.pipeline(transaction=False) as pipe:  # one write: all arrive together
                for seq in range(1, BURST + 1):
                    pipe.publish(
                        bus.channel, encode(Notice("batch-1", (LoggedEvent.of(seq, "item.started", "{}"),)), key)
                    )
                await pipe.execute()
            async with asyncio.timeout(10):
                await reader
            assert not subscription.cut_off.is_set()
            assert received == list(range(1, BURST + 1))
            assert bus.local.cut_offs == 0
    finally:
        await publisher.aclose()
        await bus.aclose()
