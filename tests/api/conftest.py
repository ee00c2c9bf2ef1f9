"""The JSON API in process (httpx.ASGITransport): plain request and response, no stream to buffer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from livebatch.config import Settings
from livebatch.parts import Parts
from tests.checks import wait_for_status, worker_of
from tests.conftest import Person, batch_body

BATCH = "/api/v1/generation/batch"


@pytest.fixture
async def parts(settings: Settings) -> AsyncIterator[Parts]:
    """The shared fixture's parts, closed only once no item is mid-attempt: cancelling an attempt in
    the middle of its SQLite transaction can leave the other writers waiting out their 30 s busy
    timeout inside aclose() (seen as 30 s teardowns)."""
    rt = Parts(settings, worker=True)
    await rt.start()
    yield rt
    async with asyncio.timeout(30):
        for _ in range(settings.max_concurrency):  # every slot back: no attempt is running
            await worker_of(rt).slots.acquire()
    await rt.aclose()


async def create(client: httpx.AsyncClient, person: Person, count: int = 3, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(BATCH, json=batch_body(count, **kwargs), headers=person.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def finished(client: httpx.AsyncClient, parts: Parts, person: Person, count: int = 3) -> dict[str, Any]:
    """A batch that has run to its end."""
    batch = await create(client, person, count)
    await wait_for_status(parts, batch["id"])
    return batch
