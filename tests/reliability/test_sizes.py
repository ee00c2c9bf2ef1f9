"""What a model writes is bounded before it is stored or sent: a 2 MB refusal is kept, in the item's error and
in every `item.failed`, cut to a few kilobytes with a marker that says so (not sent whole to every viewer), and
a 3 MB stem is refused by the item's rules, so no row holds it. Every stored text of the batch stays small."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from livebatch.batches.lifecycle import ERROR_MESSAGE_CHARS
from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.events.log import LogEntry
from livebatch.parts import Parts
from tests.batches.conftest import PartsFactory, start_batch
from tests.checks import assert_consistent, event_log, wait_for_status
from tests.conftest import Person
from tests.fakes.llm_server import ITEM, FakeLLM

REFUSAL = "I will not. " * 180_000  # about 2 MB
STEM = "A patient presents with " + "chest pain " * 280_000 + "; which artery?"  # about 3 MB
PAYLOAD_BYTES = 8 * 1024  # the most any event of the log may hold


async def _largest(rt: Parts, column: Any, where: Any) -> int:
    async with rt.db.read_session() as session:
        return int(
            (await session.execute(select(func.coalesce(func.max(func.length(column)), 0)).where(where))).scalar_one()
        )


async def test_a_2_mb_refusal_and_a_3_mb_stem_are_bounded_before_they_are_stored_or_sent(
    open_parts: PartsFactory, fake_llm: FakeLLM, people: dict[str, Person]
) -> None:
    fake_llm.queue(f"refusal:{REFUSAL}", f"refusal:{REFUSAL}")  # the first item, both attempts
    rt = await open_parts(
        provider="openai", openai_base_url=fake_llm.base_url, max_attempts=2, batch_concurrency=1, openai_timeout_s=30
    )
    refused = await start_batch(rt, people["faculty"], 1, error_rate_guard=False)
    assert (await wait_for_status(rt, refused)).status == "failed"
    await assert_consistent(rt.db, refused)

    failures = [p for _, name, p in await event_log(rt.db, refused) if name == "item.failed"]
    assert len(failures) == 2
    for failure in failures:
        message = failure["errorMessage"]
        assert message.startswith("Validation failed: the model refused (I will not. I will not.")
        assert len(message) <= ERROR_MESSAGE_CHARS and "characters in all" in message, message[-200:]
    assert await _largest(rt, Item.last_error, Item.batch_id == refused) <= ERROR_MESSAGE_CHARS
    assert await _largest(rt, Batch.error_message, Batch.id == refused) <= ERROR_MESSAGE_CHARS + 100
    assert await _largest(rt, LogEntry.payload, LogEntry.batch_id == refused) <= PAYLOAD_BYTES

    fake_llm.item = dict(ITEM, stem=STEM)
    long_stem = await start_batch(rt, people["faculty"], 1, error_rate_guard=False)
    assert (await wait_for_status(rt, long_stem)).status == "failed"
    async with rt.db.read_session() as session:
        stored = (await session.execute(select(func.count()).select_from(GeneratedItem))).scalar_one()
    assert stored == 0, "a 3 MB stem was stored"
    failures = [p for _, name, p in await event_log(rt.db, long_stem) if name == "item.failed"]
    assert {f["errorMessage"] for f in failures} == {"Validation failed: the stem is longer than 1000 characters"}
    assert await _largest(rt, LogEntry.payload, LogEntry.batch_id == long_stem) <= PAYLOAD_BYTES
