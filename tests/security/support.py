"""What the security tests compare before and after: the number of rows in every table."""

from __future__ import annotations

from sqlalchemy import func, select

from livebatch.db import Base, Database


async def row_counts(db: Database) -> dict[str, int]:
    """Rows per table, every table of the schema: a refused request must change none of them."""
    async with db.read_session() as session:
        return {
            table.name: int((await session.execute(select(func.count()).select_from(table))).scalar_one())
            for table in Base.metadata.sorted_tables
        }
