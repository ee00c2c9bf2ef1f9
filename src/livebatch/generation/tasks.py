"""Item work: one Taskiq task per item, at least once, made idempotent by the claim.

A task claims its item (a conditional update), generates outside any transaction, and records the
outcome fenced by its attempt number. A duplicate delivery finds the item taken and does nothing. While
it generates, its process renews the claim's lease every third of `lease_s`, so a lease can be short
(a dead worker's items come back within it) however long a generation takes; a worker that dies stops
renewing, and the sweeper expires its leases. Retry delays are slept here, holding no slot,
so both brokers behave the same (Taskiq's retry middlewares do not back off on the in-memory one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from taskiq import AsyncBroker, Context, TaskiqDepends
from taskiq.decor import AsyncTaskiqDecoratedTask

from livebatch.batches import repository, service
from livebatch.batches.service import Claim, NotYet
from livebatch.generation.items import rule_broken
from livebatch.generation.providers import GenerationError, ItemRequest

if TYPE_CHECKING:
    from livebatch.runtime import Runtime

TASK_NAME = "livebatch.generate_item"
logger = logging.getLogger("livebatch.worker")


async def generate_item(item_id: str, context: Annotated[Context, TaskiqDepends()]) -> None:
    runtime: Runtime = context.state.runtime
    if runtime.closing:
        return  # the item stays dispatched; the sweeper of a live process queues it again
    # Known to the runtime, so that closing it ends the work (and its acks) before the broker goes.
    task = asyncio.current_task()
    assert task is not None
    runtime.work.add(task)
    try:
        with runtime.holding(UUID(item_id)):
            await work_on_item(runtime, UUID(item_id))
    except asyncio.CancelledError:
        if not runtime.closing:
            raise
        # Stopped by `Runtime.aclose`: the item's state is in the database (dispatched, or claimed under a
        # lease) and is taken up again from there. Taskiq would log this cancel as an error, once per item.
    finally:
        runtime.work.discard(task)


def register(broker: AsyncBroker) -> AsyncTaskiqDecoratedTask[Any, Any]:
    return broker.register_task(generate_item, task_name=TASK_NAME)


async def work_on_item(rt: Runtime, item_id: UUID) -> None:
    while True:
        async with rt.slots:
            if not rt.accepting:
                return  # the process is stopping: the item is handed back, not started
            async with rt.db.session() as session:
                outcome = await service.claim_item(session, item_id, now=rt.now(), lease=rt.lease)
                if isinstance(outcome, Claim):
                    await rt.commit(session)
            if isinstance(outcome, Claim):
                await attempt(rt, outcome)
                return
        if not isinstance(outcome, NotYet):
            return
        await asyncio.sleep(max(0.0, (outcome.at - rt.now()).total_seconds()))


async def attempt(rt: Runtime, claim: Claim) -> None:
    request = ItemRequest(
        batch_id=claim.batch_id,
        item_index=claim.item_index,
        attempt=claim.attempt,
        course_title=claim.course_title,
        question_type=claim.question_type,
        difficulty=claim.difficulty,
    )
    rt.claims[claim.item_id] = claim.attempt  # renewed by `renew_leases_forever` until recorded
    try:
        await _generate(rt, claim, request)
    finally:
        rt.claims.pop(claim.item_id, None)


async def _generate(rt: Runtime, claim: Claim, request: ItemRequest) -> None:
    started = time.perf_counter()
    error: GenerationError | None = None
    try:
        async with asyncio.timeout(rt.generation_deadline_s):
            question = await rt.provider.generate(request)
        broken = rule_broken(question, difficulty=claim.difficulty)
        if broken is not None:
            error = GenerationError("validation", f"Validation failed: {broken}")
    except GenerationError as exc:
        error = exc
    except TimeoutError:
        error = GenerationError("timeout", f"Generation took longer than {rt.generation_deadline_s:g}s")
    except Exception as exc:
        logger.exception("generation of item %s crashed", claim.item_id)
        error = GenerationError("internal", f"Internal error: {type(exc).__name__}")
    rt.metrics.observe_generation(time.perf_counter() - started, "failed" if error else "completed")
    await _record(rt, claim, error, question if error is None else None)


async def _record(rt: Runtime, claim: Claim, error: GenerationError | None, question: Any) -> None:
    # A database that is briefly away must not lose a finished generation: retry the short transaction.
    for delay in (0.2, 0.5, 1.0, 2.0, 4.0, None):
        try:
            async with rt.db.session() as session:
                if error is None:
                    await service.complete_item(session, claim, question, now=rt.now())
                else:
                    await service.fail_item(
                        session,
                        claim,
                        kind=error.kind,
                        message=error.message,
                        fatal=not error.retryable,
                        policy=rt.retry_policy,
                        now=rt.now(),
                        retry_after_ms=None if error.retry_after_s is None else round(error.retry_after_s * 1000),
                    )
                await rt.commit(session)
            return
        except Exception:
            if delay is None:
                logger.exception("could not record item %s; its lease will expire and it will run again", claim.item_id)
                return
            logger.warning("recording item %s failed; retrying in %ss", claim.item_id, delay, exc_info=True)
            await asyncio.sleep(delay)


async def renew_leases(rt: Runtime) -> int:
    """Extends the lease of every attempt this process is generating; returns how many it renewed."""
    claims = list(rt.claims.items())
    if not claims:
        return 0
    async with rt.db.session() as session:
        renewed = await repository.renew_leases(session, claims, until=rt.now() + rt.lease)
        await session.commit()
    return renewed


async def renew_leases_forever(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.settings.lease_s / 3)
        try:
            await renew_leases(rt)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A late renewal only risks a retry of a live attempt, whose result is then discarded.
            logger.warning("could not renew leases; trying again", exc_info=True)


async def sweep(rt: Runtime, *, all_dispatched: bool = False) -> None:
    """One pass of the sweeper: expire dead leases, re-queue lost work, refill batch windows.

    Work dispatched `dispatch_timeout` ago and still unclaimed is queued again, on either queue (a task
    can die before its claim); the claim makes the duplicate harmless. `all_dispatched` re-queues every
    dispatched item regardless of age: right at start-up of an embedded process, whose in-memory queue
    died with the previous one."""
    now = rt.now()
    async with rt.db.read_session() as session:
        expired = await repository.expired_leases(session, now=now, limit=500)
        lost_before = None if all_dispatched else now - rt.dispatch_timeout
        stale = await repository.stale_dispatches(session, before=lost_before, limit=5000)
        short = await repository.undersupplied_batches(session)
    for item_id, attempt_no in expired:
        async with rt.db.session() as session:
            await service.expire_lease(session, item_id, attempt_no, policy=rt.retry_policy, now=now)
            await rt.commit(session)
    redispatched: list[UUID] = []
    if stale:
        async with rt.db.session() as session:
            redispatched = await repository.redispatch(session, stale, now=now, before=lost_before)
            await session.commit()
        await rt.kick(redispatched)
    for batch_id in short:
        async with rt.db.session() as session:
            await service.top_up(session, batch_id, now=rt.now())
            await rt.commit(session)
    if expired or redispatched:
        logger.info(
            "sweeper: %d expired leases, %d lost dispatches re-queued",
            len(expired),
            len(redispatched),
            extra={"expired_leases": len(expired), "requeued": len(redispatched)},
        )


async def sweep_forever(rt: Runtime, *, all_dispatched: bool = False) -> None:
    """A sweep every `sweep_interval_s`, after the one `Runtime.start` made; `all_dispatched` while the
    start-up reconcile has still to succeed."""
    while True:
        await asyncio.sleep(rt.settings.sweep_interval_s)
        try:
            await sweep(rt, all_dispatched=all_dispatched)
            all_dispatched = False
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sweeper pass failed; trying again")
