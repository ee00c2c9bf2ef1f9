"""Tokens and cost per batch and item, the guards' state, and how far a batch's event log was pruned.

Batches and items made before this have used nothing that was recorded: their counters start at 0, their
currency is USD, no pause has a reason, and nothing was pruned.

Revision ID: 0003_usage_and_guards
Revises: 0002 (the revision of 0002_item_prior.py)
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_usage_and_guards"
# The brief names it "0002_item_prior", the file's name; the revision id in that file is "0002".
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _batch_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unpriced_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("currency", sa.String(length=3), nullable=False, server_default="USD"),
        sa.Column("pause_reason", sa.String(length=16), nullable=True),
        sa.Column("recent_outcomes", sa.String(length=32), nullable=False, server_default=""),
        sa.Column("pruned_through", sa.Integer(), nullable=False, server_default="0"),
    )


def _item_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("prompt_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("unpriced_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("usage_attempt", sa.Integer(), nullable=False, server_default="0"),
    )


def upgrade() -> None:
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        for column in _batch_columns():
            batch_op.add_column(column)
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        for column in _item_columns():
            batch_op.add_column(column)
    # A batch paused before this was paused by hand.
    op.execute("UPDATE batch_jobs SET pause_reason = 'user' WHERE status = 'paused'")


def downgrade() -> None:
    with op.batch_alter_table("batch_items", schema=None) as batch_op:
        for column in reversed(_item_columns()):
            batch_op.drop_column(column.name)
    with op.batch_alter_table("batch_jobs", schema=None) as batch_op:
        for column in reversed(_batch_columns()):
            batch_op.drop_column(column.name)
