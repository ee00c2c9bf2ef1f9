"""Who is calling: a JWT from `Authorization: Bearer`, or the same JWT in the HttpOnly session cookie
(`EventSource` cannot send headers). The user must exist, and the token must carry the user's current
token version (bumped on sign-out and on a change of role); the role is the user row's, read on every
request, so a demotion takes effect at once whatever an older token says.
With an identity provider configured, a bearer token it signed is checked by `oidc/bearer.py` instead
(against the provider's keys; the role from the user row and what the token says of it).

A request that changes state on the strength of the cookie must come from this site: browsers send
`Origin` on such requests, and SameSite=Lax alone still lets a sibling subdomain post.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

import jwt
from fastapi import Depends, Request

from livebatch.config import Settings
from livebatch.deps import IdentityProviderDep, ReadSessionDep, SettingsDep
from livebatch.errors import Forbidden, Unauthorized
from livebatch.oidc import bearer as provider_bearer
from livebatch.users import service
from livebatch.users.models import Role, User

COOKIE = "livebatch_session"
VERSION_CLAIM = "ver"  # the user's token version when the token was minted; none (older tokens) reads as 0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Identity:
    user: User
    role: str
    via: str  # "bearer" | "cookie"


def mint_token(settings: Settings, user: User, *, now: datetime, ttl: timedelta | None = None) -> str:
    lifetime = ttl or timedelta(seconds=settings.jwt_ttl_s)
    claims: dict[str, Any] = {
        "sub": str(user.id),
        "email": user.email,
        settings.jwt_role_claim: user.role,
        VERSION_CLAIM: user.token_version,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, settings.effective_jwt_secret, algorithm=settings.jwt_algorithm)


def decode_token(settings: Settings, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            settings.effective_jwt_secret,
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired; sign in again.") from None
    except jwt.ImmatureSignatureError:
        raise Unauthorized("The token is not valid yet.") from None
    except jwt.InvalidAlgorithmError:
        raise Unauthorized(f"The token is not signed with {settings.jwt_algorithm}.") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("The token's signature does not match.") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"The token lacks the {exc.claim!r} claim.") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("The token is malformed.") from None
    return claims


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_site(request: Request, settings: Settings) -> None:
    own = {_origin(str(request.base_url)), _origin(settings.public_url)}
    origin = request.headers.get("origin")
    if origin is not None:
        if origin.lower() in own:
            return
        raise Forbidden("Cross-site request refused: its Origin is not this site.")
    if request.headers.get("sec-fetch-site") in ("same-origin", "none"):
        return
    raise Forbidden("Cross-site request refused: a request signed in by cookie must send its Origin.")


async def identify(
    request: Request, session: ReadSessionDep, settings: SettingsDep, provider: IdentityProviderDep
) -> Identity:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        via = "bearer"
    elif (cookie := request.cookies.get(COOKIE)) is not None:
        token, via = cookie, "cookie"
    else:
        raise Unauthorized("Sign in first: send a bearer token or the session cookie.")
    token = token.strip()
    user: User | None
    version: int | None = None  # of one of our own tokens; the provider's carry none and are its to revoke
    if via == "bearer" and provider is not None and provider.is_ours(token):
        user, role = await provider_bearer.identify(session, provider, settings, token)
    else:
        claims = decode_token(settings, token)
        try:
            user_id = UUID(str(claims["sub"]))
        except ValueError:
            raise Unauthorized("The token's subject is not a user id.") from None
        user = await service.get_user(session, user_id)
        role = user.role if user is not None else ""
        version = _token_version(claims)
        if version is None:
            raise Unauthorized("The token's version is not a number.")
    # End the read transaction here, so that its connection goes back to the pool while the endpoint
    # works. Held, it would make a stream or a writing endpoint take a second connection, and a burst of
    # requests as large as the pool would wait on one another until the pool timed out (500s after 30 s).
    await session.commit()
    if user is None:
        raise Unauthorized("The token's user no longer exists.")
    if version is not None and version != user.token_version:
        raise Unauthorized("The token was revoked (signed out, or the role changed); sign in again.")
    if via == "cookie" and request.method not in SAFE_METHODS:
        check_same_site(request, settings)
    return Identity(user=user, role=role, via=via)


def _token_version(claims: dict[str, Any]) -> int | None:
    version = claims.get(VERSION_CLAIM, 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else None


async def require_faculty(identity: Annotated[Identity, Depends(identify)]) -> User:
    if identity.role != Role.faculty:
        raise Forbidden("Only faculty members can generate items.")
    return identity.user


CurrentIdentity = Annotated[Identity, Depends(identify)]
FacultyUser = Annotated[User, Depends(require_faculty)]
