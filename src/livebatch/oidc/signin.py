"""Signing in through the school's identity provider: the OpenID Connect Authorization Code flow with PKCE.

`/auth/oidc/start` sends the browser to the provider with a fresh `state`, `nonce` and PKCE challenge, and keeps
the three (with the page to come back to) in a short-lived, signed, HttpOnly cookie: nothing is stored on the
server, so any instance can take the callback. The callback checks `state` against that cookie, trades the code
for tokens with the PKCE verifier (Authlib speaks the protocol), verifies the ID token (signature against the
provider's keys, `iss`, `aud`, `exp`, `nonce`), creates or updates the user from it, and sets the same session
cookie a one-time link does. Whatever fails is a page that says what happened, and no session.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Annotated, Any

import httpx
import jwt
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from livebatch.auth import mint_token
from livebatch.config import Settings
from livebatch.deps import ClockDep, IdentityProviderDep, SessionDep, SettingsDep
from livebatch.errors import Conflict, Forbidden
from livebatch.oidc import claims as claims_of
from livebatch.oidc.provider import IdentityProvider, Metadata, ProviderUnavailable, TokenRejected
from livebatch.users import service
from livebatch.users.api import set_session_cookie
from livebatch.users.models import Role
from livebatch.web.pages import render, safe_next

logger = logging.getLogger("livebatch.oidc")

FLOW_COOKIE = "livebatch_oidc_flow"
FLOW_TTL = timedelta(minutes=10)
# The flow cookie is signed with the session secret; its own audience keeps the two from standing in for
# each other (a session token is not a flow, and a flow is no session: `decode_token` refuses an `aud`).
FLOW_AUDIENCE = "livebatch:oidc-flow"
START_PATH = "/auth/oidc/start"


def router(settings: Settings) -> APIRouter:
    """The two endpoints; the callback's path is a setting (it is registered at the provider)."""
    routes = APIRouter(include_in_schema=False, tags=["auth"])
    routes.add_api_route(START_PATH, start, methods=["GET"])
    routes.add_api_route(settings.oidc_redirect_path, callback, methods=["GET"])
    return routes


