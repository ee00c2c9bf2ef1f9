from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from livebatch.clock import utcnow
from livebatch.db import Base


class Role(StrEnum):
    faculty = "faculty"
    student = "student"
    admin = "admin"


class User(Base):
    __tablename__ = "users"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


NEXT_PATH_CHARS = 512  # the longest path a sign-in link may lead to (its column)


class SignInLink(Base):
    """A one-time sign-in link; only the SHA-256 of its secret is kept."""

    __tablename__ = "sign_in_links"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    next_path: Mapped[str] = mapped_column(String(NEXT_PATH_CHARS))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
