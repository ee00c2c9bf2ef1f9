"""Reading a batch's event log as a ledger of attempts: what the tests of the pipeline assert on."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from uuid import UUID

from sqlalchemy import select

from livebatch.batches.models import Item
from livebatch.db import Database
from tests.checks import event_log

Event = tuple[int, str, dict[str, Any]]


@dataclass(frozen=True)
class Attempts:
    """What the event log says about a finished batch's attempts."""

    started: int
    retried: int
    failed_for_good: int
    completed: int


def max_in_flight(events: list[Event]) -> int:
    """The most items of the batch in progress at once, replayed from `item.started` and its outcome."""
    current = peak = 0
    for _, name, _ in events:
        if name == "item.started":
            current += 1
            peak = max(peak, current)
        elif name in ("item.completed", "item.failed"):
            current -= 1
    return peak


def released(history: list[Event]) -> list[Event]:
    """The `item.started` events of attempts released by a restart (their process killed mid-attempt, the
    restarted one took them back uncounted: generation/owner.py): those followed at once by another start."""
    return [event for event, after in pairwise(history) if event[1] == after[1] == "item.started"]


async def assert_attempts_accounted(db: Database, batch_id: UUID | str, *, max_attempts: int) -> Attempts:
    """Every attempt of every item is in the log in order: `item.started`, then `item.completed` or
    `item.failed` whose `retryCount` is the attempt's number and whose `willRetry` is false exactly on the
    last attempt; the item rows agree (attempts, status). An attempt released by a restart has its start
    and no outcome, and is not counted (`released`)."""
    events = await event_log(db, batch_id)
    by_item: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if event[1].startswith("item."):
            by_item[event[2]["itemId"]].append(event)
    for item_id, history in by_item.items():
        dropped = released(history)
        by_item[item_id] = [event for event in history if event not in dropped]
    async with db.read_session() as session:
        items = {
            str(item.id): item
            for item in (await session.execute(select(Item).where(Item.batch_id == UUID(str(batch_id))))).scalars()
        }
    retried = failed_for_good = completed = started = 0
    for item_id, item in items.items():
        history = by_item.get(item_id, [])
        assert len(history) % 2 == 0, f"item {item.idx}: an attempt without its outcome: {history}"
        attempts = len(history) // 2
        assert item.attempts == attempts, f"item {item.idx}: row says {item.attempts} attempts, log {attempts}"
        for n in range(1, attempts + 1):
            (_, first, began), (_, outcome, payload) = history[2 * n - 2], history[2 * n - 1]
            assert first == "item.started" and began["itemIndex"] == item.idx
            last = n == attempts
            if outcome == "item.completed":
                assert last, f"item {item.idx} went on after completing"
                assert payload["generationId"] == str(item.generation_id)
                completed += 1
                continue
            assert outcome == "item.failed", outcome
            assert payload["retryCount"] == n, f"item {item.idx}: attempt {n} reported as {payload['retryCount']}"
            assert payload["willRetry"] is (not last), f"item {item.idx}: willRetry wrong on attempt {n}"
            if last:
                assert item.status == "failed" and n == max_attempts, f"item {item.idx} gave up after {n} attempts"
                failed_for_good += 1
            else:
                retried += 1
        started += attempts
        if attempts and history[-1][1] == "item.completed":
            assert item.status == "completed"
    return Attempts(started=started, retried=retried, failed_for_good=failed_for_good, completed=completed)