def redirect_uri(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + settings.oidc_redirect_path


def _client(settings: Settings, provider: IdentityProvider, metadata: Metadata) -> AsyncOAuth2Client:
    secret = settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None
    if secret is None:
        method = "none"  # a public client: PKCE alone binds the code to this browser
    elif "client_secret_basic" in metadata.token_auth_methods:
        method = "client_secret_basic"
    else:
        method = "client_secret_post"
    return AsyncOAuth2Client(
        client_id=provider.client_id,
        client_secret=secret,
        scope=settings.oidc_scopes,
        redirect_uri=redirect_uri(settings),
        code_challenge_method="S256",
        token_endpoint_auth_method=method,
        timeout=10.0,
    )


def _failure(request: Request, settings: Settings, status: int, title: str, message: str) -> Response:
    context = {"title": title, "message": message, "provider_name": settings.oidc_provider_name, "status": status}
    response = render(request, "signin_failed.html", context, status_code=status)
    response.delete_cookie(FLOW_COOKIE, path="/")
    return response


async def start(
    request: Request,
    settings: SettingsDep,
    provider: IdentityProviderDep,
    now: ClockDep,
    next_path: Annotated[str, Query(alias="next", max_length=500)] = "",
) -> Response:
    if provider is None:
        return _failure(request, settings, 404, "Not set up here", "This livebatch signs in by one-time link only.")
    try:
        metadata = await provider.metadata()
    except ProviderUnavailable as exc:
        logger.warning("identity provider unavailable: %s", exc)
        return _unreachable(request, settings)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    async with _client(settings, provider, metadata) as client:
        url, _ = client.create_authorization_url(
            metadata.authorization_endpoint, state=state, code_verifier=verifier, nonce=nonce
        )
    moment = now()
    flow: dict[str, Any] = {"aud": FLOW_AUDIENCE, "state": state, "nonce": nonce, "verifier": verifier}
    flow |= {"next": safe_next(next_path), "exp": moment + FLOW_TTL}
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        jwt.encode(flow, settings.effective_jwt_secret, algorithm="HS256"),
        max_age=int(FLOW_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",  # sent on the provider's top-level redirect back, not on a cross-site subrequest
        secure=settings.public_url.startswith("https://"),
    )
    return response


def _read_flow(request: Request, settings: Settings) -> dict[str, Any] | None:
    cookie = request.cookies.get(FLOW_COOKIE)
    if cookie is None:
        return None
    try:
        flow: dict[str, Any] = jwt.decode(
            cookie, settings.effective_jwt_secret, algorithms=["HS256"], audience=FLOW_AUDIENCE
        )
    except jwt.InvalidTokenError:
        return None
    if not all(isinstance(flow.get(k), str) for k in ("state", "nonce", "verifier", "next")):
        return None
    return flow


def _unreachable(request: Request, settings: Settings) -> Response:
    message = f"{settings.oidc_provider_name} cannot be reached right now. Try again in a moment."
    return _failure(request, settings, 503, "Sign-in is unavailable", message)


async def callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    provider: IdentityProviderDep,
    now: ClockDep,
    code: Annotated[str, Query(max_length=2048)] = "",
    state: Annotated[str, Query(max_length=512)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    if provider is None:
        return _failure(request, settings, 404, "Not set up here", "This livebatch signs in by one-time link only.")
    name = settings.oidc_provider_name
    flow = _read_flow(request, settings)
    if flow is None:
        message = "This sign-in was not started in this browser, or took more than ten minutes. Start again."
        return _failure(request, settings, 400, "Sign-in expired", message)
    if not secrets.compare_digest(state.encode(), str(flow["state"]).encode()):
        # Not this browser's sign-in: another one's answer, or a forged link (login CSRF).
        message = "The answer from the identity provider does not belong to this sign-in. Start again."
        return _failure(request, settings, 400, "Sign-in refused", message)
    if error or not code:
        message = f"{name} did not sign you in ({error or 'no code'}). Start again, or ask your IT desk."
        return _failure(request, settings, 401, "Sign-in refused", message)
    try:
        metadata = await provider.metadata()
        async with _client(settings, provider, metadata) as client:
            tokens = await client.fetch_token(
                metadata.token_endpoint, grant_type="authorization_code", code=code, code_verifier=flow["verifier"]
            )
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise TokenRejected("The identity provider sent no ID token (is the `openid` scope allowed?).")
        claims = await provider.verify(id_token, audience=provider.client_id, nonce=flow["nonce"])
    except (ProviderUnavailable, httpx.HTTPError) as exc:
        logger.warning("identity provider unavailable: %s", exc)
        return _unreachable(request, settings)
    except OAuthError as exc:
        # A code used twice, expired, or not issued for this client and verifier: `invalid_grant`.
        message = f"{name} refused the sign-in ({exc.error}). Start again."
        return _failure(request, settings, 401, "Sign-in refused", message)
    except TokenRejected as exc:
        return _failure(request, settings, 401, "Sign-in refused", f"{exc} Start again.")
    who = claims_of.profile(claims)
    role = claims_of.role(claims, settings.oidc_role_claim, settings.faculty_values)
    try:
        user = await service.sign_in_from_provider(
            session,
            issuer=provider.issuer,
            subject=str(claims["sub"]),
            email=who.email,
            email_verified=who.email_verified,
            name=who.name,
            role=role,
        )
    except (Forbidden, Conflict) as exc:
        await session.rollback()
        return _failure(request, settings, exc.status_code, "Sign-in refused", exc.message)
    await session.commit()  # the user, up to date, also when the role below turns them away
    if role != Role.faculty:
        message = (
            f"{name} signed you in as {user.email}, but does not give you the faculty role, which livebatch needs."
        )
        return _failure(request, settings, 403, "Not available to you", message)
    response = RedirectResponse(flow["next"], status_code=303)
    response.delete_cookie(FLOW_COOKIE, path="/")
    set_session_cookie(response, settings, mint_token(settings, user, now=now()))
    return response
