"""The sweeper: work that went astray, in any process's hands, back on its way.

Expired leases (a worker died mid-attempt: the attempt counts as failed, and the item is retried),
dispatches never claimed (a queue message lost, or a task that died before its claim: queued again, and
the claim makes a duplicate harmless), and batch windows left short (work lost between a commit and the
queue: dispatched afresh). Every worker process runs one; their passes may overlap, harmlessly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID

from livebatch.batches import item_repository, work
from livebatch.batches.retry import RetryPolicy
from livebatch.config import Settings
from livebatch.uow import Transactions

logger = logging.getLogger("livebatch.worker")


class Sweeper:
    def __init__(
        self,
        transactions: Transactions,
        *,
        settings: Settings,
        retry_policy: RetryPolicy,
        clock: Callable[[], datetime],
    ) -> None:
        self._transactions = transactions
        self._retry_policy = retry_policy
        self._now = clock
        self._dispatch_timeout = timedelta(seconds=settings.dispatch_timeout_s)
        self._interval_s = settings.sweep_interval_s

    async def sweep(self, *, all_dispatched: bool = False) -> None:
        """One pass of the sweeper: expire dead leases, re-queue lost work, refill batch windows.

        Work dispatched `dispatch_timeout` ago and still unclaimed is queued again, on either queue (a task
        can die before its claim); the claim makes the duplicate harmless. `all_dispatched` re-queues every
        dispatched item regardless of age: right at start-up of an embedded process, whose in-memory queue
        died with the previous one."""
        now = self._now()
        async with self._transactions.db.read_session() as session:
            expired = await item_repository.expired_leases(session, now=now, limit=500)
            lost_before = None if all_dispatched else now - self._dispatch_timeout
            stale = await item_repository.stale_dispatches(session, before=lost_before, limit=5000)
            short = await item_repository.undersupplied_batches(session)
        for item_id, attempt in expired:
            async with self._transactions.begin() as uow:
                await work.expire_lease(uow, item_id, attempt, policy=self._retry_policy, now=now)
                await uow.commit()
        redispatched: list[UUID] = []
        if stale:
            async with self._transactions.begin() as uow:
                redispatched = await item_repository.redispatch(uow.session, stale, now=now, before=lost_before)
                uow.dispatch(redispatched)
                await uow.commit()
        for batch_id in short:
            async with self._transactions.begin() as uow:
                await work.top_up(uow, batch_id, now=self._now())
                await uow.commit()
        if expired or redispatched:
            logger.info(
                "sweeper: %d expired leases, %d lost dispatches re-queued",
                len(expired),
                len(redispatched),
                extra={"expired_leases": len(expired), "requeued": len(redispatched)},
            )

    async def run_forever(self, *, all_dispatched: bool = False) -> None:
        """A sweep every `sweep_interval_s`, after the one its worker made at start; `all_dispatched` while
        the start-up reconcile has still to succeed."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep(all_dispatched=all_dispatched)
                all_dispatched = False
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("sweeper pass failed; trying again")
