"""Bad input to the batch API, each answered with a clear 4xx in the error shape, naming what is wrong,
and with nothing written: the row count of every table is the same before and after.

Every rule of a batch's config, bodies that are not a config at all (other JSON types, not JSON, nested
too deep, a number too long, too large, streamed in chunks past the limit), and bad query parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from livebatch.parts import Parts
from tests.api.conftest import BATCH, finished
from tests.conftest import Person, batch_body
from tests.security.support import row_counts
from tests.stream.support import assert_error

MIX = {"easy": 30, "medium": 50, "hard": 20}

# (what is wrong, body, a word the message must contain)
BAD_CONFIGS: list[tuple[str, Any, str]] = [
    ("courseId missing", {k: v for k, v in batch_body(5).items() if k != "courseId"}, "courseId"),
    ("targetCount missing", {k: v for k, v in batch_body(5).items() if k != "targetCount"}, "targetCount"),
    ("mix missing", {k: v for k, v in batch_body(5).items() if k != "difficultyDistribution"}, "difficulty"),
    ("a difficulty missing", batch_body(5) | {"difficultyDistribution": {"easy": 50, "medium": 50}}, "hard"),
    ("courseId null", batch_body(5) | {"courseId": None}, "courseId"),
    ("courseId a number", batch_body(5) | {"courseId": 7}, "courseId"),
    ("courseId empty", batch_body(5) | {"courseId": ""}, "courseId"),
    ("courseId too long", batch_body(5) | {"courseId": "c" * 65}, "courseId"),
    ("courseId unknown", batch_body(5) | {"courseId": "no-such-course"}, "no-such-course"),
    ("targetCount a string", batch_body(5) | {"targetCount": "5"}, "targetCount"),
    ("targetCount a float", batch_body(5) | {"targetCount": 5.5}, "targetCount"),
    ("targetCount a boolean", batch_body(5) | {"targetCount": True}, "targetCount"),
    ("targetCount a list", batch_body(5) | {"targetCount": [5]}, "targetCount"),
    ("targetCount 0", batch_body(5) | {"targetCount": 0}, "targetCount"),
    ("targetCount negative", batch_body(5) | {"targetCount": -3}, "targetCount"),
    ("targetCount over the limit", batch_body(5) | {"targetCount": 1001}, "targetCount"),
    ("targetCount huge", batch_body(5) | {"targetCount": 10**30}, "targetCount"),
    ("questionType unknown", batch_body(5) | {"questionType": "essay"}, "questionType"),
    ("questionType a number", batch_body(5) | {"questionType": 1}, "questionType"),
    ("mix a string", batch_body(5) | {"difficultyDistribution": "30/50/20"}, "difficultyDistribution"),
    ("mix a list", batch_body(5) | {"difficultyDistribution": [30, 50, 20]}, "difficultyDistribution"),
    ("mix under 100", batch_body(5, mix=(30, 50, 19)), "must be 100"),
    ("mix over 100", batch_body(5, mix=(30, 50, 21)), "must be 100"),
    ("mix negative", batch_body(5, mix=(-10, 60, 50)), "easy"),
    ("mix over 100 each", batch_body(5, mix=(150, -25, -25)), "easy"),
    ("mix a float", batch_body(5) | {"difficultyDistribution": MIX | {"easy": 29.5, "hard": 20.5}}, "easy"),
    ("mix a numeric string", batch_body(5) | {"difficultyDistribution": MIX | {"easy": "30"}}, "easy"),
    ("mix an unknown difficulty", batch_body(5) | {"difficultyDistribution": MIX | {"expert": 0}}, "expert"),
    ("an unknown field", batch_body(5) | {"priority": "high"}, "priority"),
    ("a snake_case twin", batch_body(5) | {"target_count": 5}, "target_count"),
    ("a list", [batch_body(5)], "body"),
    ("a string", "five items please", "body"),
    ("a number", 5, "body"),
    ("null", None, "body"),
]


@pytest.fixture
async def counted(parts: Parts, people: dict[str, Person]) -> AsyncIterator[dict[str, int]]:
    """The row counts before the test (once people and courses exist); the test must leave them so."""
    before = await row_counts(parts.db)
    yield before
    assert await row_counts(parts.db) == before, "a refused request wrote something"


async def test_every_config_rule_is_a_422_that_names_the_field(
    client: httpx.AsyncClient, people: dict[str, Person], counted: dict[str, int]
) -> None:
    for case, body, word in BAD_CONFIGS:
        response = await client.post(BATCH, json=body, headers=people["faculty"].headers)
        assert response.status_code == 422, f"{case}: {response.text}"
        assert_error(response, 422, "VALIDATION_ERROR")
        assert word in response.json()["error"]["message"], f"{case}: {response.json()}"


async def test_a_body_that_is_not_json_or_is_too_deep_is_refused(
    client: httpx.AsyncClient, people: dict[str, Person], counted: dict[str, int]
) -> None:
    headers = people["faculty"].headers | {"Content-Type": "application/json"}
    for body, status, code in (
        (b"{not json", 422, "VALIDATION_ERROR"),
        (b'{"courseId": "course-uuid-1", "targetCount": 5', 422, "VALIDATION_ERROR"),
        (b"\xff\xfe{}", 422, "VALIDATION_ERROR"),
        (b"", 422, "VALIDATION_ERROR"),
        (b"[" * 20_000 + b"]" * 20_000, 400, "BAD_REQUEST"),  # nested past the parser's recursion limit
        (b'{"targetCount": ' + b"9" * 5_000 + b"}", 400, "BAD_REQUEST"),  # past Python's int digit limit
    ):
        assert_error(await client.post(BATCH, content=body, headers=headers), status, code)
    nested: Any = batch_body(5)
    for _ in range(200):  # deep, but within the parser's limit: refused as an unknown field
        nested = {"courseId": "course-uuid-1", "targetCount": 5, "difficultyDistribution": MIX, "x": nested}
    response = await client.post(BATCH, json=nested, headers=people["faculty"].headers)
    assert_error(response, 422, "VALIDATION_ERROR")
    form = await client.post(BATCH, data={"courseId": "course-uuid-1"}, headers=people["faculty"].headers)
    assert_error(form, 422, "VALIDATION_ERROR")


async def test_a_body_over_the_limit_is_413_also_when_streamed_in_chunks(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], counted: dict[str, int]
) -> None:
    limit = parts.settings.max_body_bytes
    big = batch_body(5) | {"padding": "x" * limit}
    assert_error(await client.post(BATCH, json=big, headers=people["faculty"].headers), 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is counted as it streams in
        yield b'{"courseId": "course-uuid-1", "padding": "'
        for _ in range(limit // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    headers = people["faculty"].headers | {"Content-Type": "application/json"}
    response = await client.post(BATCH, content=chunks(), headers=headers)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    bogus = headers | {"Content-Length": "12abc"}
    assert_error(await client.post(BATCH, content=b"{}", headers=bogus), 413, "PAYLOAD_TOO_LARGE")


async def test_bad_query_parameters_are_422(client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]) -> None:
    batch = await finished(client, parts, people["faculty"], 1)
    before = await row_counts(parts.db)
    headers = people["faculty"].headers
    for path, params, word in (
        (f"{BATCH}es", {"limit": "0"}, "limit"),
        (f"{BATCH}es", {"limit": "101"}, "limit"),
        (f"{BATCH}es", {"limit": "ten"}, "limit"),
        (f"{BATCH}es", {"cursor": "not-a-cursor"}, "cursor"),
        (f"{BATCH}es", {"cursor": "W10"}, "cursor"),  # base64 of "[]": decodes, but is not a cursor
        (f"{BATCH}es", {"cursor": "c" * 201}, "cursor"),
        (f"{BATCH}/{batch['id']}", {"feed": "-1"}, "feed"),
        (f"{BATCH}/{batch['id']}", {"feed": "10001"}, "feed"),
        (f"{BATCH}/{batch['id']}/items", {"cursor": "-2"}, "cursor"),
        (f"{BATCH}/{batch['id']}/items", {"limit": "201"}, "limit"),
        (f"{BATCH}/{batch['id']}/items", {"cursor": "1.5"}, "cursor"),
        (f"{BATCH}/{batch['id']}/items", {"cursor": str(2**31)}, "cursor"),  # past PostgreSQL's integer
    ):
        response = await client.get(path, params=params, headers=headers)
        assert_error(response, 422, "VALIDATION_ERROR")
        assert word in response.json()["error"]["message"], (path, params, response.json())
    assert await row_counts(parts.db) == before
