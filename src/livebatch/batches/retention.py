"""Pruning the event log of finished batches, for an operator (`livebatch prune --older-than 30d`).

A batch's log only grows: every attempt adds two events. Once a batch has been over for a while nobody
replays it, so its events can go, all but its last (`batch.complete`), which a new viewer of a finished
batch is sent, and which keeps `last_seq` meaning what it always did. The batch row keeps how far its log
was pruned (`pruned_through`), so that a stream asked to resume from before it sends `batch.reset` and a
fresh snapshot instead of a silent gap (stream.py). The batch itself, its items and its generated items
stay. Each batch is pruned in a transaction of its own, under its lock, so a "Retry failed" at the same
moment sees either the whole log or the pruned one.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from livebatch.batches import repository
from livebatch.events import log
from livebatch.uow import UnitOfWork

PAGE = 500


async def prunable(uow: UnitOfWork, *, finished_before: datetime) -> list[UUID]:
    """Up to PAGE finished batches, oldest first, that ended before `finished_before` and have events to prune."""
    return await repository.prunable_batches(uow.session, finished_before=finished_before, limit=PAGE)


async def prune_batch(uow: UnitOfWork, batch_id: UUID, *, finished_before: datetime) -> int:
    """Deletes the batch's events but its last, if it is (still) finished before `finished_before`; how many."""
    batch = await repository.lock_batch(uow.session, batch_id)
    if batch is None or not batch.status.is_terminal or batch.completed_at is None:
        return 0
    if batch.completed_at >= finished_before or batch.pruned_through >= batch.last_seq - 1:
        return 0
    deleted = await log.delete_through(uow.session, batch.id, batch.last_seq - 1)
    batch.pruned_through = batch.last_seq - 1
    return deleted
