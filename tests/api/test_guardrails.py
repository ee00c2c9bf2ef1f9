"""The API of issue 13: what a batch used and what it cost, its guards, and `PUT .../budget`, which only its
owner may call."""

from __future__ import annotations

import json

import httpx
import pytest

from livebatch.config import ModelPrice, Settings
from livebatch.parts import Parts
from tests.api.conftest import BATCH, create
from tests.checks import assert_consistent, load_batch, wait_for_status, wait_until
from tests.conftest import Person, SettingsFactory, batch_body
from tests.stream.support import assert_error


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        prices={"offline": ModelPrice(input=0.15, output=0.60)}, currency="EUR", max_running_batches_per_user=10
    )


async def test_a_finished_batch_reads_with_its_tokens_and_cost_and_each_item_with_its_own(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await create(client, faculty, 3)
    await wait_for_status(parts, batch["id"])
    detail = (await client.get(f"{BATCH}/{batch['id']}", headers=faculty.headers)).json()
    snapshot = detail["snapshot"]
    row = await load_batch(parts.db, batch["id"])
    assert (snapshot["promptTokens"], snapshot["completionTokens"]) == (row.prompt_tokens, row.completion_tokens)
    assert snapshot["cost"] == pytest.approx(row.cost_nanos / 1e9) and snapshot["cost"] > 0
    assert snapshot["currency"] == "EUR"
    assert snapshot["estimatedTimeRemainingRangeMs"] == [0, 0], "nothing left"
    items = (await client.get(f"{BATCH}/{batch['id']}/items", headers=faculty.headers)).json()["items"]
    exported = [
        json.loads(line)
        for line in (await client.get(f"{BATCH}/{batch['id']}/items.jsonl", headers=faculty.headers)).text.splitlines()
    ]
    assert exported == items
    assert sum(i["promptTokens"] for i in items) == snapshot["promptTokens"]
    assert sum(i["completionTokens"] for i in items) == snapshot["completionTokens"]
    assert sum(i["cost"] for i in items) == pytest.approx(snapshot["cost"])
    assert {i["currency"] for i in items} == {"EUR"}


async def test_a_budget_is_asked_for_on_create_shown_when_spent_and_raised_by_its_owner(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await create(client, faculty, 30, budget={"tokens": 1200})
    url = f"{BATCH}/{batch['id']}"
    assert batch["config"]["budget"] == {"cost": None, "tokens": 1200}
    await wait_for_status(parts, batch["id"], {"paused"})

    async def settled() -> bool:
        return (await load_batch(parts.db, batch["id"])).in_progress_items == 0

    await wait_until(settled)
    detail = (await client.get(url, headers=faculty.headers)).json()
    assert (detail["status"], detail["pauseReason"], detail["allowedActions"]) == (
        "paused",
        "budget_reached",
        ["resume", "cancel"],
    )
    assert detail["guards"]["budgetReached"] is True
    assert detail["snapshot"]["promptTokens"] + detail["snapshot"]["completionTokens"] >= 1200

    refused = await client.post(f"{url}/resume", headers=faculty.headers)
    assert_error(refused, 409, "BUDGET_REACHED")
    assert refused.json()["error"]["message"] == (
        "The batch's budget (1200 tokens) is spent; raise it before resuming."
    )
    raised = await client.put(f"{url}/budget", json={"cost": 1.0}, headers=faculty.headers)
    assert raised.status_code == 200, raised.text
    assert raised.json()["config"]["budget"] == {"cost": 1.0, "tokens": None}
    assert raised.json()["status"] == "paused" and raised.json()["guards"]["budgetReached"] is False
    resumed = await client.post(f"{url}/resume", headers=faculty.headers)
    assert resumed.status_code == 200 and resumed.json()["pauseReason"] is None
    done = await wait_for_status(parts, batch["id"])
    assert (done.status, done.completed_items) == ("completed", 30)
    await assert_consistent(parts.db, batch["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cost": 0}, "cost"),
        ({"cost": -1}, "cost"),
        ({"cost": "5"}, "cost"),
        ({"tokens": 0}, "tokens"),
        ({"tokens": 1.5}, "tokens"),
        ({"tokens": 10**13}, "tokens"),
        ({"dollars": 5}, "dollars"),
        ([], "body"),
    ],
)
async def test_a_bad_budget_is_422_and_changes_nothing(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], body: object, field: str
) -> None:
    faculty = people["faculty"]
    batch = await create(client, faculty, 200)
    response = await client.put(f"{BATCH}/{batch['id']}/budget", json=body, headers=faculty.headers)
    assert_error(response, 422, "VALIDATION_ERROR")
    assert field in response.json()["error"]["message"]
    assert (await load_batch(parts.db, batch["id"])).config["budget"] is None
    created = await client.post(BATCH, json=batch_body(3) | {"budget": body}, headers=faculty.headers)  # same rules
    assert_error(created, 422, "VALIDATION_ERROR")
    await client.post(f"{BATCH}/{batch['id']}/cancel", headers=faculty.headers)


async def test_removing_the_budget_and_turning_the_error_rate_guard_off(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await create(client, faculty, 200, budget={"cost": 0.5}, error_rate_guard=False)
    assert (batch["config"]["budget"], batch["config"]["errorRateGuard"]) == ({"cost": 0.5, "tokens": None}, False)
    removed = await client.put(f"{BATCH}/{batch['id']}/budget", json={}, headers=faculty.headers)
    assert removed.status_code == 200 and removed.json()["config"]["budget"] is None
    await client.post(f"{BATCH}/{batch['id']}/cancel", headers=faculty.headers)


async def test_the_budget_endpoint_is_documented_with_its_errors(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/generation/batch/{batch_id}/budget"]["put"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "404", "413", "422"}
    streamed = schema["paths"]["/api/v1/generation/batch/{batch_id}/progress"]["get"]["responses"]["200"]
    events = streamed["content"]["text/event-stream"]["schema"]["properties"]["event"]["enum"]
    assert "batch.reset" in events
