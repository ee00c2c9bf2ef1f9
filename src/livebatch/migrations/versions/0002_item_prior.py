"""Batches keep the expected time of one item, which their ETA starts from before any completion.

Batches created before this get 30 s, the default for a provider whose speed is not known.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("item_prior_ms", sa.Integer(), nullable=False, server_default="30000"))


def downgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.drop_column("item_prior_ms")
