"""How many progress streams each user holds open, across every API instance that serves them (scaled out;
the embedded server counts its own, batches/stream.py).

`RedisSlots` counts in Redis, so that a user cannot open the limit on each API instance behind the load
balancer: one sorted set per user, a member per open stream, scored by when it expires.
Each instance renews the members it holds every third of `ttl_s`; those of an instance that died expire on
their own, so a crash never keeps a user's slots taken for longer than that, and an instance restarted under
the same name (host and port) frees them on its first stream, before it counts any of its old clients'.
Should Redis not answer, a stream is let through (streams read the log, and the per-process count still bounds
this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

logger = logging.getLogger("livebatch.stream")

SLOT_TTL_S = 30.0

# Drops the expired members, then takes a slot if fewer than the limit are held: one atomic step, so that two
# instances opening a user's last slot at once cannot both get it.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisSlots:
    """The streams of every instance sharing this Redis and prefix."""

    def __init__(self, url: str, *, prefix: str, ttl_s: float = SLOT_TTL_S) -> None:
        # A few connections, waited for: 200 streams opening at once queue for them (a round trip each) instead
        # of failing with "Too many connections".
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=4, timeout=5, socket_connect_timeout=2, socket_timeout=2
        )
        self._redis = redis.Redis.from_pool(pool)
        self._prefix = f"{prefix}:streams"
        # Named by where it serves (host and port) once a request says so, so that an instance restarted there
        # knows which slots were its own; a random name for one that serves no request with an address.
        self._instance: str | None = None
        self._naming = asyncio.Lock()
        self._ttl_s = ttl_s
        self._held: dict[str, str] = {}  # slot -> user
        self._returned: list[tuple[str, str]] = []  # (user, slot) given back, not yet removed in Redis
        self._returning = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _key(self, user: str) -> str:
        return f"{self._prefix}:{user}"

    async def acquire(self, user: str, limit: int, *, server: str | None = None) -> str | None:
        """`server`: where the request came in (`host:port`), which names this instance (the first one does)."""
        slot = f"{await self._name(server)}|{uuid.uuid4().hex[:12]}"
        now = time.time()
        try:
            args = (now, limit, now + self._ttl_s, slot, int(self._ttl_s * 2000))
            taken = await self._redis.eval(_ACQUIRE, 1, self._key(user), *args)
        except (RedisError, OSError) as exc:
            logger.warning("stream slots unavailable (%s); counting this process's streams only", exc)
            return None if sum(1 for u in self._held.values() if u == user) >= limit else self._hold(slot, user)
        return self._hold(slot, user) if taken == 1 else None

    def _hold(self, slot: str, user: str) -> str:
        self._held[slot] = user
        return slot

    def release(self, user: str, slot: str) -> None:
        """Called when a stream ends, from code that cannot wait: the slot is given back in the background,
        with every other one given back meanwhile (one round trip, however many streams closed at once)."""
        if self._held.pop(slot, None) is None:
            return  # given back already (this instance closed first)
        self._returned.append((user, slot))
        self._returning.set()

    async def _give_back(self) -> None:
        while True:
            await self._returning.wait()
            await self._flush()

    async def _flush(self) -> None:
        self._returning.clear()
        returned, self._returned = self._returned, []
        if not returned:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user, slot in returned:
                    pipe.zrem(self._key(user), slot)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning(
                "could not give %d stream slots back (%s); they expire in %gs", len(returned), exc, self._ttl_s
            )

    async def _name(self, server: str | None) -> str:
        if self._instance is None:
            async with self._naming:
                if self._instance is None:
                    name = f"{socket.gethostname()}/{server}" if server else uuid.uuid4().hex[:12]
                    if server:
                        await self._free_predecessors(name)
                    self._instance = name
        return self._instance

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._renew(), name="livebatch-stream-slots-renew"),
            asyncio.create_task(self._give_back(), name="livebatch-stream-slots-give-back"),
        ]

    async def _free_predecessors(self, name: str) -> None:
        """Frees the slots an instance of this name held before this one started: it died with its streams
        open (SIGKILL), and their clients, reconnecting here, must not find their own old slots in the way."""
        mine = f"{name}|".encode()
        try:
            async for key in self._redis.scan_iter(match=f"{self._prefix}:*", count=500):
                members: list[bytes] = await self._redis.zrange(key, 0, -1)  # type: ignore[assignment]
                stale = [m for m in members if m.startswith(mine)]
                if stale:
                    await self._redis.zrem(key, *stale)
        except (RedisError, OSError) as exc:
            logger.warning(
                "could not free the stream slots of a previous run (%s); they expire in %gs", exc, self._ttl_s
            )

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            if not self._held:
                continue
            expires = time.time() + self._ttl_s
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for slot, user in list(self._held.items()):
                        pipe.zadd(self._key(user), {slot: expires}, xx=True)
                        pipe.pexpire(self._key(user), int(self._ttl_s * 2000))
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                logger.warning("could not renew stream slots (%s); retrying", exc)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for slot, user in list(self._held.items()):
            self.release(user, slot)  # this instance is going: its slots are free at once
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await self._flush()
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()
