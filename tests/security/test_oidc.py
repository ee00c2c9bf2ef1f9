"""Sign-in through a real OpenID Connect provider (django-oauth-toolkit, in its own process: tests/oidc), and
its tokens on the API: what must be refused is refused, with the usual error shape, and signs no one in.

The app runs in process; the provider is reached over loopback HTTP, as a school's would be over the network.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from livebatch.app import create_app
from livebatch.auth import COOKIE
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.oidc.provider import IdentityProvider
from livebatch.oidc.signin import FLOW_AUDIENCE, FLOW_COOKIE
from livebatch.parts import Parts
from livebatch.users import repository
from tests.conftest import JWT_SECRET, SettingsFactory, batch_body, seed_courses
from tests.oidc.support import (
    API_AUDIENCE,
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_ID,
    IdentityProviderProcess,
    new_signing_key,
    query,
    sign_in_at_provider,
    tokens_for,
)
from tests.security.support import row_counts
from tests.stream.support import assert_error

PUBLIC_URL = "http://127.0.0.1:8000"  # the callback the provider sends the browser back to (any loopback port)


@dataclass
class App:
    http: httpx.AsyncClient
    parts: Parts
    settings: Settings

    @property
    def provider(self) -> IdentityProvider:
        oidc = self.http._transport.app.state.web.oidc  # type: ignore[attr-defined]
        assert isinstance(oidc, IdentityProvider)
        return oidc


@pytest.fixture
async def app(make_settings: SettingsFactory, identity_provider: IdentityProviderProcess) -> AsyncIterator[App]:
    settings = make_settings(
        public_url=PUBLIC_URL,
        oidc_issuer=identity_provider.issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_provider_name="Test University",
        oidc_audience=API_AUDIENCE,
        oidc_jwks_refresh_s=0.0,
    )
    parts = Parts(settings, worker=False)
    await parts.start()
    async with parts.db.session() as session:
        await seed_courses(session)
    web = create_app(parts=parts)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web), base_url=PUBLIC_URL) as http:
        yield App(http, parts, settings)
    await parts.aclose()


async def start(app: App, next_path: str = "/faculty/generate/batches") -> tuple[str, str]:
    """Press "Sign in with Test University": the provider's URL, and the flow cookie set with it."""
    response = await app.http.get("/auth/oidc/start", params={"next": next_path})
    assert response.status_code == 303, response.text
    return response.headers["location"], response.cookies[FLOW_COOKIE]


async def callback(app: App, url: str, flow: str | None) -> httpx.Response:
    app.http.cookies.clear()
    path = url.split("127.0.0.1", 1)[1].split("/", 1)[1]
    return await app.http.get("/" + path, headers=session_of(flow, FLOW_COOKIE) if flow is not None else {})


def session_of(value: str, name: str = COOKIE) -> dict[str, str]:
    return {"Cookie": f"{name}={value}"}


async def signed_in(app: App, username: str = "ada") -> httpx.Response:
    authorize, flow = await start(app)
    return await callback(app, await sign_in_at_provider(authorize, username), flow)


