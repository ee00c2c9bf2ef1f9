from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.users.models import SignInLink, User


async def get_user(session: AsyncSession, user_id: UUID) -> User | None:
    return await session.get(User, user_id)


async def lock_user(session: AsyncSession, user_id: UUID) -> None:
    """Serializes this user's limit checks: the user row, locked for this transaction (SQLite's BEGIN
    IMMEDIATE already serializes every writer). FOR NO KEY UPDATE, not FOR UPDATE: the KEY SHARE lock that
    a foreign key to the user takes (a new batch, a webhook delivery written by item work holding its batch)
    does not wait for it, so item work never deadlocks with a request holding it."""
    stmt = select(User.id).where(User.id == user_id).with_for_update(key_share=True)
    await session.execute(stmt)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email))).scalar_one_or_none()


async def bump_token_version(session: AsyncSession, user_id: UUID) -> None:
    """Every token minted for the user before now is refused from the commit on (auth.identify)."""
    await session.execute(update(User).where(User.id == user_id).values(token_version=User.token_version + 1))


async def use_sign_in_link(session: AsyncSession, token_hash: str, *, now: datetime) -> SignInLink | None:
    """Marks an unused, unexpired link used; None when there is no such link (the update is the check)."""
    stmt = (
        update(SignInLink)
        .where(SignInLink.token_hash == token_hash, SignInLink.used_at.is_(None), SignInLink.expires_at > now)
        .values(used_at=now)
        .returning(SignInLink)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_user_by_identity(session: AsyncSession, issuer: str, subject: str) -> User | None:
    stmt = select(User).where(User.issuer == issuer, User.subject == subject)
    return (await session.execute(stmt)).scalar_one_or_none()
