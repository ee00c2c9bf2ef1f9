"""Hardening (issue 19): a revocation point for tokens, and who holds an item's lease.

`users.token_version` is written into every token; signing out or a change of role bumps it, and a token
carrying an older version is refused. Tokens minted before it carry none, which reads as 0: the version of
every user migrated here, so nobody is signed out by the upgrade.

`batch_items.lease_owner` names the process that claimed an item, so that an embedded server restarted after
a crash releases its own claims at once instead of waiting for their leases to expire.

Revision ID: 0008_hardening
Revises: 0007_identity
Create Date: 2026-12-05 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_hardening"
down_revision: str | None = "0007_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_version", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_column("lease_owner")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_version")
