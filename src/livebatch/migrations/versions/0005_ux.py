"""What the progress page needs to be honest: items pending for a retry counted on the batch row, and the
times "Retry failed" queued an item again (its next attempts draw afresh, and its row stays in the feed).

Batches migrated with items already waiting for a retry get them counted.

Revision ID: 0005_ux
Revises: 0002
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ux"
down_revision: str | None = "0003_usage_and_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retrying_items", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requeues", sa.Integer(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE batch_jobs SET retrying_items = (SELECT count(*) FROM batch_items"
        " WHERE batch_items.batch_id = batch_jobs.id AND batch_items.status = 'pending' AND batch_items.will_retry)"
    )


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        batch_op.drop_column("requeues")
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        batch_op.drop_column("retrying_items")
