"""What the API, the pages, the stream, the CLI and the metrics show of batches: read services.

Each takes a (read) session, checks who may see what, and returns the schema a caller sends; none writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches import failures, item_repository, repository
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Batch
from livebatch.batches.questions import Label
from livebatch.batches.schemas import (
    BatchDetail,
    BatchRead,
    FailureGroupRead,
    FeedEntry,
    GeneratedItemPage,
    GeneratedItemRead,
    answer_keys,
)
from livebatch.batches.service import BatchNotFound, NotBatchOwner
from livebatch.courses import repository as courses
from livebatch.events import log
from livebatch.events.log import LoggedEvent
from livebatch.users.models import User


async def get_owned_batch(session: AsyncSession, batch_id: UUID, user: User) -> Batch:
    batch = await repository.get_batch(session, batch_id)
    if batch is None:
        raise BatchNotFound(batch_id)
    if batch.owner_id != user.id:
        raise NotBatchOwner()
    return batch


async def batch_read(session: AsyncSession, batch: Batch) -> BatchRead:
    course = await courses.get_course(session, batch.course_id)
    return BatchRead.of(batch, course, snapshot_of(batch))


async def batch_detail(session: AsyncSession, batch_id: UUID, user: User, *, feed: int) -> BatchDetail:
    """The batch, its feed (the `feed` highest item indexes attempted), and where its stream resumes."""
    batch = await get_owned_batch(session, batch_id, user)
    # last_seq is read with the batch, before the feed: a feed newer than it is harmless (replayed
    # events are idempotent in the page's reducer), one older would lose events.
    last_event_id = batch.last_seq
    items = await item_repository.feed_items(session, batch.id, limit=feed)
    read = await batch_read(session, batch)
    entries = [FeedEntry.of(item, batch.status) for item in items]
    keys = await answer_keys_of(session, batch)
    groups = await failure_groups(session, batch) if batch.failed_items else []
    return BatchDetail(
        **read.model_dump(), items=entries, last_event_id=last_event_id, answer_keys=keys, failure_groups=groups
    )


async def failure_groups(session: AsyncSession, batch: Batch) -> list[FailureGroupRead]:
    """The batch's items failed for good, grouped by cause (batches/failures.py)."""
    counts = await item_repository.failure_counts(session, batch.id)
    return [FailureGroupRead.of(group) for group in failures.group_failures(counts)]


async def batches_page(
    session: AsyncSession, user: User, *, before: tuple[datetime, UUID] | None, limit: int
) -> tuple[list[BatchRead], Batch | None]:
    """The user's batches, newest first, older than `before`; and the last one shown when there are more."""
    batches = await repository.batches_page(session, user.id, before=before, limit=limit + 1)
    rows = [await batch_read(session, b) for b in batches[:limit]]
    return rows, batches[limit - 1] if len(batches) > limit else None


async def batches_before(
    session: AsyncSession, user: User, before: UUID | None, *, limit: int
) -> tuple[list[BatchRead], Batch | None]:
    """`batches_page` from one of the user's batches (any other id starts from the newest)."""
    after = await repository.get_batch(session, before) if before else None
    cursor = (after.created_at, after.id) if after is not None and after.owner_id == user.id else None
    return await batches_page(session, user, before=cursor, limit=limit)


async def generated_page(session: AsyncSession, batch: Batch, *, after_index: int, limit: int) -> GeneratedItemPage:
    rows = await repository.generated_page(session, batch.id, after_index=after_index, limit=limit + 1)
    items = [GeneratedItemRead.of(g, item, currency=batch.currency) for g, item in rows[:limit]]
    return GeneratedItemPage(items=items, next_cursor=rows[limit - 1][0].idx if len(rows) > limit else None)


async def answer_keys_of(session: AsyncSession, batch: Batch) -> dict[Label, int]:
    """The batch's generated items by key letter, every letter A to E named."""
    return answer_keys(await repository.count_answer_keys(session, batch.id))


async def count_generated(session: AsyncSession, batch: Batch) -> int:
    return await repository.count_generated(session, batch.id)


async def log_after(
    session: AsyncSession, batch_id: UUID, after: int, *, limit: int
) -> tuple[Batch | None, list[LoggedEvent]]:
    """The batch row, then its logged events after `after` up to the row's last seq, at most `limit`."""
    # The batch row first, then its events: under READ COMMITTED each statement sees the latest commits,
    # and events read first could be older than the row read after them. This way the row's snapshot
    # describes exactly the events read with it.
    batch = await repository.get_batch(session, batch_id)
    if batch is None:
        return None, []
    page = await log.events_after(session, batch_id, after, limit=limit)
    return batch, [e for e in page if e.seq <= batch.last_seq]


async def get_batch(session: AsyncSession, batch_id: UUID) -> Batch | None:
    return await repository.get_batch(session, batch_id)


@dataclass(frozen=True, slots=True)
class ClusterFigures:
    """What every process reads the same from the database: items and batches by status, the queue."""

    items: dict[str, int]
    batches: dict[str, int]
    queue_depth: int


async def cluster_figures(session: AsyncSession) -> ClusterFigures:
    items = await repository.items_of_all_batches(session)
    return ClusterFigures(
        items={status.value: n for status, n in items.items()},
        batches=await repository.count_batches_by_status(session),
        queue_depth=await item_repository.count_all_dispatched(session),
    )
