"""Scaled out, the open-streams limit is a user's, not an instance's: behind a load balancer a user could
otherwise hold the limit on every API instance. Two real instances on one Redis; the limit is 2."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import LiveFactory, Person, SettingsFactory, batch_body
from tests.scaled.conftest import wait_until
from tests.stream.support import assert_error, progress_url

LIMIT = 2


@pytest.fixture
def scaled_only(backend: Any) -> None:
    if not backend.scaled:
        pytest.skip("instances share the count through Redis: runs with --backend=scaled")


pytestmark = pytest.mark.usefixtures("scaled_only")


async def _hold(http: httpx.AsyncClient, batch_id: str, opened: asyncio.Event) -> None:
    async with http.stream("GET", progress_url(batch_id)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()  # kept: dropping the iterator would close the response
        await anext(lines)
        opened.set()
        await asyncio.sleep(3600)  # until cancelled


async def test_the_stream_limit_holds_across_instances_and_a_closed_stream_frees_its_slot(
    make_settings: SettingsFactory, live_process: LiveFactory, people: dict[str, Person]
) -> None:
    settings = make_settings(max_streams_per_user=LIMIT)
    serve = ("serve", "--no-worker", "--host", "127.0.0.1", "--port", "0")
    first, second = live_process(settings, *serve, port=0), live_process(settings, *serve, port=0)
    headers = people["faculty"].headers
    async with (
        httpx.AsyncClient(base_url=first.base_url, headers=headers, timeout=30) as a,
        httpx.AsyncClient(base_url=second.base_url, headers=headers, timeout=30) as b,
    ):
        created = await a.post("/api/v1/generation/batch", json=batch_body(20))
        assert created.status_code == 201, created.text
        batch_id = created.json()["id"]
        assert (await a.post(f"/api/v1/generation/batch/{batch_id}/pause")).status_code == 200
        opened = [asyncio.Event() for _ in range(LIMIT)]
        holders = [asyncio.create_task(_hold(a, batch_id, event)) for event in opened]
        try:
            async with asyncio.timeout(30):
                await asyncio.gather(*(event.wait() for event in opened))
            # The limit is held on the first instance: the second refuses, in the contract's shape.
            async with b.stream("GET", progress_url(batch_id)) as third:  # a stream, were it let through
                assert third.status_code == 429, "a third stream was let through on the other instance"
                await third.aread()
                assert_error(third, 429, "TOO_MANY_STREAMS")
            # Another user is not affected.
            other = {"Authorization": f"Bearer {people['other'].token}"}
            assert (await b.get(progress_url(batch_id), headers=other)).status_code == 403  # not theirs, not 429
            holders[0].cancel()

            async def slot_back() -> bool:
                async with b.stream("GET", progress_url(batch_id)) as response:
                    return response.status_code == 200

            await wait_until(slot_back, timeout=10, what="the closed stream's slot to be free on the other instance")
        finally:
            for holder in holders:
                holder.cancel()
            await asyncio.gather(*holders, return_exceptions=True)
