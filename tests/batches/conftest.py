"""Fixtures for driving the pipeline in this process: the parts of a worker process per test with its own settings and a
provider that can be watched (and held) from the outside."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import pytest

from livebatch.batches import service
from livebatch.batches.models import Batch
from livebatch.batches.schemas import BatchCreate, BudgetSpec, DifficultyDistribution
from livebatch.generation.offline import OfflineProvider
from livebatch.generation.providers import Generated, GenerationError, ItemRequest, Provider
from livebatch.parts import Parts
from livebatch.users.models import User
from tests.conftest import COURSE, Person, SettingsFactory


class ProbeProvider:
    """Wraps a provider and watches it: calls per item, generations at once (overall and per batch),
    an optional gate that holds every generation until opened, and scripted failures per item."""

    name = "probe"

    def __init__(self, inner: Provider | None = None, *, held: bool = False) -> None:
        self.inner = inner or OfflineProvider(latency_ms=10, failure_rate=0.0)
        self.calls: Counter[tuple[UUID, int]] = Counter()
        self.in_flight = 0
        self.peak = 0
        self.batch_in_flight: Counter[UUID] = Counter()
        self.batch_peak: Counter[UUID] = Counter()
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.failures: dict[int, list[GenerationError]] = {}
        self._changed = asyncio.Condition()

    def fail(self, item_index: int, *errors: GenerationError) -> None:
        """The next attempts at item `item_index` (of any batch) raise these errors, in order."""
        self.failures.setdefault(item_index, []).extend(errors)

    async def generate(self, request: ItemRequest) -> Generated:
        self.calls[request.batch_id, request.item_index] += 1
        await self._enter(request.batch_id)
        try:
            await self.gate.wait()
            queued = self.failures.get(request.item_index)
            if queued:
                raise queued.pop(0)
            return await self.inner.generate(request)
        finally:
            await self._leave(request.batch_id)

    async def _enter(self, batch_id: UUID) -> None:
        async with self._changed:
            self.in_flight += 1
            self.batch_in_flight[batch_id] += 1
            self.peak = max(self.peak, self.in_flight)
            self.batch_peak[batch_id] = max(self.batch_peak[batch_id], self.batch_in_flight[batch_id])
            self._changed.notify_all()

    async def _leave(self, batch_id: UUID) -> None:
        async with self._changed:
            self.in_flight -= 1
            self.batch_in_flight[batch_id] -= 1
            self._changed.notify_all()

    async def wait_in_flight(self, count: int, timeout: float = 30) -> None:
        """Until exactly `count` generations are under way (held at the gate, say)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.in_flight == count)

    async def aclose(self) -> None:
        await self.inner.aclose()


PartsFactory = Callable[..., Awaitable[Parts]]


@pytest.fixture
async def open_parts(make_settings: SettingsFactory) -> AsyncIterator[PartsFactory]:
    """Starts a worker parts with these setting overrides (and provider); all are closed at the end."""
    opened: list[Parts] = []

    async def start(instance: Provider | None = None, /, **overrides: Any) -> Parts:
        """`instance` replaces the provider the settings name (`provider=` is the setting)."""
        rt = Parts(make_settings(**overrides), worker=True, provider=instance)
        opened.append(rt)
        await rt.start()
        return rt

    yield start
    for rt in reversed(opened):
        await rt.aclose()


def spec(
    count: int,
    *,
    mix: tuple[int, int, int] = (30, 50, 20),
    course: str = COURSE,
    budget: BudgetSpec | None = None,
    error_rate_guard: bool = True,
) -> BatchCreate:
    easy, medium, hard = mix
    return BatchCreate(
        course_id=course,
        target_count=count,
        difficulty_distribution=DifficultyDistribution(easy=easy, medium=medium, hard=hard),
        budget=budget,
        error_rate_guard=error_rate_guard,
    )


async def start_batch(
    rt: Parts,
    owner: Person,
    count: int,
    *,
    mix: tuple[int, int, int] = (30, 50, 20),
    budget: BudgetSpec | None = None,
    error_rate_guard: bool = True,
) -> UUID:
    """Creates a batch the way the API does: the service, then the unit of work's commit (which queues it)."""
    batch_spec = spec(count, mix=mix, budget=budget, error_rate_guard=error_rate_guard)
    async with rt.transactions.begin() as uow:
        batch = await service.create_batch(uow, batch_spec, owner=owner.user, limits=rt.limits, now=rt.now())
        await uow.commit()
    return batch.id


Control = Callable[..., Awaitable[Batch]]


async def control(rt: Parts, operation: Control, batch_id: UUID, user: User, **kwargs: Any) -> Batch:
    """Pause, resume, cancel or retry-failed as the API does it: one unit of work, committed once."""
    async with rt.transactions.begin() as uow:
        batch = await operation(uow, batch_id, user=user, now=rt.now(), **kwargs)
        await uow.commit()
    return batch
