from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.errors import BadRequest
from livebatch.users import repository
from livebatch.users.models import NEXT_PATH_CHARS, Role, SignInLink, User


async def get_user(session: AsyncSession, user_id: UUID) -> User | None:
    return await repository.get_user(session, user_id)


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or not domain or " " in email or len(email) > 320:
        raise BadRequest(f"{email!r} is not an email address.")
    return email


async def ensure_user(session: AsyncSession, email: str, role: Role) -> User:
    """The user with this email, created with `role` if new (an existing user keeps their role)."""
    email = normalize_email(email)
    user = await repository.get_user_by_email(session, email)
    if user is None:
        user = User(email=email, role=role.value)
        session.add(user)
        await session.flush()
    return user


def hash_link_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_sign_in_link(
    session: AsyncSession, user: User, *, next_path: str, now: datetime, ttl: timedelta
) -> str:
    """Stores a one-time link for `user` and returns its secret (shown once, never stored)."""
    if not next_path.startswith("/") or next_path.startswith("//"):
        raise BadRequest("The sign-in link may only lead to a path on this site.")
    if len(next_path) > NEXT_PATH_CHARS:
        raise BadRequest(f"The sign-in link's path may be at most {NEXT_PATH_CHARS} characters, not {len(next_path)}.")
    secret = secrets.token_urlsafe(32)
    session.add(
        SignInLink(token_hash=hash_link_secret(secret), user_id=user.id, next_path=next_path, expires_at=now + ttl)
    )
    await session.flush()
    return secret


async def use_sign_in_link(session: AsyncSession, secret: str, *, now: datetime) -> tuple[User, str] | None:
    """Spends a one-time link: its user and the path it leads to; None when it is unknown, used or expired."""
    link = await repository.use_sign_in_link(session, hash_link_secret(secret), now=now) if secret else None
    user = await repository.get_user(session, link.user_id) if link else None
    return None if link is None or user is None else (user, link.next_path)
