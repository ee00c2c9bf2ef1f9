"""Local users from the command line: `livebatch token` and `livebatch login-link`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit

import httpx
import pytest
import typer

from livebatch import cli
from livebatch.auth import COOKIE
from livebatch.db import Database
from livebatch.parts import Parts
from livebatch.users import repository
from tests.conftest import Person, batch_body
from tests.stream.support import assert_error
from tests.users.conftest import PUBLIC_URL, Clock, livebatch


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_creates_the_user_and_prints_a_working_token(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], db: Database
) -> None:
    ran = await livebatch(parts.settings, "token", "--user", "Newcomer@Uni.example", "--role", "faculty")
    assert ran.code == 0, ran.stderr
    token = ran.stdout.strip()
    assert "\n" not in token  # one line: `export LIVEBATCH_TOKEN=$(livebatch token ...)`
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert (me["email"], me["role"]) == ("newcomer@uni.example", "faculty")
    async with db.read_session() as session:
        user = await repository.get_user_by_email(session, "newcomer@uni.example")
    assert user is not None and str(user.id) == me["id"] and user.role == "faculty"
    assert (await client.post("/api/v1/generation/batch", json=batch_body(1), headers=bearer(token))).status_code == 201


async def test_token_with_another_role_changes_an_existing_users_role(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    ran = await livebatch(parts.settings, "token", "--user", "ada@uni.example", "--role", "student")
    assert ran.code == 0, ran.stderr
    token = ran.stdout.strip()
    me = (await client.get("/api/v1/me", headers=bearer(token))).json()
    assert (me["id"], me["role"]) == (str(people["faculty"].user.id), "student")
    assert_error(await client.get("/api/v1/generation/batches", headers=bearer(token)), 403, "FORBIDDEN")


async def test_login_link_signs_in_once_with_an_httponly_cookie_then_expires(
    client: httpx.AsyncClient, parts: Parts, clock: Clock, people: dict[str, Person]
) -> None:
    first, second = await asyncio.gather(
        livebatch(parts.settings, "login-link", "--user", "ada@uni.example", "--next", "/faculty/generate/batches"),
        livebatch(parts.settings, "login-link", "--user", "ada@uni.example"),
    )
    assert (first.code, second.code) == (0, 0), first.stderr + second.stderr
    link = urlsplit(first.stdout.strip())
    assert f"{link.scheme}://{link.netloc}" == PUBLIC_URL and link.path == "/auth/login"

    response = await client.get(f"{link.path}?{link.query}")
    assert response.status_code == 303
    assert response.headers["location"] == "/faculty/generate/batches"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite", "max-age"} <= attributes and "samesite=lax" in cookie.lower()
    assert "secure" not in attributes  # plain http here; set when LIVEBATCH_PUBLIC_URL is https
    # The cookie signs the browser in.
    me = await client.get("/api/v1/me")
    assert (me.status_code, me.json()["email"]) == (200, "ada@uni.example")

    # Once only: the same link again is refused (a page saying so, not a redirect).
    client.cookies.clear()
    again = await client.get(f"{link.path}?{link.query}")
    assert again.status_code == 401 and "no longer valid" in again.text and "set-cookie" not in again.headers
    # Short-lived: an unused link is refused once its lifetime (10 minutes by default) has passed.
    clock.offset = timedelta(seconds=parts.settings.login_link_ttl_s + 1)
    late = urlsplit(second.stdout.strip())
    expired = await client.get(f"{late.path}?{late.query}")
    assert expired.status_code == 401 and "set-cookie" not in expired.headers
    assert (await client.get("/auth/login?token=made-up")).status_code == 401


async def test_bad_input_is_refused_with_a_message_and_exit_code_2(
    parts: Parts, capsys: pytest.CaptureFixture[str]
) -> None:
    """The commands' own code, in this process (their subprocess runs are above)."""
    settings = parts.settings
    cases: list[tuple[Callable[[], Awaitable[str]], str]] = [
        (lambda: cli._mint(settings, "not an email", role=None), "'not an email' is not an email address."),
        (lambda: cli._mint(settings, "x@uni.example", role="wizard"), "'wizard' is not a valid Role"),
        (
            lambda: cli._login_link(settings, "x@uni.example", "https://evil.example/"),
            "The sign-in link may only lead to a path on this site.",
        ),
    ]
    for attempt, message in cases:
        with pytest.raises(typer.Exit) as exited:
            await attempt()
        assert exited.value.exit_code == 2
        assert capsys.readouterr().out.strip() == message
