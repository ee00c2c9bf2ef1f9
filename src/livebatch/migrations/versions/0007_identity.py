"""Users signed in through an OpenID Connect provider: its issuer and subject (the identity), and a name.

Revision ID: 0007_identity
Revises: 0004_failures_and_webhooks
Create Date: 2026-12-05 19:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_identity"
down_revision: str | None = "0004_failures_and_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("issuer", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("subject", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint("uq_users_issuer_subject", ["issuer", "subject"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_issuer_subject", type_="unique")
        batch_op.drop_column("subject")
        batch_op.drop_column("issuer")
        batch_op.drop_column("name")
