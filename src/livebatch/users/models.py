from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livebatch.clock import utcnow
from livebatch.db import Base


class Role(StrEnum):
    faculty = "faculty"
    student = "student"
    admin = "admin"


class User(Base):
    """A person. One signed in through the identity provider is that provider's `issuer` and `subject` (the
    identity: an email address may change hands, a subject does not); a local one has neither."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("issuer", "subject", name="uq_users_issuer_subject"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    issuer: Mapped[str | None] = mapped_column(String(512), default=None)
    subject: Mapped[str | None] = mapped_column(String(255), default=None)
    # Written into every token; bumped on sign-out and on a change of role, so that older tokens are refused.
    token_version: Mapped[int] = mapped_column(default=0)


NEXT_PATH_CHARS = 512  # the longest path a sign-in link may lead to (its column)


class SignInLink(Base):
    """A one-time sign-in link; only the SHA-256 of its secret is kept."""

    __tablename__ = "sign_in_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    next_path: Mapped[str] = mapped_column(String(NEXT_PATH_CHARS))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
