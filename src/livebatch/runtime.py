"""The composition root: settings in, the parts of one process out (database, bus, queue, provider).

The API process, `livebatch run-batch` and `livebatch worker` each build one. `commit` is the boundary
every writer goes through: commit once, then ring the bus and queue the dispatched items.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.api import run_receiver_task

from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import Limits, take_dispatched
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.events import log
from livebatch.events.bus import Bus, LocalBus
from livebatch.generation import tasks
from livebatch.generation.providers import Provider, create_provider
from livebatch.metrics import Metrics

logger = logging.getLogger("livebatch.runtime")


def create_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from livebatch.events.redis_bus import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix, capacity=settings.stream_buffer)
    return LocalBus(capacity=settings.stream_buffer)


def create_broker(settings: Settings) -> AsyncBroker:
    if settings.redis_url:
        from taskiq_redis import RedisStreamBroker

        # Redelivery of a dead worker's message is left to our lease sweeper; keep Redis's own reclaim
        # (idle_timeout) well above the longest generation so it never runs a healthy task twice.
        return RedisStreamBroker(
            settings.redis_url,
            queue_name=f"{settings.redis_prefix}:items",
            consumer_group_name=f"{settings.redis_prefix}:workers",
            idle_timeout=int(max(600.0, settings.lease_s * 4) * 1000),
            xread_block=1000,
        )
    return InMemoryBroker(max_stored_results=1)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        worker: bool,
        provider: Provider | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.now = clock
        self.db = Database(
            settings.effective_database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        self.bus = create_bus(settings)
        self.broker = create_broker(settings)
        self.generate = tasks.register(self.broker)
        self.provider = provider or create_provider(settings)
        self.durable_queue = settings.redis_url is not None
        self.metrics = Metrics()
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.lease = timedelta(seconds=settings.lease_s)
        self.generation_deadline_s = settings.lease_s * 0.8
        self.dispatch_timeout = timedelta(seconds=settings.dispatch_timeout_s)
        self.retry_policy = RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms)
        self.limits = Limits(
            max_target_count=settings.max_target_count,
            max_active_batches=settings.max_running_batches_per_user,
            concurrency=settings.batch_concurrency,
        )
        self.streams_by_user: Counter[UUID] = Counter()
        self._background: list[asyncio.Task[Any]] = []
        self.work: set[asyncio.Task[Any]] = set()  # item tasks under way in this process
        self.closing = False

    async def start(self) -> None:
        await self.bus.start()
        self.broker.state.runtime = self
        self.broker.is_worker_process = self.worker
        await self.broker.startup()
        if not self.worker:
            return
        # Embedded: the previous process's in-memory queue is gone, so all dispatched work is lost.
        reconcile = not self.durable_queue
        try:
            await tasks.sweep(self, all_dispatched=reconcile)
            reconcile = False
        except Exception:
            logger.exception("start-up reconcile failed; the sweeper will try again")
        sweeper = tasks.sweep_forever(self, all_dispatched=reconcile)
        self._background.append(asyncio.create_task(sweeper, name="livebatch-sweeper"))
        if self.durable_queue:
            receiver = run_receiver_task(
                self.broker, max_async_tasks=self.settings.max_concurrency * 4, propagate_exceptions=False
            )
            self._background.append(asyncio.create_task(receiver, name="livebatch-receiver"))

    async def aclose(self) -> None:
        """Stops background work, item work, the broker, the provider, the bus and the database.

        Every wait is bounded: a task that will not stop is logged with its stack, never waited on forever
        (Taskiq's Redis receiver can lose a cancel that lands as its first XREADGROUP starts; closing the
        broker's connections ends that read, so the receiver gets a second chance after the shutdown)."""
        self.closing = True
        background, self._background = self._background, []
        for task in background:
            task.cancel()
        stuck = await _settle(background, 0.5)
        # Item work outlives a cancelled receiver; cancelled here, it leaves its message unacked (a Redis
        # queue delivers it again) and its item to the lease. Left running, it would ack through a closed pool.
        work = set(self.work)
        for task in work:
            task.cancel()
        _log_stuck(await _settle(work, 5.0), "item work")
        await self.broker.shutdown()
        _log_stuck(await _settle(stuck, 5.0), "background task")
        await self.provider.aclose()
        try:
            async with asyncio.timeout(10):
                await self.bus.aclose()
        except TimeoutError:
            logger.warning("the bus did not close in 10 s; going on")
        await self.db.dispose()

    async def commit(self, session: AsyncSession) -> None:
        """Commits once; then publishes the events and queues the items the transaction dispatched."""
        try:
            await session.commit()
        except BaseException:
            log.discard_notices(session)
            take_dispatched(session)
            raise
        notices = log.take_notices(session)
        dispatched = take_dispatched(session)
        if notices:
            await self.bus.publish(notices)
        await self.kick(dispatched)

    async def kick(self, item_ids: Iterable[UUID]) -> None:
        for item_id in item_ids:
            try:
                await self.generate.kiq(str(item_id))
            except Exception:
                # Committed as dispatched: the sweeper queues it again once it looks lost.
                logger.exception("could not queue item %s", item_id)


async def _settle(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> set[asyncio.Task[Any]]:
    """Waits at most `timeout` for (cancelled) tasks to end; returns those still running."""
    pending = set(tasks)
    if not pending:
        return set()
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s ended with an error at close", task.get_name(), exc_info=task.exception())
    return stuck


def _log_stuck(tasks: set[asyncio.Task[Any]], what: str) -> None:
    for task in tasks:
        stack = io.StringIO()
        task.print_stack(file=stack)
        logger.warning("%s %s would not stop; left behind:\n%s", what, task.get_name(), stack.getvalue())
