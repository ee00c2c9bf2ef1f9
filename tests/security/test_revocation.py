"""A token is only as good as the user row behind it: the role and the token's version are read from the
database on every request, so a demotion takes effect at once, and signing out (or a change of role) makes
every token the user held before worthless (issue 19, item 6)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy import update

from livebatch.auth import COOKIE
from livebatch.db import Database
from livebatch.parts import Parts
from livebatch.users.models import User
from tests.api.conftest import BATCH
from tests.cli.conftest import RunCli
from tests.conftest import Person, batch_body
from tests.security.support import row_counts
from tests.stream.support import assert_error


async def test_a_faculty_member_demoted_in_the_database_cannot_create_a_batch_with_the_old_token(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person]
) -> None:
    ada = people["faculty"]
    assert (await client.get("/api/v1/me", headers=ada.headers)).json()["role"] == "faculty"
    async with parts.db.session() as session:  # an operator's UPDATE, no token version bumped
        await session.execute(update(User).where(User.id == ada.user.id).values(role="student"))
        await session.commit()
    before = await row_counts(parts.db)

    assert_error(await client.post(BATCH, json=batch_body(1), headers=ada.headers), 403, "FORBIDDEN")
    assert (await client.get("/api/v1/me", headers=ada.headers)).json()["role"] == "student"
    assert await row_counts(parts.db) == before


async def test_a_change_of_role_by_the_cli_revokes_the_tokens_minted_before_it(
    client: httpx.AsyncClient,
    parts: Parts,
    people: dict[str, Person],
    run_cli: RunCli,
    env_for: Callable[..., dict[str, str]],
) -> None:
    ada = people["faculty"]
    run = run_cli("token", "--user", ada.user.email, "--role", "student", env=env_for())
    assert run.returncode == 0, run.stderr
    fresh = {"Authorization": f"Bearer {run.stdout.strip()}"}

    assert_error(await client.get("/api/v1/me", headers=ada.headers), 401, "UNAUTHORIZED")
    assert_error(await client.post(BATCH, json=batch_body(1), headers=ada.headers), 401, "UNAUTHORIZED")
    assert (await client.get("/api/v1/me", headers=fresh)).json()["role"] == "student"
    assert_error(await client.post(BATCH, json=batch_body(1), headers=fresh), 403, "FORBIDDEN")


async def test_signing_out_refuses_every_token_the_user_held(
    client: httpx.AsyncClient, parts: Parts, people: dict[str, Person], db: Database
) -> None:
    ada, grace = people["faculty"], people["other"]
    cookie = {"Cookie": f"{COOKIE}={ada.token}", "Origin": "http://testserver"}
    assert (await client.get("/api/v1/me", headers=cookie)).status_code == 200
    before = await row_counts(db)

    response = await client.post("/auth/logout", headers=cookie)  # the browser's sign-out, by cookie
    assert response.status_code == 204
    assert COOKIE in response.headers.get("set-cookie", "")

    for headers in (cookie, ada.headers):  # the same token, as the cookie and as a bearer token
        assert_error(await client.get("/api/v1/me", headers=headers), 401, "UNAUTHORIZED")
        assert_error(await client.post(BATCH, json=batch_body(1), headers=headers), 401, "UNAUTHORIZED")
    assert_error(await client.post("/auth/logout", headers=ada.headers), 401, "UNAUTHORIZED")
    assert await row_counts(db) == before  # nothing created; the version lives on the user's row
    assert (await client.get("/api/v1/me", headers=grace.headers)).status_code == 200  # others stay signed in
