from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.errors import BadRequest, Conflict, Forbidden
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


async def find_user(session: AsyncSession, email: str) -> User | None:
    return await repository.get_user_by_email(session, normalize_email(email))


async def ensure_user(session: AsyncSession, email: str, role: Role) -> User:
    """The user with this email, created with `role` if new (an existing user keeps their role)."""
    email = normalize_email(email)
    user = await repository.get_user_by_email(session, email)
    if user is None:
        user = User(email=email, role=role.value)
        session.add(user)
        await session.flush()
    return user


async def get_user_by_identity(session: AsyncSession, issuer: str, subject: str) -> User | None:
    return await repository.get_user_by_identity(session, issuer, subject)


async def sign_in_from_provider(
    session: AsyncSession,
    *,
    issuer: str,
    subject: str,
    email: str | None,
    email_verified: bool,
    name: str | None,
    role: Role,
) -> User:
    """The user the provider vouches for, created or brought up to date (email, name, role) from its ID token.

    The identity is `issuer` + `subject`. A local user (one-time links) with the same email becomes this
    identity only when the provider says it verified that address; otherwise anyone who could set that email
    at the provider would take over the account.
    """
    if not email:
        raise Forbidden("Your identity provider did not send an email address; livebatch needs one (scope `email`).")
    email = normalize_email(email)
    user = await repository.get_user_by_identity(session, issuer, subject)
    holder = await repository.get_user_by_email(session, email)
    if user is None:
        if holder is not None:
            if holder.issuer is not None or not email_verified:
                raise Conflict(f"Another livebatch account already uses {email}; ask an administrator to merge them.")
            user = holder
            user.issuer, user.subject = issuer, subject
        else:
            user = User(email=email, role=role.value, issuer=issuer, subject=subject)
            session.add(user)
    elif holder is not None and holder.id != user.id:
        raise Conflict(f"Another livebatch account already uses {email}; ask an administrator to merge them.")
    user.email, user.name = email, name
    set_role(user, role)  # a role the provider took away revokes the tokens minted with it
    await session.flush()
    return user


async def revoke_tokens(session: AsyncSession, user_id: UUID) -> None:
    """Signing out: every token the user holds (every browser, every script) is refused from now on."""
    await repository.bump_token_version(session, user_id)


def set_role(user: User, role: Role) -> None:
    """A new role; the tokens minted with the old one are revoked, so none of them outlives the change."""
    if user.role != role.value:
        user.role = role.value
        user.token_version += 1


def check_next_path(next_path: str) -> None:
    if not next_path.startswith("/") or next_path.startswith("//"):
        raise BadRequest("The sign-in link may only lead to a path on this site.")
    if len(next_path) > NEXT_PATH_CHARS:
        raise BadRequest(f"The sign-in link's path may be at most {NEXT_PATH_CHARS} characters, not {len(next_path)}.")


def hash_link_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_sign_in_link(
    session: AsyncSession, user: User, *, next_path: str, now: datetime, ttl: timedelta
) -> str:
    """Stores a one-time link for `user` and returns its secret (shown once, never stored)."""
    check_next_path(next_path)
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
