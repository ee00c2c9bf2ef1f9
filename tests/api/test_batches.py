"""The batch resources: create, read, history, controls, generated items and their export, the docs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest

from livebatch.batches.models import Item
from livebatch.batches.schemas import FeedEntry
from livebatch.batches.status import BatchStatus, ItemStatus
from livebatch.config import Settings
from livebatch.generation.offline import OfflineProvider
from livebatch.parts import Parts
from tests.api.conftest import BATCH, create, finished
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status, wait_until, worker_of
from tests.conftest import COURSE, Person, SettingsFactory, batch_body
from tests.stream.support import SNAPSHOT, assert_error

# The brief's MOCK_BATCH_JOB fixture (plus `completed_at`, from MOCK_COMPLETED_BATCH), and what the
# issue adds for the page's first paint; `course` and `error_message` are for the summary card.
MOCK_BATCH_JOB = {
    "id",
    "status",
    "total_items",
    "completed_items",
    "failed_items",
    "config",
    "started_at",
    "created_at",
}
# Beyond the fixture: what the page shows without a copy of the server's rules (the status in words, whether it
# is over, the controls it allows).
BATCH_KEYS = MOCK_BATCH_JOB | {
    *("completed_at", "course", "error_message", "snapshot"),
    *("statusLabel", "finished", "allowedActions"),
    *("pauseReason", "guards"),  # issue 13: why it is paused, what its guards see
    *("activeMs", "runningSince", "runRate"),  # elapsed time without pauses, and the whole run's rate once over
}
DETAIL_KEYS = BATCH_KEYS | {"items", "lastEventId", "answerKeys", "failureGroups"}
BRIEF_CONFIG_KEYS = {"targetCount", "courseId", "questionType", "difficultyDistribution"}
CONFIG_KEYS = BRIEF_CONFIG_KEYS | {"budget", "errorRateGuard"}  # issue 13: the guards a batch asks for
FEED_KEYS = {"itemId", "itemIndex", "status", "generationId", "errorMessage", "durationMs", "timestamp"}
FEED_EXTRA = {"errorKind", "retryCount", "willRetry", "stopped", "retried"}  # the retry information, beyond the brief
GENERATED_KEYS = {
    "generationId",
    "itemId",
    "itemIndex",
    "difficulty",
    "stem",
    "options",
    "answer",
    "explanation",
    "createdAt",
    *("promptTokens", "completionTokens", "cost", "currency"),  # issue 13: what generating it used
}


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(max_running_batches_per_user=10)


async def test_create_batch_answers_201_with_the_batch(client: httpx.AsyncClient, people: dict[str, Person]) -> None:
    body = batch_body(5, mix=(20, 60, 20))
    response = await client.post(BATCH, json=body, headers=people["faculty"].headers)
    assert response.status_code == 201
    batch = response.json()
    assert set(batch) == BATCH_KEYS
    assert set(batch["config"]) == CONFIG_KEYS
    assert {k: batch["config"][k] for k in BRIEF_CONFIG_KEYS} == body
    # A client that sends nothing of the guards gets the defaults: no budget, the error-rate guard on.
    assert (batch["config"]["budget"], batch["config"]["errorRateGuard"]) == (None, True)
    assert batch["pauseReason"] is None
    assert batch["guards"] == {"budgetReached": False, "recentAttempts": 0, "recentFailures": 0, "errorWindow": 20}
    assert (batch["status"], batch["total_items"], batch["completed_items"], batch["failed_items"]) == (
        "queued",
        5,
        0,
        0,
    )
    assert batch["course"] == {"id": COURSE, "code": "CVP-301", "title": "Cardiovascular Pathology"}
    assert (batch["statusLabel"], batch["finished"], batch["allowedActions"]) == ("Queued", False, ["pause", "cancel"])
    assert set(batch["snapshot"]) == SNAPSHOT and batch["snapshot"]["pendingItems"] == 5
    # No rate yet, but an estimate: two rounds of 4 items at the offline provider's 10 ms.
    assert (batch["snapshot"]["throughputRate"], batch["snapshot"]["estimatedTimeRemainingMs"]) == (0, 20)
    assert batch["started_at"] is None and batch["completed_at"] is None


async def test_read_batch_has_everything_the_page_needs_on_load(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    batch = await finished(client, parts, people["faculty"], 4)
    response = await client.get(f"{BATCH}/{batch['id']}", headers=people["faculty"].headers)
    assert response.status_code == 200
    detail = response.json()
    assert set(detail) == DETAIL_KEYS
    assert set(detail["config"]) == CONFIG_KEYS
    assert detail["status"] == "completed" and detail["started_at"] and detail["completed_at"]
    assert (detail["statusLabel"], detail["finished"], detail["allowedActions"]) == ("Completed", True, [])
    log = await event_log(parts.db, batch["id"])
    assert detail["lastEventId"] == log[-1][0]
    assert set(detail["snapshot"]) == SNAPSHOT and detail["snapshot"]["completedItems"] == 4
    # The feed, oldest first, one row per item as the page's reducer would hold it after the log.
    assert [row["itemIndex"] for row in detail["items"]] == [0, 1, 2, 3]
    completed = {p["itemId"]: p for _, name, p in log if name == "item.completed"}
    for row in detail["items"]:
        assert FEED_KEYS >= set(row) - FEED_EXTRA, row
        assert None not in row.values()  # optional fields are left out, never null
        event = completed[row["itemId"]]
        assert (row["status"], row["generationId"], row["durationMs"], row["timestamp"]) == (
            "completed",
            event["generationId"],
            event["durationMs"],
            event["completedAt"],
        )
    # `feed` bounds the rows: the most recent ones.
    short = await client.get(f"{BATCH}/{batch['id']}", params={"feed": 2}, headers=people["faculty"].headers)
    assert [row["itemIndex"] for row in short.json()["items"]] == [2, 3]
    # The answer keys of the generated items, by letter, every letter named.
    generated = (await client.get(f"{BATCH}/{batch['id']}/items", headers=people["faculty"].headers)).json()
    keyed = [item["answer"] for item in generated["items"]]
    assert detail["answerKeys"] == {letter: keyed.count(letter) for letter in "ABCDE"}
    assert sum(detail["answerKeys"].values()) == 4


@pytest.mark.parametrize(
    ("batch_status", "will_retry", "row"),
    [
        (BatchStatus.running, True, {"willRetry": True}),
        (BatchStatus.paused, True, {"willRetry": True}),
        (BatchStatus.failed, True, {"willRetry": False, "stopped": True}),
        (BatchStatus.failed, False, {"willRetry": False}),
        (BatchStatus.completed_with_errors, False, {"willRetry": False}),
    ],
)
def test_a_feed_row_waiting_for_a_retry_is_stopped_once_its_batch_has_failed(
    batch_status: BatchStatus, will_retry: bool, row: dict[str, Any]
) -> None:
    """A failed batch retries nothing until "Retry failed": the row of an item that was waiting for its next
    attempt says that no attempt is coming (the page shows the row as the API sends it)."""
    now = datetime(2026, 2, 19, 12, tzinfo=UTC)
    item = Item(
        id=uuid4(),
        batch_id=uuid4(),
        idx=3,
        difficulty="easy",
        status=ItemStatus.pending if will_retry else ItemStatus.failed,
        attempts=1,
        next_attempt_at=now,
        started_at=now,
        finished_at=now,
        last_error="LLM provider timeout after 30s",
        last_error_kind="timeout",
        will_retry=will_retry,
    )
    sent = FeedEntry.of(item, batch_status).model_dump(by_alias=True)
    assert sent["status"] == "failed" and sent["retryCount"] == 1
    assert {key: sent[key] for key in ("willRetry", "stopped") if key in sent} == row


async def test_list_batches_is_the_owners_history_newest_first_in_pages(
    client: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    made = [(await create(client, faculty, 1))["id"] for _ in range(5)]
    await create(client, people["other"], 1)  # someone else's: never listed
    newest_first = made[::-1]

    async def pages(limit: int) -> list[list[str]]:
        found: list[list[str]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            page = (await client.get(f"{BATCH}es", params=params, headers=faculty.headers)).json()
            found.append([b["id"] for b in page["batches"]])
            cursor = page["nextCursor"]
            if cursor is None:
                return found

    assert await pages(2) == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert await pages(4) == [newest_first[:4], newest_first[4:]]
    assert await pages(5) == [newest_first]  # exactly a page: no empty page after it
    assert await pages(100) == [newest_first]
    first = (await client.get(f"{BATCH}es", headers=faculty.headers)).json()
    assert set(first) == {"batches", "nextCursor"} and set(first["batches"][0]) == BATCH_KEYS
    for params in ({"limit": 0}, {"limit": 101}, {"cursor": "bm90IGEgY3Vyc29y"}, {"cursor": "%%%"}):
        assert_error(await client.get(f"{BATCH}es", params=params, headers=faculty.headers), 422, "VALIDATION_ERROR")


async def test_pause_resume_and_cancel_move_the_batch_and_log_why(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await create(client, faculty, 200)
    url = f"{BATCH}/{batch['id']}"
    paused = await client.post(f"{url}/pause", headers=faculty.headers)
    assert paused.status_code == 200 and set(paused.json()) == BATCH_KEYS
    assert paused.json()["status"] == "paused"
    resumed = await client.post(f"{url}/resume", headers=faculty.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] in ("queued", "running")
    cancelled = await client.post(f"{url}/cancel", headers=faculty.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    names = [name for _, name, _ in await event_log(parts.db, batch["id"])]
    assert names.count("batch.paused") == names.count("batch.resumed") == names.count("batch.complete") == 1
    assert names[-1] == "batch.complete"
    await assert_consistent(parts.db, batch["id"])


REFUSED = {
    "running": ("resume", "retry-failed"),
    "paused": ("pause", "retry-failed"),
    "completed": ("pause", "resume", "cancel", "retry-failed"),
    "cancelled": ("pause", "resume", "cancel", "retry-failed"),
}


async def test_a_control_that_does_not_apply_is_409_and_changes_nothing(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    provider = worker_of(parts).provider
    assert isinstance(provider, OfflineProvider)
    # A second an item: the 200-item batch is still running when it is refused below, however busy the
    # machine, while the 3-item one completes in about a second.
    provider.latency_ms = 1000
    batches = {state: await create(client, faculty, 3 if state == "completed" else 200) for state in REFUSED}
    await wait_for_status(parts, batches["completed"]["id"])
    await client.post(f"{BATCH}/{batches['paused']['id']}/pause", headers=faculty.headers)
    await client.post(f"{BATCH}/{batches['cancelled']['id']}/cancel", headers=faculty.headers)

    async def settled() -> bool:  # a paused batch still records the attempts it had in flight
        return (await load_batch(parts.db, batches["paused"]["id"])).in_progress_items == 0

    await wait_until(settled)
    for state, actions in REFUSED.items():
        seen = await load_batch(parts.db, batches[state]["id"])
        for action in actions:
            response = await client.post(f"{BATCH}/{batches[state]['id']}/{action}", headers=faculty.headers)
            assert response.status_code == 409, f"{action} on a {state} batch"
            assert_error(response, 409, "INVALID_STATE")
            assert state in response.json()["error"]["message"]
        after = await load_batch(parts.db, batches[state]["id"])
        assert after.status == state or state == "running"
        if state != "running":  # a running batch moves on by itself; the others must not have moved
            assert after.last_seq == seen.last_seq
    await client.post(f"{BATCH}/{batches['running']['id']}/cancel", headers=faculty.headers)


async def test_retry_failed_runs_the_failed_items_again(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    provider = worker_of(parts).provider
    assert isinstance(provider, OfflineProvider)
    provider.failure_rate = 1.0  # the provider is down: every attempt fails
    faculty = people["faculty"]
    batch = await create(client, faculty, 3)
    failed = await wait_for_status(parts, batch["id"])
    assert (failed.status, failed.failed_items) == ("failed", 3)
    provider.failure_rate = 0.0  # and back
    response = await client.post(f"{BATCH}/{batch['id']}/retry-failed", headers=faculty.headers)
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert response.json()["failed_items"] == 0 and response.json()["error_message"] is None
    done = await wait_for_status(parts, batch["id"])
    assert (done.status, done.completed_items, done.failed_items) == ("completed", 3, 0)
    retried = [p for _, name, p in await event_log(parts.db, batch["id"]) if name == "batch.retried"]
    assert [p["retriedItems"] for p in retried] == [3]
    await assert_consistent(parts.db, batch["id"])


async def test_generated_items_come_in_pages_by_item_index(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await finished(client, parts, faculty, 5)
    url = f"{BATCH}/{batch['id']}/items"

    async def page(**params: int) -> tuple[list[int], int | None]:
        body = (await client.get(url, params=params, headers=faculty.headers)).json()
        return [i["itemIndex"] for i in body["items"]], body["nextCursor"]

    assert await page(limit=2) == ([0, 1], 1)
    assert await page(limit=2, cursor=1) == ([2, 3], 3)
    assert await page(limit=2, cursor=3) == ([4], None)
    assert await page(limit=5) == ([0, 1, 2, 3, 4], None)  # exactly a page: no cursor to an empty one
    assert await page(limit=4) == ([0, 1, 2, 3], 3)
    assert await page(cursor=4) == ([], None)
    items = (await client.get(url, headers=faculty.headers)).json()["items"]
    for item in items:
        assert set(item) == GENERATED_KEYS
        assert [o["label"] for o in item["options"]] == ["A", "B", "C", "D", "E"]
        assert item["answer"] in "ABCDE" and item["stem"] and item["explanation"]
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": -2}, {"cursor": "x"}):
        assert_error(await client.get(url, params=params, headers=faculty.headers), 422, "VALIDATION_ERROR")


async def test_export_is_one_generated_item_per_json_line(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    batch = await finished(client, parts, faculty, 4)
    response = await client.get(f"{BATCH}/{batch['id']}/items.jsonl", headers=faculty.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"] == f'attachment; filename="batch-{batch["id"]}.jsonl"'
    assert response.text.endswith("\n")
    exported = [json.loads(line) for line in response.text.splitlines()]
    listed = (await client.get(f"{BATCH}/{batch['id']}/items", headers=faculty.headers)).json()["items"]
    assert exported == listed and len(exported) == 4
    # A batch with nothing generated yet exports an empty file, not an error. (A second to generate its item:
    # the cancel comes first however busy the machine.)
    provider = worker_of(parts).provider
    assert isinstance(provider, OfflineProvider)
    provider.latency_ms = 1000
    empty = await create(client, faculty, 1)
    await client.post(f"{BATCH}/{empty['id']}/cancel", headers=faculty.headers)
    response = await client.get(f"{BATCH}/{empty['id']}/items.jsonl", headers=faculty.headers)
    assert (response.status_code, response.text) == (200, "")


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    schema = (await client.get("/openapi.json")).json()
    paths = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    batch = "/api/v1/generation/batch/{batch_id}"
    assert {
        ("POST", "/api/v1/generation/batch"),
        ("GET", "/api/v1/generation/batches"),
        ("GET", batch),
        ("GET", f"{batch}/progress"),
        ("POST", f"{batch}/pause"),
        ("POST", f"{batch}/resume"),
        ("POST", f"{batch}/cancel"),
        ("POST", f"{batch}/retry-failed"),
        ("GET", f"{batch}/items"),
        ("GET", f"{batch}/items.jsonl"),
    } <= paths
    progress = schema["paths"][f"{batch}/progress"]["get"]
    assert "text/event-stream" in progress["responses"]["200"]["content"]
    assert {"401", "403", "404", "422"} <= set(progress["responses"])