def refused_page(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert words in response.text
    assert COOKIE not in response.cookies, "a refused sign-in sets no session"


async def test_the_code_flow_signs_a_faculty_member_in_and_keeps_who_they_are(app: App, db: Database) -> None:
    authorize, flow = await start(app, "/faculty/generate/batch/new")
    asked = query(authorize)
    assert authorize.startswith(app.provider.issuer + "/authorize")
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["client_id"] == CLIENT_ID and asked["redirect_uri"] == PUBLIC_URL + "/auth/oidc/callback"
    assert asked["state"] and asked["nonce"] and "openid" in asked["scope"].split()
    # The flow's secrets live in the browser, signed and HttpOnly; the verifier never leaves for the provider.
    held = jwt.decode(flow, JWT_SECRET, algorithms=["HS256"], audience=FLOW_AUDIENCE)
    assert (held["state"], held["nonce"]) == (asked["state"], asked["nonce"])
    assert held["verifier"] not in authorize

    response = await callback(app, await sign_in_at_provider(authorize, "ada"), flow)
    assert response.status_code == 303 and response.headers["location"] == "/faculty/generate/batch/new"
    session_cookie = response.headers.get_list("set-cookie")
    assert any(c.startswith(f"{COOKIE}=") and "HttpOnly" in c and "SameSite=lax" in c for c in session_cookie)
    me = (await app.http.get("/api/v1/me", headers=session_of(response.cookies[COOKIE]))).json()
    assert (me["email"], me["role"]) == ("ada.idp@uni.example", "faculty")
    async with db.read_session() as session:
        user = await repository.get_user_by_email(session, "ada.idp@uni.example")
    assert user is not None and str(user.id) == me["id"]
    assert (user.issuer, user.name, user.role) == (app.provider.issuer, "Ada Lovelace", "faculty")
    assert user.subject and user.subject != user.email
    page = await app.http.get("/faculty/generate/batches", headers=session_of(response.cookies[COOKIE]))
    assert page.status_code == 200 and "Ada Lovelace" in page.text

    again = await signed_in(app)  # the second time, the same user, brought up to date
    assert again.status_code == 303
    again_me = (await app.http.get("/api/v1/me", headers=session_of(again.cookies[COOKIE]))).json()
    assert again_me["id"] == me["id"]


@pytest.mark.parametrize("next_path", ["//evil.example/x", "/\\evil.example/x", "https://evil.example/", "/\tx"])
async def test_the_page_to_come_back_to_is_always_on_this_site(app: App, next_path: str) -> None:
    _, flow = await start(app, next_path)
    held = jwt.decode(flow, JWT_SECRET, algorithms=["HS256"], audience=FLOW_AUDIENCE)
    assert held["next"] == "/faculty/generate/batches"


async def test_a_tampered_state_is_refused_and_signs_no_one_in(app: App, db: Database) -> None:
    authorize, flow = await start(app)
    back = await sign_in_at_provider(authorize, "ada")
    before = await row_counts(db)
    tampered = back.replace(f"state={query(back)['state']}", "state=" + "A" * 43)
    refused_page(await callback(app, tampered, flow), 400, "does not belong to this sign-in")
    refused_page(await callback(app, back, None), 400, "not started in this browser")  # no flow cookie at all
    forged = jwt.encode({"aud": FLOW_AUDIENCE, "state": query(back)["state"]}, "not-our-secret-" * 3)
    refused_page(await callback(app, back, forged), 400, "not started in this browser")
    assert await row_counts(db) == before


async def test_a_replayed_code_is_refused_by_the_provider(app: App, db: Database) -> None:
    authorize, flow = await start(app)
    back = await sign_in_at_provider(authorize, "ada")
    assert (await callback(app, back, flow)).status_code == 303
    # The same answer again, with the flow cookie an attacker would have copied too: the code is spent.
    refused_page(await callback(app, back, flow), 401, "invalid_grant")


async def test_pkce_and_nonce_bind_the_answer_to_this_sign_in(app: App, db: Database) -> None:
    authorize, flow = await start(app)
    back = await sign_in_at_provider(authorize, "ada")
    held = jwt.decode(flow, JWT_SECRET, algorithms=["HS256"], audience=FLOW_AUDIENCE)
    before = await row_counts(db)
    # Another verifier than the challenge sent: the provider refuses the code (PKCE).
    other_verifier = jwt.encode(held | {"verifier": "x" * 64}, JWT_SECRET, algorithm="HS256")
    refused_page(await callback(app, back, other_verifier), 401, "invalid_grant")
    # A fresh code, with the right verifier but another nonce: the ID token is not this sign-in's.
    authorize, flow = await start(app)
    back = await sign_in_at_provider(authorize, "ada")
    held = jwt.decode(flow, JWT_SECRET, algorithms=["HS256"], audience=FLOW_AUDIENCE)
    other_nonce = jwt.encode(held | {"nonce": "another-nonce"}, JWT_SECRET, algorithm="HS256")
    refused_page(await callback(app, back, other_nonce), 401, "nonce")
    assert await row_counts(db) == before


async def test_an_id_token_for_another_audience_is_refused(
    app: App, identity_provider: IdentityProviderProcess
) -> None:
    others = await tokens_for(identity_provider, "ada", client=OTHER_ID)
    with pytest.raises(Exception, match="another audience"):
        await app.provider.verify(others["id_token"], audience=CLIENT_ID)
    assert (await signed_in(app)).status_code == 303  # ada has a livebatch account: only the audience is wrong
    for token in (others["id_token"], (await tokens_for(identity_provider, "ada"))["id_token"]):
        # An ID token (for livebatch's client or another) is not an access token for livebatch's API.
        response = await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "UNAUTHORIZED")
        assert "another audience" in response.json()["error"]["message"]


async def test_a_user_without_the_faculty_role_gets_a_403_page(app: App, db: Database) -> None:
    response = await signed_in(app, "sam")
    refused_page(response, 403, "does not give you the faculty role")
    async with db.read_session() as session:
        user = await repository.get_user_by_email(session, "sam.idp@uni.example")
    assert user is not None and user.role == "student"  # known, and known not to be faculty


