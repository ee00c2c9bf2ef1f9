"""Parameters crafted to get past validation and fail in the database: each is a 422 in the error shape (or,
on the command line, a clear error and exit 2), never a 500 with a traceback, and nothing is written."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import httpx
import pytest

from livebatch.parts import Parts
from tests.api.conftest import BATCH, finished
from tests.conftest import Person, batch_body
from tests.security.support import row_counts
from tests.stream.support import assert_error
from tests.users.conftest import livebatch


def _cursor(created: Any, batch_id: str) -> str:
    raw = json.dumps([created, batch_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_crafted_cursors_and_ids_are_422_not_500(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], caplog: pytest.LogCaptureFixture
) -> None:
    batch = await finished(client, parts, people["faculty"], 1)
    before = await row_counts(parts.db)
    headers = people["faculty"].headers
    some_id = batch["id"]
    cases: list[tuple[str, str, dict[str, str], Any, str]] = [
        ("items cursor past 64 bits", "GET", {"cursor": str(2**64)}, None, "cursor"),
        ("items cursor past 63 bits", "GET", {"cursor": str(2**63)}, None, "cursor"),
        ("items cursor past 32 bits", "GET", {"cursor": str(2**31)}, None, "cursor"),
        (
            "a naive date in the batch cursor",
            "LIST",
            {"cursor": _cursor("2026-01-01T00:00:00", some_id)},
            None,
            "cursor",
        ),
        (
            "a date past year 9999 in UTC",
            "LIST",
            {"cursor": _cursor("9999-12-31T23:59:59-14:00", some_id)},
            None,
            "cursor",
        ),
        (
            "a date before year 1 in UTC",
            "LIST",
            {"cursor": _cursor("0001-01-01T00:00:00+14:00", some_id)},
            None,
            "cursor",
        ),
        ("a number for the date", "LIST", {"cursor": _cursor(12, some_id)}, None, "cursor"),
        ("a NUL byte in courseId", "POST", {}, batch_body(1, course="course\x00-uuid-1"), "courseId"),
        ("a control character in courseId", "POST", {}, batch_body(1, course="course\x1b[31m"), "courseId"),
        ("a NUL byte in a webhook URL", "WEBHOOK", {}, {"url": "https://example.com/a\x00b"}, "control characters"),
    ]
    caplog.set_level(logging.ERROR, logger="livebatch")
    for case, kind, params, body, word in cases:
        if kind == "GET":
            response = await client.get(f"{BATCH}/{some_id}/items", params=params, headers=headers)
        elif kind == "LIST":
            response = await client.get(f"{BATCH}es", params=params, headers=headers)
        elif kind == "WEBHOOK":
            response = await client.put("/api/v1/me/webhook", json=body, headers=headers)
        else:
            response = await client.post(BATCH, json=body, headers=headers)
        assert response.status_code == 422, f"{case}: {response.status_code} {response.text}"
        assert_error(response, 422, "VALIDATION_ERROR")
        assert word in response.json()["error"]["message"], (case, response.json())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await row_counts(parts.db) == before


async def test_login_link_with_a_next_path_over_512_characters_is_a_clear_cli_error(
    parts: Parts, people: dict[str, Person]
) -> None:
    before = await row_counts(parts.db)
    ran = await livebatch(parts.settings, "login-link", "--user", "ada@uni.example", "--next", "/" + "a" * 600)
    assert ran.code == 2, (ran.code, ran.stdout, ran.stderr)
    said = ran.stdout + ran.stderr
    assert "--next" in said and "512" in said and "Traceback" not in said, said
    assert await row_counts(parts.db) == before
    ok = await livebatch(parts.settings, "login-link", "--user", "ada@uni.example", "--next", "/" + "a" * 511)
    assert ok.code == 0, ok.stderr
