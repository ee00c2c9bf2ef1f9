"""Item work in one process: claim, generate, record; renew the leases of what it generates; stop cleanly.

At least once, made idempotent by the claim. A task claims its item (a conditional update), generates
outside any transaction, and records the outcome fenced by its attempt number; a duplicate delivery
finds the item taken and does nothing. While it generates, the worker renews the claim's lease every
third of `lease_s`, so a lease can be short (a dead worker's items come back within it) however long a
generation takes; a worker that dies stops renewing, and a sweeper (sweeper.py) expires its leases. Retry delays
are slept here, holding no slot, so both brokers behave the same (Taskiq's retry middlewares do not
back off on the in-memory one: docs/stack-notes.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from taskiq.api import run_receiver_task

from livebatch.batches import item_repository, work
from livebatch.batches.accounting import Charge, Usage, charge
from livebatch.batches.lifecycle import Failure
from livebatch.batches.questions import Question, rule_broken
from livebatch.batches.retry import RetryPolicy
from livebatch.batches.work import Claim, NotYet
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.generation.owner import LeaseOwner, embedded_owner, random_owner
from livebatch.generation.providers import GenerationError, ItemRequest, Provider
from livebatch.generation.queue import ItemQueue, TaskQueue
from livebatch.generation.sweeper import Sweeper
from livebatch.metrics import Metrics
from livebatch.uow import Transactions, UnitOfWork

logger = logging.getLogger("livebatch.worker")


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        transactions: Transactions,
        queue: TaskQueue,
        provider: Provider,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.transactions = transactions
        self.db: Database = transactions.db
        self.queue = queue
        self.provider = provider
        self.metrics = metrics
        self.now = clock
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.lease = timedelta(seconds=settings.lease_s)
        self.deadline_s = settings.generation_timeout_s
        self.retry_policy = RetryPolicy(settings.max_attempts, settings.retry_base_ms, settings.retry_max_ms)
        self.prices = settings.prices
        self.sweeper = Sweeper(transactions, settings=settings, retry_policy=self.retry_policy, clock=clock)
        self.claims: dict[UUID, int] = {}  # attempts this process is generating: item id -> attempt number
        self.owner: LeaseOwner = random_owner()  # the name on its claims; an embedded one's is set at start
        self.accepting = True  # False once stopping: received items are handed back, not started
        self.closing = False
        self._held: Counter[UUID] = Counter()  # items this process received and has not finished with
        self._refused: set[UUID] = set()
        self._work: set[asyncio.Task[Any]] = set()  # item tasks under way in this process
        self._background: list[asyncio.Task[Any]] = []
        self._requeue: asyncio.Task[None] | None = None
        self._stuck: set[asyncio.Task[Any]] = set()  # background tasks that did not stop when cancelled
        self._stuck_work: set[asyncio.Task[Any]] = set()  # item work that did not stop when cancelled

    @property
    def durable_queue(self) -> bool:
        return isinstance(self.queue.broker, ItemQueue)

    async def start(self) -> None:
        """Reconciles what a previous process left, then sweeps, renews leases and (scaled out) receives."""
        # Embedded: the previous process's in-memory queue is gone, so all dispatched work is lost; and the
        # attempts it held when it was killed are released at once (owner.py), then dispatched again below.
        reconcile = not self.durable_queue
        if reconcile:
            self.owner = embedded_owner(self.settings.data_dir)
            if self.owner.reclaims:
                await self._release_own_claims()
        try:
            await self.sweeper.sweep(all_dispatched=reconcile)
            reconcile = False
        except Exception:
            logger.exception("start-up reconcile failed; the sweeper will try again")
        sweeper = self.sweeper.run_forever(all_dispatched=reconcile)
        self._background.append(asyncio.create_task(sweeper, name="livebatch-sweeper"))
        self._background.append(asyncio.create_task(self._renew_leases_forever(), name="livebatch-leases"))
        if self.durable_queue:
            receiver = run_receiver_task(
                self.queue.broker, max_async_tasks=self.settings.max_concurrency * 4, propagate_exceptions=False
            )
            self._background.append(asyncio.create_task(receiver, name="livebatch-receiver"))

    async def _release_own_claims(self) -> None:
        released = 0
        try:
            async with self.db.read_session() as session:
                batch_ids = await item_repository.batches_claimed_by(session, self.owner.name)
            for batch_id in batch_ids:
                async with self.transactions.begin() as uow:
                    released += await work.release_own_claims(uow, batch_id, self.owner.name)
                    await uow.commit()
        except Exception:
            logger.exception("could not release the claims of this deployment's previous process; they expire")
        if released:
            logger.info(
                "released %d claims held by this deployment's previous process",
                released,
                extra={"released_claims": released},
            )

    def queue_lost(self) -> None:
        """The queue lost its messages (Redis restarted empty): queue every dispatched item again now,
        rather than after the dispatch timeout. Runs in the queue's listener; never blocks it."""
        if self._requeue is not None and not self._requeue.done():
            return
        self._requeue = asyncio.create_task(self._requeue_dispatched(), name="livebatch-requeue")
        self._background = [task for task in self._background if not task.done()] + [self._requeue]

    async def _requeue_dispatched(self) -> None:
        try:
            await self.sweeper.sweep(all_dispatched=True)
        except Exception:
            logger.exception("re-queueing after the queue was lost failed; the sweeper will catch up")

    # --- one item --------------------------------------------------------------------------------------

    async def run(self, item_id: UUID) -> None:
        """The task of one dispatched item: wait for a slot (and a retry delay), claim, generate, record."""
        if self.closing:
            return  # the item stays dispatched; the sweeper of a live process queues it again
        # Known to the worker, so that closing it ends the work (and its acks) before the broker goes.
        task = asyncio.current_task()
        assert task is not None
        self._work.add(task)
        try:
            with self._holding(item_id):
                await self._work_on(item_id)
        except asyncio.CancelledError:
            if not self.closing:
                raise
            # Stopped by `stop`: the item's state is in the database (dispatched, or claimed under a lease)
            # and is taken up again from there. Taskiq would log this cancel as an error, once per item.
        finally:
            self._work.discard(task)

    async def _work_on(self, item_id: UUID) -> None:
        while True:
            async with self.slots:
                if not self.accepting:
                    return  # the process is stopping: the item is handed back, not started
                outcome = await self.transactions.apply(lambda uow: self._claim(uow, item_id))
                if isinstance(outcome, Claim):
                    await self.attempt(outcome)
                    return
            if not isinstance(outcome, NotYet):
                return
            await asyncio.sleep(max(0.0, (outcome.at - self.now()).total_seconds()))

    async def _claim(self, uow: UnitOfWork, item_id: UUID) -> Claim | NotYet | None:
        outcome = await work.claim_item(uow, item_id, now=self.now(), lease=self.lease, owner=self.owner.name)
        if isinstance(outcome, Claim):
            await uow.commit()
        return outcome

    async def attempt(self, claim: Claim) -> None:
        """Generates the claimed item and records the outcome; the lease is renewed meanwhile."""
        self.claims[claim.item_id] = claim.attempt
        try:
            question, failure, used = await self._generate(claim)
            await self._record(claim, question, failure, used)
        finally:
            self.claims.pop(claim.item_id, None)

    async def _generate(self, claim: Claim) -> tuple[Question | None, Failure | None, Charge | None]:
        """The question or why there is none, and what the attempt used (priced with this process's prices)."""
        request = ItemRequest(
            batch_id=claim.batch_id,
            item_index=claim.item_index,
            attempt=claim.attempt,
            course_title=claim.course_title,
            question_type=claim.question_type,
            difficulty=claim.difficulty,
            requeues=claim.requeues,
        )
        started = time.perf_counter()
        question: Question | None = None
        usage: Usage | None = None
        error: GenerationError | None = None
        try:
            async with asyncio.timeout(self.deadline_s):
                generated = await self.provider.generate(request)
            question, usage = generated.question, generated.usage
            broken = rule_broken(question, difficulty=claim.difficulty)
            if broken is not None:
                error = GenerationError("validation", f"Validation failed: {broken}", usage=usage)
        except GenerationError as exc:
            error = exc
        except TimeoutError:
            error = GenerationError("timeout", f"Generation took longer than {self.deadline_s:g}s")
        except Exception as exc:
            logger.exception("generation of item %s crashed", claim.item_id)
            error = GenerationError("internal", f"Internal error: {type(exc).__name__}")
        self.metrics.observe_generation(time.perf_counter() - started, "failed" if error else "completed")
        if error is None:
            return question, None, charge(usage, self.prices)
        retry_after_ms = None if error.retry_after_s is None else round(error.retry_after_s * 1000)
        used = charge(error.usage, self.prices)
        failure = Failure(
            error.kind, error.message, fatal=not error.retryable, retry_after_ms=retry_after_ms, charge=used
        )
        return None, failure, used

    async def _record(
        self, claim: Claim, question: Question | None, failure: Failure | None, used: Charge | None
    ) -> None:
        # A database that is briefly away must not lose a finished generation: retry the short transaction.
        for delay in (0.2, 0.5, 1.0, 2.0, 4.0, None):
            try:
                await self.transactions.apply(lambda uow: self._outcome(uow, claim, question, failure, used))
                return
            except Exception:
                if delay is None:
                    logger.exception("could not record item %s; its lease will expire and it runs again", claim.item_id)
                    return
                logger.warning("recording item %s failed; retrying in %ss", claim.item_id, delay, exc_info=True)
                await asyncio.sleep(delay)

    async def _outcome(
        self, uow: UnitOfWork, claim: Claim, question: Question | None, failure: Failure | None, used: Charge | None
    ) -> None:
        if question is not None:
            await work.complete_item(uow, claim, question, now=self.now(), charge=used)
        elif failure is not None:
            await work.fail_item(uow, claim, failure, policy=self.retry_policy, now=self.now())
        await uow.commit()

    @contextlib.contextmanager
    def _holding(self, item_id: UUID) -> Iterator[None]:
        self._held[item_id] += 1
        try:
            yield
        finally:
            self._held[item_id] -= 1
            if self._held[item_id] <= 0:
                del self._held[item_id]
            if not self.accepting:
                self._refused.add(item_id)  # maybe not started: a candidate to hand back

    # --- the loops -------------------------------------------------------------------------------------

    async def renew_leases(self) -> int:
        """Extends the lease of every attempt this process is generating; returns how many it renewed."""
        claims = list(self.claims.items())
        if not claims:
            return 0
        async with self.db.session() as session:
            renewed = await item_repository.renew_leases(session, claims, until=self.now() + self.lease)
            await session.commit()
        return renewed

    async def _renew_leases_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                await self.renew_leases()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A late renewal only risks a retry of a live attempt, whose result is then discarded.
                logger.warning("could not renew leases; trying again", exc_info=True)

    # --- stopping --------------------------------------------------------------------------------------

    async def drain(self, timeout: float) -> bool:
        """Stops taking work, gives the attempts in flight up to `timeout` to record their outcome, and
        hands back the items received but not started (waiting for a slot or a retry delay), so that a
        worker stopped on purpose leaves no lease to expire and no message to time out. True when no
        attempt was left running."""
        self.accepting = False
        await self._stop_background()
        try:
            async with asyncio.timeout(timeout):
                # Holding every slot means no attempt is running, and keeps new claims from starting.
                for _ in range(self.settings.max_concurrency):
                    await self.slots.acquire()
        except TimeoutError:
            return False
        unfinished = [*self._held, *self._refused]
        broker = self.queue.broker
        if isinstance(broker, ItemQueue):
            try:
                unfinished += [UUID(arg) for arg in await broker.take_unfinished()]
            except Exception as exc:
                logger.warning("could not read this worker's unacknowledged messages (%s)", exc)
        await self._hand_back(unfinished)
        return True

    async def _hand_back(self, item_ids: list[UUID]) -> None:
        if not item_ids:
            return
        try:
            async with self.transactions.begin() as uow:
                handed_back = await work.hand_back(uow, item_ids, now=self.now())
                await uow.commit()
        except Exception:
            logger.exception("could not hand items back; they are queued again after the dispatch timeout")
            return
        logger.info("handed back %d items", handed_back, extra={"handed_back": handed_back})

    async def _stop_background(self) -> None:
        background, self._background = self._background, []
        for task in background:
            task.cancel()
        self._stuck |= await _settle(background, 0.5)

    async def stop(self) -> None:
        """Stops the loops and the item work under way (before the queue closes: work still running would
        ack through a closed pool). Cancelled, an item leaves its message unacked (a Redis queue delivers
        it again) and its item to the lease."""
        self.closing = True
        await self._stop_background()
        work_under_way = set(self._work)
        for task in work_under_way:
            task.cancel()
        self._stuck_work = await _settle(work_under_way, 5.0)
        _log_stuck(self._stuck_work, "item work")

    async def aclose(self) -> None:
        """After the queue has closed: waits for loops that did not stop at once, and closes the provider.

        Taskiq's Redis receiver can lose a cancel that lands as its first XREADGROUP starts; closing the
        broker's connections ends that read, so the receiver gets a second chance after the shutdown."""
        _log_stuck(await _settle(self._stuck, 5.0), "background task")
        # Item work that would not stop may still hold claims under the owner's name: then the name stays
        # locked by this process, so that no later worker of this deployment releases them.
        self.owner.close(release=not any(not task.done() for task in self._stuck_work))
        await self.provider.aclose()


async def _settle(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> set[asyncio.Task[Any]]:
    """Waits at most `timeout` for (cancelled) tasks to end; returns those still running."""
    pending = set(tasks)
    if not pending:
        return set()
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s ended with an error at close", task.get_name(), exc_info=task.exception())
    return stuck


def _log_stuck(tasks: set[asyncio.Task[Any]], what: str) -> None:
    for task in tasks:
        stack = io.StringIO()
        task.print_stack(file=stack)
        logger.warning("%s %s would not stop; left behind:\n%s", what, task.get_name(), stack.getvalue())
