"""Failures grouped by cause on `GET /batch/{id}`, and `POST /batch/{id}/retry-failed` with a filter: the old call
unchanged, a filter by kind or by group, the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from livebatch.app import create_app
from livebatch.generation.providers import GenerationError
from livebatch.parts import Parts
from tests.api.conftest import BATCH, create
from tests.batches.conftest import ProbeProvider
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status
from tests.conftest import Person, SettingsFactory
from tests.stream.support import assert_error

GROUP_KEYS = {"key", "errorKind", "message", "example", "count"}


@pytest.fixture
def probe() -> ProbeProvider:
    return ProbeProvider()


@pytest.fixture
async def parts(make_settings: SettingsFactory, probe: ProbeProvider) -> AsyncIterator[Parts]:
    rt = Parts(make_settings(max_attempts=2), worker=True, provider=probe)
    await rt.start()
    yield rt
    await rt.aclose()


@pytest.fixture
async def client(parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(parts=parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        yield http


async def _mixed(client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, person: Person) -> dict[str, Any]:
    """Five items: #0 times out twice, #1 and #2 repeat an option twice (other letters each), #3 and #4 succeed."""
    probe.fail(0, *[GenerationError("timeout", "LLM provider timeout after 60s")] * 2)
    for index, letters in ((1, "B and D"), (2, "A and C")):
        error = GenerationError("validation", f"Validation failed: options {letters} are identical")
        probe.fail(index, error, error)
    batch = await create(client, person, 5)
    assert (await wait_for_status(parts, batch["id"])).status == "completed_with_errors"
    return batch


async def test_the_batch_lists_its_failures_grouped_by_cause(
    client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await _mixed(client, parts, probe, faculty)
    detail = (await client.get(f"{BATCH}/{batch['id']}", headers=faculty.headers)).json()
    groups = detail["failureGroups"]
    assert all(set(g) == GROUP_KEYS for g in groups)
    assert [(g["errorKind"], g["message"], g["count"]) for g in groups] == [
        ("validation", "Validation failed: options … are identical", 2),
        ("timeout", "LLM provider timeout after …", 1),
    ]
    assert groups[0]["example"] in {f"Validation failed: options {x} are identical" for x in ("B and D", "A and C")}
    assert sum(g["count"] for g in groups) == detail["failed_items"] == detail["snapshot"]["failedItems"]
    # A batch with no failure has no group (and costs no query for them).
    probe.failures.clear()
    clean = await create(client, faculty, 2)
    await wait_for_status(parts, clean["id"])
    assert (await client.get(f"{BATCH}/{clean['id']}", headers=faculty.headers)).json()["failureGroups"] == []


async def test_retry_these_retries_one_group_and_leaves_the_rest_failed(
    client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await _mixed(client, parts, probe, faculty)
    url = f"{BATCH}/{batch['id']}"
    groups = (await client.get(url, headers=faculty.headers)).json()["failureGroups"]
    timeouts = next(g for g in groups if g["errorKind"] == "timeout")

    response = await client.post(f"{url}/retry-failed", json={"groups": [timeouts["key"]]}, headers=faculty.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["failed_items"]) == ("running", 2)
    done = await wait_for_status(parts, batch["id"])
    assert (done.status, done.completed_items, done.failed_items) == ("completed_with_errors", 3, 2)
    after = (await client.get(url, headers=faculty.headers)).json()["failureGroups"]
    assert [(g["errorKind"], g["count"]) for g in after] == [("validation", 2)]
    retried = [p["retriedItems"] for _, name, p in await event_log(parts.db, batch["id"]) if name == "batch.retried"]
    assert retried == [1]
    await assert_consistent(parts.db, batch["id"])


async def test_retry_by_kind_and_the_old_call_without_a_body(
    client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await _mixed(client, parts, probe, faculty)
    url = f"{BATCH}/{batch['id']}/retry-failed"
    response = await client.post(url, json={"errorKinds": ["validation"]}, headers=faculty.headers)
    assert response.status_code == 200 and response.json()["failed_items"] == 1
    assert (await wait_for_status(parts, batch["id"])).failed_items == 1
    # No body at all: everything that failed, as before the filter existed.
    response = await client.post(url, headers=faculty.headers)
    assert response.status_code == 200 and response.json()["failed_items"] == 0
    done = await wait_for_status(parts, batch["id"])
    assert (done.status, done.completed_items) == ("completed", 5)
    retried = [p["retriedItems"] for _, name, p in await event_log(parts.db, batch["id"]) if name == "batch.retried"]
    assert retried == [2, 1]


async def test_a_bad_or_empty_filter_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, people: dict[str, Person]
) -> None:
    faculty, other = people["faculty"], people["other"]
    batch = await _mixed(client, parts, probe, faculty)
    url = f"{BATCH}/{batch['id']}/retry-failed"
    before = await load_batch(parts.db, batch["id"])
    bodies: list[object] = [
        {"errorKinds": ["sleepy"]},
        {"errorKinds": []},
        {"groups": []},
        {"groups": ["x" * 65]},
        {"errorKinds": "timeout"},
        {"kinds": ["timeout"]},
        ["timeout"],
    ]
    for body in bodies:
        response = await client.post(url, json=body, headers=faculty.headers)
        assert_error(response, 422, "VALIDATION_ERROR")
    for nothing in ({"errorKinds": ["rate_limited"]}, {"groups": ["timeout-0123456789"]}):
        response = await client.post(url, json=nothing, headers=faculty.headers)
        assert_error(response, 409, "INVALID_STATE")
        assert "No failed item" in response.json()["error"]["message"]
    # Owner only, with a filter as without one.
    assert_error(await client.post(url, json={"errorKinds": ["timeout"]}, headers=other.headers), 403, "FORBIDDEN")
    after = await load_batch(parts.db, batch["id"])
    assert (after.status, after.last_seq, after.failed_items) == (before.status, before.last_seq, 3)


async def test_a_running_batch_refuses_a_filtered_retry_as_it_refuses_any(
    client: httpx.AsyncClient, parts: Parts, probe: ProbeProvider, people: dict[str, Person]
) -> None:
    probe.gate.clear()  # nothing finishes: the batch stays running
    faculty = people["faculty"]
    batch = await create(client, faculty, 2)
    await probe.wait_in_flight(2)
    response = await client.post(
        f"{BATCH}/{batch['id']}/retry-failed", json={"errorKinds": ["timeout"]}, headers=faculty.headers
    )
    assert_error(response, 409, "INVALID_STATE")
    assert "has no failed items to retry" in response.json()["error"]["message"]
    await client.post(f"{BATCH}/{batch['id']}/cancel", headers=faculty.headers)
    # The attempts stay at the gate: stopped there, outside any transaction, when the parts close.
