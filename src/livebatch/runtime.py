"""The composition root: settings in, the parts of one process out (database, bus, queue, provider).

The API process, `livebatch run-batch` and `livebatch worker` each build one. `commit` is the boundary
every writer goes through: commit once, then ring the bus and queue the dispatched items.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.api import run_receiver_task

from livebatch.batches import repository
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.service import Limits, take_dispatched, top_up
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.events import log
from livebatch.events.bus import Bus, LocalBus
from livebatch.generation import tasks
from livebatch.generation.broker import ItemQueue
from livebatch.generation.providers import Provider, create_provider
from livebatch.metrics import Metrics

logger = logging.getLogger("livebatch.runtime")


def create_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from livebatch.events.redis_bus import RedisBus

        return RedisBus(settings.redis_url, prefix=settings.redis_prefix, capacity=settings.stream_buffer)
    return LocalBus(capacity=settings.stream_buffer)


def create_broker(settings: Settings, *, on_lost: Callable[[], None] | None = None) -> AsyncBroker:
    if settings.redis_url:
        # Redelivery of a dead worker's message is left to our lease sweeper; keep Redis's own reclaim
        # (idle_timeout) well above the longest generation so it never runs a healthy task twice.
        return ItemQueue(
            settings.redis_url,
            prefix=settings.redis_prefix,
            idle_timeout_ms=int(max(600.0, settings.generation_timeout_s * 4) * 1000),
            on_lost=on_lost,
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
        self.broker = create_broker(settings, on_lost=self._queue_lost)
        self.generate = tasks.register(self.broker)
        self.provider = provider or create_provider(settings)
        self.durable_queue = settings.redis_url is not None
        self.metrics = Metrics()
        self.metrics.bus_subscribers.set_function(lambda: self.bus.subscriber_count)
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.lease = timedelta(seconds=settings.lease_s)
        self.generation_deadline_s = settings.generation_timeout_s
        self.claims: dict[UUID, int] = {}  # attempts this process is generating: item id -> attempt number
        self.dispatch_timeout = timedelta(seconds=settings.dispatch_timeout_s)
        self.retry_policy = RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms)
        self.limits = Limits(
            max_target_count=settings.max_target_count,
            max_active_batches=settings.max_running_batches_per_user,
            concurrency=settings.batch_concurrency,
        )
        self.streams_by_user: Counter[UUID] = Counter()
        self._background: list[asyncio.Task[Any]] = []
        self._requeue: asyncio.Task[None] | None = None
        self.accepting = True  # False once stopping: received items are handed back, not started
        self._held: Counter[UUID] = Counter()  # items this process received and has not finished with
        self._refused: set[UUID] = set()
        self.work: set[asyncio.Task[Any]] = set()  # item tasks under way in this process
        self.closing = False
        self._stuck: set[asyncio.Task[Any]] = set()  # background tasks that did not stop when cancelled

    async def start(self) -> None:
        self.metrics.watch_loop(asyncio.get_running_loop())
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
        self._background.append(asyncio.create_task(tasks.renew_leases_forever(self), name="livebatch-leases"))
        if self.durable_queue:
            receiver = run_receiver_task(
                self.broker, max_async_tasks=self.settings.max_concurrency * 4, propagate_exceptions=False
            )
            self._background.append(asyncio.create_task(receiver, name="livebatch-receiver"))

    def _queue_lost(self) -> None:
        """The queue lost its messages (Redis restarted empty): queue every dispatched item again now,
        rather than after the dispatch timeout. Runs in the worker's listener; never blocks it."""
        if not self.worker or (self._requeue is not None and not self._requeue.done()):
            return
        self._requeue = asyncio.create_task(self._requeue_dispatched(), name="livebatch-requeue")
        self._background = [task for task in self._background if not task.done()] + [self._requeue]

    async def _requeue_dispatched(self) -> None:
        try:
            await tasks.sweep(self, all_dispatched=True)
        except Exception:
            logger.exception("re-queueing after the queue was lost failed; the sweeper will catch up")

    @contextlib.contextmanager
    def holding(self, item_id: UUID) -> Iterator[None]:
        self._held[item_id] += 1
        try:
            yield
        finally:
            self._held[item_id] -= 1
            if self._held[item_id] <= 0:
                del self._held[item_id]
            if not self.accepting:
                self._refused.add(item_id)  # maybe not started: a candidate to hand back

    async def drain(self, timeout: float) -> bool:
        """Stops taking work, gives the attempts in flight up to `timeout` to record their outcome, and
        hands back the items received but not started (waiting for a slot or a retry delay), so that a
        worker stopped on purpose leaves no lease to expire and no message to time out. True when no
        attempt was left running."""
        self.accepting = False
        await self._stop_background()
        try:
            async with asyncio.timeout(timeout):
                # Holding every slot means no attempt is running, and keeps new claims from starting.
                for _ in range(self.settings.max_concurrency):
                    await self.slots.acquire()
        except TimeoutError:
            return False
        unfinished = [*self._held, *self._refused]
        if isinstance(self.broker, ItemQueue):
            try:
                unfinished += [UUID(arg) for arg in await self.broker.take_unfinished()]
            except Exception as exc:
                logger.warning("could not read this worker's unacknowledged messages (%s)", exc)
        await self._hand_back(unfinished)
        return True

    async def _hand_back(self, item_ids: list[UUID]) -> None:
        """Dispatches the items' batches afresh, so that other workers take them now."""
        if not item_ids:
            return
        handed_back = 0
        try:
            async with self.db.session() as session:
                for batch_id in await repository.batches_of(session, item_ids):
                    # The batch row first, its items after: the lock order of every writer.
                    if await repository.lock_batch(session, batch_id) is None:
                        continue
                    handed_back += await repository.undispatch(session, batch_id, item_ids)
                    await top_up(session, batch_id, now=self.now())
                await self.commit(session)
        except Exception:
            logger.exception("could not hand items back; they are queued again after the dispatch timeout")
            return
        logger.info("handed back %d items", handed_back, extra={"handed_back": handed_back})

    async def _stop_background(self) -> None:
        background, self._background = self._background, []
        for task in background:
            task.cancel()
        self._stuck |= await _settle(background, 0.5)

    async def aclose(self) -> None:
        """Stops background work, item work, the broker, the provider, the bus and the database.

        Every wait is bounded: a task that will not stop is logged with its stack, never waited on forever
        (Taskiq's Redis receiver can lose a cancel that lands as its first XREADGROUP starts; closing the
        broker's connections ends that read, so the receiver gets a second chance after the shutdown)."""
        self.closing = True
        await self._stop_background()
        # Item work outlives a cancelled receiver; cancelled here, it leaves its message unacked (a Redis
        # queue delivers it again) and its item to the lease. Left running, it would ack through a closed pool.
        work = set(self.work)
        for task in work:
            task.cancel()
        _log_stuck(await _settle(work, 5.0), "item work")
        await self.broker.shutdown()
        _log_stuck(await _settle(self._stuck, 5.0), "background task")
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
            except Exception as exc:
                # Committed as dispatched: the sweeper queues it again once it looks lost.
                logger.warning("could not queue item %s (%s); the sweeper will queue it again", item_id, exc)


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
