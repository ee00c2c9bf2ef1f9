"""Finished batches for the page benchmark, written in bulk: the rows a real run leaves, in a second.

Running 10 000 items through the pipeline takes minutes here (4 min at zero latency), so the batch is written
directly: the batch row with its counters, seq and completion window; every item completed once; a generated
item each (the offline provider's question); and the event log a run at `RATE` items/s would have written
(`item.started` and `item.completed` per item, then `batch.complete`), with the payloads of the real event
classes. `tests/checks.assert_consistent` accepts the result.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import insert

from livebatch.batches import progress, service
from livebatch.batches.events import BatchComplete, ItemCompleted, ItemStarted
from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.batches.schemas import BatchCreate
from livebatch.batches.status import BatchStatus, ItemStatus
from livebatch.clock import iso, utcnow
from livebatch.db import Database
from livebatch.events.log import LogEntry
from livebatch.generation.offline import compose
from livebatch.generation.providers import ItemRequest

COURSE = "course-uuid-1"
RATE = 50  # items per second of the simulated run
DURATION_MS = 160  # each item's generation time
CHUNK = 2000


def spec(count: int) -> dict[str, Any]:
    """The API body of a batch of `count` items."""
    return {
        "courseId": COURSE,
        "targetCount": count,
        "questionType": "single-best-answer",
        "difficultyDistribution": {"easy": 30, "medium": 50, "hard": 20},
    }


async def write_finished_batch(db: Database, owner_id: UUID, count: int) -> UUID:
    """A completed batch of `count` items owned by `owner_id`, as if it had just run; returns its id."""
    create = BatchCreate.model_validate(spec(count))
    batch_id = uuid4()
    step = timedelta(seconds=1 / RATE)
    took = timedelta(milliseconds=DURATION_MS)
    started = utcnow() - step * count - took
    items: list[dict[str, Any]] = []
    generated: list[dict[str, Any]] = []
    timeline: list[tuple[datetime, int, str, str]] = []  # (at, order, name, payload)
    window: list[int] = []
    for idx, difficulty in enumerate(service.assign_difficulties(count, create.difficulty_distribution)):
        item_id, generation_id = uuid4(), uuid4()
        begin = started + step * idx
        end = begin + took
        items.append(
            {
                "id": item_id,
                "batch_id": batch_id,
                "idx": idx,
                "difficulty": difficulty,
                "status": ItemStatus.completed,
                "attempts": 1,
                "next_attempt_at": begin,
                "dispatched_at": begin,
                "started_at": begin,
                "finished_at": end,
                "duration_ms": DURATION_MS,
                "generation_id": generation_id,
            }
        )
        request = ItemRequest(batch_id, idx, 1, "Cardiology", "single-best-answer", difficulty)
        content = compose(request).model_dump()
        generated.append(
            {"id": generation_id, "item_id": item_id, "batch_id": batch_id, "idx": idx, "content": content}
        )
        generated[-1] |= {"answer": content["answer"], "created_at": end}
        begin_event = ItemStarted(item_id=str(item_id), item_index=idx, started_at=iso(begin))
        end_event = ItemCompleted(
            item_id=str(item_id),
            item_index=idx,
            generation_id=str(generation_id),
            duration_ms=DURATION_MS,
            completed_at=iso(end),
        )
        timeline += [(begin, 0, begin_event.name, begin_event.to_json()), (end, 1, end_event.name, end_event.to_json())]
        window = progress.push_completion(window, round((end - started).total_seconds() * 1000))
    finished = started + step * count + took
    total_ms = round((finished - started).total_seconds() * 1000)
    done = BatchComplete(
        batch_id=str(batch_id),
        status=BatchStatus.completed,
        total_items=count,
        completed_items=count,
        failed_items=0,
        total_duration_ms=total_ms,
    )
    timeline.sort(key=lambda t: (t[0], t[1]))
    timeline.append((finished, 2, done.name, done.to_json()))
    events = [
        {"batch_id": batch_id, "seq": seq, "name": name, "payload": payload, "created_at": at}
        for seq, (at, _, name, payload) in enumerate(timeline, start=1)
    ]
    batch = Batch(
        id=batch_id,
        owner_id=owner_id,
        course_id=COURSE,
        config=create.model_dump(by_alias=True),
        status=BatchStatus.completed,
        concurrency=round(RATE * DURATION_MS / 1000),
        item_prior_ms=DURATION_MS,
        total_items=count,
        completed_items=count,
        last_seq=len(events),
        active_ms=total_ms,
        completion_window=window,
        created_at=started,
        started_at=started,
        completed_at=finished,
    )
    async with db.session() as session:
        session.add(batch)
        await session.flush()
        for model, rows in ((Item, items), (GeneratedItem, generated), (LogEntry, events)):
            for start in range(0, len(rows), CHUNK):
                await session.execute(insert(model), rows[start : start + CHUNK])
        await session.commit()
    return batch_id
