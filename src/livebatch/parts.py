"""The composition root: settings in, the parts of one process out, started and stopped in order.

`app.py` (the web process), `livebatch worker` and `livebatch run-batch` each build one `Parts`; the
parts below it receive what they need as arguments and never reach back up here.

    Database ─┬─ Transactions (unit of work) ─┬─ Worker (item work, sweeper, leases)   only when `worker`
    Bus ──────┤                               └─ web: BatchStreams, the API's dependencies
    TaskQueue ┘ (Taskiq: in-process broker, or Redis stream broker scaled out)
    Database ─── Deliverer (the webhook outbox)                                      only when `worker`
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from taskiq import AsyncBroker, InMemoryBroker

from livebatch.batches.events import LOGGED_EVENT_NAMES
from livebatch.batches.service import Limits
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.events.bus import Bus, LocalBus
from livebatch.generation.offline import OFFLINE_MODEL
from livebatch.generation.providers import Provider
from livebatch.generation.queue import ItemQueue, TaskQueue
from livebatch.generation.worker import Worker
from livebatch.metrics import Metrics
from livebatch.uow import OffLoop, Transactions
from livebatch.webhooks.deliverer import Deliverer

if TYPE_CHECKING:
    from livebatch.events.slots import RedisSlots

logger = logging.getLogger("livebatch.worker")


def create_bus(settings: Settings) -> Bus:
    if settings.redis_url:
        from livebatch.events.redis_bus import RedisBus, bus_key

        return RedisBus(
            settings.redis_url,
            prefix=settings.redis_prefix,
            key=bus_key(settings.effective_jwt_secret),
            names=LOGGED_EVENT_NAMES,
            capacity=settings.stream_buffer,
        )
    return LocalBus(capacity=settings.stream_buffer)


def create_stream_slots(settings: Settings) -> RedisSlots | None:
    """Scaled out, each user's open streams are counted across the API instances, in Redis."""
    if not settings.redis_url:
        return None
    from livebatch.events.slots import RedisSlots

    return RedisSlots(settings.redis_url, prefix=settings.redis_prefix)


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


def create_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from livebatch.generation.openai_provider import OpenAIProvider

        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_s=settings.openai_timeout_s,
            max_tokens=settings.openai_max_tokens,
            temperature=settings.openai_temperature,
        )
    from livebatch.generation.offline import OfflineProvider

    return OfflineProvider(latency_ms=settings.offline_latency_ms, failure_rate=settings.offline_failure_rate)


def limits_of(settings: Settings) -> Limits:
    model = provider_model(settings)
    return Limits(
        max_target_count=settings.max_target_count,
        max_active_batches=settings.max_running_batches_per_user,
        max_items_per_day=settings.max_items_per_day,
        concurrency=settings.batch_concurrency,
        item_prior_ms=settings.effective_item_prior_ms,
        currency=settings.currency,
        model=model,
        priced=model in settings.prices,
    )


def provider_model(settings: Settings) -> str:
    """The model the configured provider's attempts are priced as."""
    return settings.openai_model if settings.provider == "openai" else OFFLINE_MODEL


class Parts:
    """One process's database, bus, queue and (when it does item work) worker."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: bool,
        provider: Provider | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.now = clock
        self.limits = limits_of(settings)
        self.metrics = Metrics()
        self.db = Database(
            settings.effective_database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        self.bus = create_bus(settings)
        self.stream_slots = create_stream_slots(settings)
        self.metrics.bus_subscribers.set_function(lambda: self.bus.subscriber_count)
        self.queue = TaskQueue(create_broker(settings, on_lost=self._queue_lost))
        self.transactions = Transactions(self.db, self.bus, self.queue)
        self.worker: Worker | None = None
        # Webhooks go out from every process that does item work, never from a request.
        self.deliverer = Deliverer(self.db, settings, clock=clock) if worker else None
        if worker:
            self.worker = Worker(
                settings,
                transactions=self.transactions,
                queue=self.queue,
                provider=provider or create_provider(settings),
                metrics=self.metrics,
                clock=clock,
            )

    def _queue_lost(self) -> None:
        if self.worker is not None:
            self.worker.queue_lost()

    async def start(self) -> None:
        self.metrics.watch_loop(asyncio.get_running_loop())
        if self.worker is not None and self.settings.is_sqlite:
            # Item state changes on a loop of their own: see `OffLoop` (uow.py) and the README's Performance.
            self.transactions.off_loop = OffLoop(self.settings.effective_database_url)
        await self.bus.start()
        if self.stream_slots is not None:
            await self.stream_slots.start()
        broker = self.queue.broker
        broker.state.worker = self.worker
        broker.is_worker_process = self.worker is not None
        await broker.startup()
        if self.worker is not None:
            await self.worker.start()
        if self.deliverer is not None:
            await self.deliverer.start()

    async def stop(self) -> None:
        """Stopped on purpose (SIGTERM, Ctrl+C): lets the attempts in flight finish and hands back what was
        received but not started, so that a restart neither waits for leases to expire nor counts those
        attempts as failed; then closes everything."""
        if self.worker is not None:
            logger.info("stopping: finishing the attempts in flight")
            # An attempt never runs longer than the generation deadline; past it, its lease expires anyway.
            if not await self.worker.drain(self.settings.generation_timeout_s + 5):
                logger.warning("attempts still running at exit; their items are retried once their lease expires")
        await self.aclose()

    async def aclose(self) -> None:
        """Stops item work, the queue, the bus and the database; every wait is bounded."""
        if self.deliverer is not None:
            await self.deliverer.aclose()
        if self.worker is not None:
            await self.worker.stop()
        await self.queue.aclose()
        if self.worker is not None:
            await self.worker.aclose()
        if self.stream_slots is not None:
            await self.stream_slots.aclose()
        if self.transactions.off_loop is not None:
            await self.transactions.off_loop.aclose()
        try:
            async with asyncio.timeout(10):
                await self.bus.aclose()
        except TimeoutError:
            logger.warning("the bus did not close in 10 s; going on")
        await self.db.dispose()