async def test_the_providers_access_tokens_work_on_the_api(
    app: App, identity_provider: IdentityProviderProcess
) -> None:
    token = (await tokens_for(identity_provider, "ada"))["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    # Never signed in on the pages: livebatch does not know this identity yet.
    assert_error(await app.http.get("/api/v1/me", headers=bearer), 401, "UNAUTHORIZED")
    assert (await signed_in(app)).status_code == 303
    me = (await app.http.get("/api/v1/me", headers=bearer)).json()
    assert (me["email"], me["role"]) == ("ada.idp@uni.example", "faculty")
    created = await app.http.post("/api/v1/generation/batch", json=batch_body(2), headers=bearer)
    assert created.status_code == 201, created.text
    assert (await app.http.get(f"/api/v1/generation/batch/{created.json()['id']}", headers=bearer)).status_code == 200
    fetches = app.provider.fetches
    for _ in range(5):
        assert (await app.http.get("/api/v1/me", headers=bearer)).status_code == 200
    assert app.provider.fetches == fetches, "the keys are cached, not fetched per request"

    student = (await tokens_for(identity_provider, "sam"))["access_token"]
    assert (await signed_in(app, "sam")).status_code == 403
    response = await app.http.post(
        "/api/v1/generation/batch", json=batch_body(1), headers={"Authorization": f"Bearer {student}"}
    )
    assert_error(response, 403, "FORBIDDEN")


def new_key_object() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _sign(claims: dict[str, Any], key: Any, *, alg: str = "RS256", kid: str = "k1") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


async def test_tokens_of_another_issuer_audience_or_algorithm_are_401(
    app: App, identity_provider: IdentityProviderProcess, db: Database
) -> None:
    assert (await signed_in(app)).status_code == 303
    real = (await tokens_for(identity_provider, "ada"))["access_token"]
    claims = jwt.decode(real, options={"verify_signature": False})
    kid = jwt.get_unverified_header(real)["kid"]
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    fresh = claims | {"iat": now, "nbf": now, "exp": now + 300}
    cases = {
        "another issuer": (_sign(fresh | {"iss": "https://evil.example/o"}, mine), "another identity provider"),
        "our issuer, a key it never published": (_sign(fresh, mine, kid="made-up"), "does not publish"),
        "our issuer, its kid, our key": (_sign(fresh, mine, kid=kid), "signature"),
        # The provider's public key used as an HMAC secret: the classic algorithm confusion.
        "HS256 claiming the issuer": (jwt.encode(fresh, "x" * 40, algorithm="HS256", headers={"kid": kid}), "sign"),
        "alg none": (jwt.encode(fresh, "", algorithm="none"), "signed with"),
        "RS384": (_sign(fresh, mine, alg="RS384", kid=kid), "RS256 or ES256"),
        "another audience": (_sign(fresh | {"aud": "someone-else"}, mine, kid=kid), ""),
    }
    before = await row_counts(db)
    for name, (token, words) in cases.items():
        response = await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "UNAUTHORIZED")
        assert words in response.json()["error"]["message"], (name, response.json())
    # A flood of made-up key ids fetches the keys at most once per LIVEBATCH_OIDC_JWKS_REFRESH_S.
    throttled = IdentityProvider(app.settings.model_copy(update={"oidc_jwks_refresh_s": 3600.0}))
    for n in range(20):
        with pytest.raises(Exception, match="does not publish"):
            await throttled.verify(_sign(fresh, mine, kid=f"made-up-{n}"), audience=API_AUDIENCE)
    assert throttled.fetches == 1
    assert await row_counts(db) == before


async def test_a_rotated_signing_key_is_fetched_when_first_seen(
    app: App, identity_provider: IdentityProviderProcess
) -> None:
    assert (await signed_in(app)).status_code == 303
    old_token = (await tokens_for(identity_provider, "ada"))["access_token"]
    assert (await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"})).status_code == 200
    fetches = app.provider.fetches
    old_key = identity_provider.signing_key
    try:
        # The provider signs with a new key and still publishes the old one, as a rotation does.
        identity_provider.restart(signing_key=new_signing_key(), inactive_keys=[old_key])
        new_token = (await tokens_for(identity_provider, "ada"))["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]
        for token in (new_token, old_token):
            response = await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 200, response.text
        assert app.provider.fetches == fetches + 1  # the unknown kid fetched the keys once
        assert (await signed_in(app)).status_code == 303  # ID tokens with the new key too
        # The old key withdrawn: tokens it signed stop working once the keys are read again (after an hour, or
        # as here when a token names a key not in the cache).
        identity_provider.restart(signing_key=identity_provider.signing_key, inactive_keys=[])
        newest = (await tokens_for(identity_provider, "ada"))["access_token"]
        assert (await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {newest}"})).status_code == 200
        stranger = _sign(jwt.decode(newest, options={"verify_signature": False}), new_key_object(), kid="unknown")
        assert_error(
            await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {stranger}"}), 401, "UNAUTHORIZED"
        )
        assert app.provider.fetches == fetches + 2
        response = await app.http.get("/api/v1/me", headers={"Authorization": f"Bearer {old_token}"})
        assert_error(response, 401, "UNAUTHORIZED")
    finally:
        identity_provider.restart(signing_key=old_key, inactive_keys=[])
