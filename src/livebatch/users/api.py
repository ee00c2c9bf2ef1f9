"""Signing in: a one-time link sets the session cookie; `/api/v1/me` says who is signed in."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from starlette.responses import Response

from livebatch.auth import COOKIE, CurrentIdentity, mint_token
from livebatch.db import SessionDep
from livebatch.errors import error_responses
from livebatch.runtime import Runtime
from livebatch.users import repository
from livebatch.users.service import hash_link_secret

router = APIRouter(tags=["auth"])


class Me(BaseModel):
    id: str
    email: str
    role: str


@router.get("/api/v1/me", response_model=Me, responses=error_responses(401))
async def read_me(identity: CurrentIdentity) -> Me:
    return Me(id=str(identity.user.id), email=identity.user.email, role=identity.role)


@router.get("/auth/login", include_in_schema=False)
async def sign_in(request: Request, session: SessionDep, token: Annotated[str, Query(max_length=200)] = "") -> Response:
    rt: Runtime = request.app.state.runtime
    now = rt.now()
    link = await repository.use_sign_in_link(session, hash_link_secret(token), now=now) if token else None
    user = await repository.get_user(session, link.user_id) if link else None
    if link is None or user is None:
        await session.rollback()
        return HTMLResponse(_expired_page(), status_code=401)
    await session.commit()
    response = RedirectResponse(link.next_path, status_code=303)
    set_session_cookie(response, rt, mint_token(rt.settings, user, now=now))
    return response


@router.post("/auth/logout", include_in_schema=False)
async def sign_out(identity: CurrentIdentity) -> Response:
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response


def set_session_cookie(response: Response, rt: Runtime, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(timedelta(seconds=rt.settings.jwt_ttl_s).total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=rt.settings.public_url.startswith("https://"),
    )


def _expired_page() -> str:
    command = escape("livebatch login-link")
    return (
        "<!doctype html><html lang=en><meta charset=utf-8><title>Sign-in link not valid</title>"
        "<body style='font-family:system-ui;background:#f5f3ef;padding:3rem'>"
        "<main style='background:#fff;max-width:36rem;margin:auto;padding:2rem;border-radius:8px'>"
        "<h1>This sign-in link is no longer valid</h1>"
        f"<p>Links work once and expire after a few minutes. Ask for a new one with <code>{command}</code>.</p>"
        "</main></body></html>"
    )
