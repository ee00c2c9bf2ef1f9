"""Signing in: a one-time link sets the session cookie; `/api/v1/me` says who is signed in."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starlette.responses import Response

from livebatch.auth import COOKIE, CurrentIdentity, mint_token
from livebatch.config import Settings
from livebatch.deps import ClockDep, SessionDep, SettingsDep
from livebatch.errors import error_responses
from livebatch.users import service
from livebatch.web.pages import render

router = APIRouter(tags=["auth"])


class Me(BaseModel):
    id: str
    email: str
    role: str


@router.get("/api/v1/me", response_model=Me, responses=error_responses(401))
async def read_me(identity: CurrentIdentity) -> Me:
    return Me(id=str(identity.user.id), email=identity.user.email, role=identity.role)


@router.get("/auth/login", include_in_schema=False)
async def sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: ClockDep,
    token: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    moment = now()
    signed_in = await service.use_sign_in_link(session, token, now=moment)
    if signed_in is None:
        await session.rollback()
        return render(request, "link_expired.html", {}, status_code=401)
    await session.commit()
    user, next_path = signed_in
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, settings, mint_token(settings, user, now=moment))
    return response


@router.post("/auth/logout", include_in_schema=False)
async def sign_out(request: Request, identity: CurrentIdentity, session: SessionDep) -> Response:
    """Signs the user out everywhere: the cookie goes, and every token minted before is refused. A page's
    Sign out form is sent on to `/signin`; an API caller gets 204."""
    await service.revoke_tokens(session, identity.user.id)
    await session.commit()
    form = request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/"))
    response = RedirectResponse("/signin", status_code=303) if form else Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
    return response


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=int(timedelta(seconds=settings.jwt_ttl_s).total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.public_url.startswith("https://"),
    )
