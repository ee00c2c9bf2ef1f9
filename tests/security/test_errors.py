"""Every error of the contract, on every batch endpoint, in the one shape `{"error": {"code", "message"}}`.

Errors are plain JSON answers given before any stream starts, so the progress endpoint is checked here
in process too; what happens once a stream runs is tested against a live server in tests/stream.
"""

from __future__ import annotations

import base64
import json
import warnings
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning
from sqlalchemy import delete

from livebatch.auth import COOKIE, mint_token
from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.courses.service import put_course
from livebatch.generation.offline import OfflineProvider
from livebatch.parts import Parts
from livebatch.users.models import User
from tests.api.conftest import BATCH, create, finished
from tests.checks import event_log, load_batch, wait_for_status, worker_of
from tests.conftest import Person, SettingsFactory, batch_body, make_person
from tests.security.support import row_counts
from tests.stream.support import assert_error, logged, parse_sse

# (method, path under /api/v1/generation/batch/{id}) of every endpoint about one batch.
BATCH_ENDPOINTS = [
    ("GET", ""),
    ("GET", "/progress"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/cancel"),
    ("POST", "/retry-failed"),
    ("GET", "/items"),
    ("GET", "/items.jsonl"),
    ("PUT", "/budget"),  # issue 13
]
# The body an endpoint needs to get as far as asking who may call it (a missing body is a 422 of its own).
BODIES: dict[str, dict[str, Any]] = {"/budget": {"tokens": 1000}}
# Every endpoint of the caller's own webhook (issue 13): faculty only, and only their own.
WEBHOOK_ENDPOINTS = [
    ("GET", "/api/v1/me/webhook"),
    ("PUT", "/api/v1/me/webhook"),
    ("DELETE", "/api/v1/me/webhook"),
    ("GET", "/api/v1/me/webhook/deliveries"),
    ("POST", f"/api/v1/me/webhook/deliveries/{uuid4()}/redeliver"),
]


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(max_running_batches_per_user=2)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = next((b for suffix, b in BODIES.items() if path.endswith(suffix)), None)
    return await client.request(method, path, headers=headers or {}, json=body)


def _hmac(claims: dict[str, Any], secret: str, algorithm: str) -> str:
    """Our secret, another algorithm (PyJWT rightly warns that the test secret is short for SHA-384/512)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(claims, secret, algorithm=algorithm)


def _unsigned(header: dict[str, str], claims: dict[str, Any], signature: bytes) -> str:
    """A token with any header and signature bytes, for algorithms this machine cannot sign with (RS256
    needs the `cryptography` package): refused for its `alg` before any signature is checked."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    return ".".join((part(json.dumps(header).encode()), part(json.dumps(body).encode()), part(signature)))


def _bad_credentials(settings: Settings, person: Person) -> dict[str, dict[str, str]]:
    now = utcnow()
    claims: dict[str, Any] = {"sub": str(person.user.id), "role": "faculty", "exp": now + timedelta(hours=1)}
    secret = settings.effective_jwt_secret

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "missing": {},
        "empty bearer": {"Authorization": "Bearer "},
        "not a bearer": {"Authorization": f"Basic {person.token}"},
        "malformed": bearer("not.a.jwt"),
        "expired": bearer(mint_token(settings, person.user, now=now - timedelta(hours=2), ttl=timedelta(hours=1))),
        "not yet valid": bearer(jwt.encode(claims | {"nbf": now + timedelta(hours=1)}, secret, algorithm="HS256")),
        "wrong signature": bearer(jwt.encode(claims, "another-secret-" * 4, algorithm="HS256")),
        "alg none": bearer(jwt.encode(claims, "", algorithm="none")),
        "another algorithm": bearer(_hmac(claims, secret, "HS512")),
        "HS384": bearer(_hmac(claims, secret, "HS384")),
        "RS256": bearer(_unsigned({"alg": "RS256", "typ": "JWT"}, claims, bytes(256))),
        "alg None, capitalised": bearer(_unsigned({"alg": "None", "typ": "JWT"}, claims, b"")),
        "no expiry": bearer(jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256")),
        "unknown user": bearer(jwt.encode(claims | {"sub": str(uuid4())}, secret, algorithm="HS256")),
        "subject not a user id": bearer(jwt.encode(claims | {"sub": "ada"}, secret, algorithm="HS256")),
        "bad cookie": {"Cookie": "livebatch_session=not.a.jwt"},
    }


async def test_every_endpoint_is_401_without_a_valid_token(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    batch = await finished(client, parts, people["faculty"], 1)
    paths = [(m, f"{BATCH}/{batch['id']}{p}") for m, p in BATCH_ENDPOINTS]
    paths += [("POST", BATCH), ("GET", f"{BATCH}es"), ("GET", "/api/v1/me"), *WEBHOOK_ENDPOINTS]
    before = await row_counts(parts.db)
    for case, headers in _bad_credentials(parts.settings, people["faculty"]).items():
        for method, path in paths:
            response = await _call(client, method, path, headers)
            assert response.status_code == 401, f"{case}: {method} {path}"
            assert_error(response, 401, "UNAUTHORIZED")
    assert await row_counts(parts.db) == before


async def test_a_token_of_a_deleted_user_is_401_everywhere(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    batch = await finished(client, parts, people["faculty"], 1)
    leaver = await make_person(parts.db, parts.settings, "leaver@uni.example")
    assert (await client.get("/api/v1/me", headers=leaver.headers)).status_code == 200
    async with parts.db.session() as session:
        await session.execute(delete(User).where(User.id == leaver.user.id))
        await session.commit()
    before = await row_counts(parts.db)
    paths = [(m, f"{BATCH}/{batch['id']}{p}") for m, p in BATCH_ENDPOINTS]
    for method, path in [*paths, ("POST", BATCH), ("GET", f"{BATCH}es"), ("GET", "/api/v1/me")]:
        response = await _call(client, method, path, leaver.headers)
        assert_error(response, 401, "UNAUTHORIZED")
        assert response.json()["error"]["message"] == "The token's user no longer exists."
    cookie = {"Cookie": f"{COOKIE}={leaver.token}"}
    page = await client.get("/faculty/generate/batches", headers=cookie)
    assert page.status_code == 303 and page.headers["location"].startswith("/signin")
    assert await row_counts(parts.db) == before


async def test_every_batch_endpoint_is_403_for_a_student(client: httpx.AsyncClient, people: dict[str, Person]) -> None:
    batch = await create(client, people["faculty"], 1)
    student = people["student"].headers
    for method, path in BATCH_ENDPOINTS:
        assert_error(await _call(client, method, f"{BATCH}/{batch['id']}{path}", student), 403, "FORBIDDEN")
    assert_error(await client.post(BATCH, json=batch_body(1), headers=student), 403, "FORBIDDEN")
    assert_error(await client.get(f"{BATCH}es", headers=student), 403, "FORBIDDEN")
    for method, path in WEBHOOK_ENDPOINTS:
        assert_error(await _call(client, method, path, student), 403, "FORBIDDEN")
    # Signed in, just not allowed: who they are is still known.
    assert (await client.get("/api/v1/me", headers=student)).json()["role"] == "student"


async def test_every_batch_endpoint_is_403_for_another_faculty_member_and_changes_nothing(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    batch = await finished(client, parts, people["faculty"], 2)
    before = await load_batch(parts.db, batch["id"])
    other = people["other"].headers
    for method, path in BATCH_ENDPOINTS:
        response = await _call(client, method, f"{BATCH}/{batch['id']}{path}", other)
        assert_error(response, 403, "FORBIDDEN")
        assert "Cardiovascular" not in response.text and batch["id"] not in response.text  # nothing leaks
    after = await load_batch(parts.db, batch["id"])
    assert (after.status, after.last_seq, after.config) == (before.status, before.last_seq, before.config)


async def test_another_facultys_batch_as_a_cursor_shows_nothing_of_it(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    """A batch id is no key: used as the history's cursor by someone else, it pages their own batches."""
    async with parts.db.session() as session:
        await put_course(session, "course-secret-1", "Secret Course Title")
        await session.commit()
    await finished(client, parts, people["faculty"], 1)
    theirs = await create(client, people["faculty"], 1, course="course-secret-1")
    await wait_for_status(parts, theirs["id"])
    mine = await finished(client, parts, people["other"], 1)
    first = (await client.get(f"{BATCH}es", params={"limit": 1}, headers=people["faculty"].headers)).json()
    assert [b["id"] for b in first["batches"]] == [theirs["id"]]
    other = people["other"]
    page = await client.get(f"{BATCH}es", params={"cursor": first["nextCursor"]}, headers=other.headers)
    assert page.status_code == 200
    assert theirs["id"] not in page.text and "Secret Course Title" not in page.text
    assert [b["id"] for b in (await client.get(f"{BATCH}es", headers=other.headers)).json()["batches"]] == [mine["id"]]
    cookie = {"Cookie": f"{COOKIE}={other.token}"}
    history = await client.get("/faculty/generate/batches", params={"before": theirs["id"]}, headers=cookie)
    assert history.status_code == 200
    assert mine["id"] in history.text
    assert theirs["id"] not in history.text
    assert "Secret Course Title" not in history.text


MALFORMED_IDS = (
    str(uuid4()),
    "not-a-uuid",
    "1",
    "00000000-0000-0000-0000-00000000000g",
    "b" * 5000,
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "' OR '1'='1",
    "%F0%9F%92%A5",
)


async def test_every_batch_endpoint_is_404_for_an_unknown_or_malformed_id(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    before = await row_counts(parts.db)
    for batch_id in MALFORMED_IDS:
        for method, path in BATCH_ENDPOINTS:
            response = await _call(client, method, f"{BATCH}/{batch_id}{path}", people["faculty"].headers)
            assert response.status_code == 404, f"{method} {batch_id}{path}"
            assert_error(response, 404, "NOT_FOUND")
    assert await row_counts(parts.db) == before


async def test_a_bad_last_event_id_is_422(client: httpx.AsyncClient, people: dict[str, Person]) -> None:
    batch = await create(client, people["faculty"], 1)
    url = f"{BATCH}/{batch['id']}/progress"
    for headers, params in (
        ({"Last-Event-ID": "abc"}, {}),
        ({"Last-Event-ID": "-3"}, {}),
        ({}, {"lastEventId": "1e3"}),
        ({}, {"lastEventId": "99999"}),  # well-formed, but beyond the batch's log
        ({"Last-Event-ID": "0"}, {"lastEventId": "-5"}),  # the header wins, but a malformed query id is no less so
    ):
        response = await client.get(url, headers=people["faculty"].headers | headers, params=params)
        assert_error(response, 422, "VALIDATION_ERROR")
        assert "Last-Event-ID" in response.json()["error"]["message"]


async def test_a_last_event_id_of_another_batch_names_only_this_batchs_events(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    """Ids count each batch's own events: one from a longer batch is beyond a shorter one's log (422), and
    one within it resumes this batch only, never showing the other's events."""
    longer = await finished(client, parts, people["faculty"], 4)
    shorter = await finished(client, parts, people["faculty"], 1)
    longer_log, shorter_log = await event_log(parts.db, longer["id"]), await event_log(parts.db, shorter["id"])
    assert len(longer_log) > len(shorter_log)
    url = f"{BATCH}/{shorter['id']}/progress"
    beyond = {"Last-Event-ID": str(longer_log[-1][0])}
    assert_error(await client.get(url, headers=people["faculty"].headers | beyond), 422, "VALIDATION_ERROR")
    within = {"Last-Event-ID": "1"}
    response = await client.get(url, headers=people["faculty"].headers | within)
    assert response.status_code == 200
    events = logged(parse_sse(response.text))
    assert events == shorter_log[1:]
    longer_items = {p["itemId"] for _, name, p in longer_log if name.startswith("item.")}
    assert not any(item in response.text for item in longer_items)


async def test_too_many_active_batches_is_429_on_create_and_on_retry(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    faculty = people["faculty"]
    provider = worker_of(parts).provider
    assert isinstance(provider, OfflineProvider)
    provider.failure_rate = 1.0  # a batch that failed, to retry
    failed = await finished(client, parts, faculty, 1)
    provider.failure_rate = 0.0
    running = [await create(client, faculty, 500) for _ in range(2)]
    response = await client.post(BATCH, json=batch_body(1), headers=faculty.headers)
    assert_error(response, 429, "TOO_MANY_BATCHES")
    assert_error(
        await client.post(f"{BATCH}/{failed['id']}/retry-failed", headers=faculty.headers), 429, "TOO_MANY_BATCHES"
    )
    # Another faculty member has limits of their own.
    assert (await client.post(BATCH, json=batch_body(1), headers=people["other"].headers)).status_code == 201
    # Ending one frees its place.
    await client.post(f"{BATCH}/{running[0]['id']}/cancel", headers=faculty.headers)
    assert (await client.post(BATCH, json=batch_body(1), headers=faculty.headers)).status_code == 201
    history = (await client.get(f"{BATCH}es", headers=faculty.headers)).json()["batches"]
    assert len(history) == 4  # the refused ones were not created
    for batch in running[1:]:
        await client.post(f"{BATCH}/{batch['id']}/cancel", headers=faculty.headers)


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]) -> None:
    padding = "x" * (parts.settings.max_body_bytes + 1)
    response = await client.post(BATCH, json=batch_body(1) | {"padding": padding}, headers=people["faculty"].headers)
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


async def test_unknown_routes_and_methods_answer_in_the_same_shape(
    client: httpx.AsyncClient, people: dict[str, Person]
) -> None:
    assert_error(await client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
    response = await client.delete(f"{BATCH}es", headers=people["faculty"].headers)
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
