"""The JSON API in process (httpx.ASGITransport): plain request and response, no stream to buffer."""

from __future__ import annotations

from typing import Any

import httpx

from livebatch.runtime import Runtime
from tests.checks import wait_for_status
from tests.conftest import Person, batch_body

BATCH = "/api/v1/generation/batch"


async def create(client: httpx.AsyncClient, person: Person, count: int = 3, **kwargs: Any) -> dict[str, Any]:
    response = await client.post(BATCH, json=batch_body(count, **kwargs), headers=person.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def finished(client: httpx.AsyncClient, runtime: Runtime, person: Person, count: int = 3) -> dict[str, Any]:
    """A batch that has run to its end."""
    batch = await create(client, person, count)
    await wait_for_status(runtime, batch["id"])
    return batch
