"""The key letter of each generated item beside its content, indexed with its batch (issue 14, the page).

Every read of a batch (`GET /batch/{id}`, which the progress page makes first) carries its answer keys. They
were counted by reading every generated item's content: about 22 ms of the server's time for a batch of
10 000, spent while the page starts. `generated_items.answer` is filled from the content here, and by every
item recorded after it; the index on (batch_id, answer) counts a batch's keys without reading its rows.

Revision ID: 0009_answer_index
Revises: 0008_hardening
Create Date: 2026-12-05 21:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_answer_index"
down_revision: str | None = "0008_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The key letter of the content, as text, in each database's own JSON dialect.
FROM_CONTENT = {
    "postgresql": "UPDATE generated_items SET answer = content ->> 'answer'",
    "sqlite": "UPDATE generated_items SET answer = json_extract(content, '$.answer')",
}


def upgrade() -> None:
    with op.batch_alter_table("generated_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("answer", sa.String(length=8), nullable=True))
    op.execute(FROM_CONTENT[op.get_bind().dialect.name])
    op.create_index("ix_generated_items_batch_answer", "generated_items", ["batch_id", "answer"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_generated_items_batch_answer", table_name="generated_items")
    with op.batch_alter_table("generated_items", schema=None) as batch_op:
        batch_op.drop_column("answer")
