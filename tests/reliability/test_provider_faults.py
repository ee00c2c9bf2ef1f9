"""Batches on the `openai` provider, served by the local fake: every failure the server can produce
lands in the event log as a retried `item.failed` of the right kind, and a rejected key stops the batch
at once instead of after every item's retries."""

from __future__ import annotations

from sqlalchemy import select

from livebatch.batches import service
from livebatch.events.log import LogEntry
from livebatch.parts import Parts
from tests.batches.conftest import PartsFactory, control, start_batch
from tests.batches.ledger import assert_attempts_accounted
from tests.checks import assert_consistent, event_log, load_batch, wait_for_status, wait_until
from tests.conftest import Person
from tests.fakes.llm_server import FakeLLM


async def _openai(open_parts: PartsFactory, fake_llm: FakeLLM, **overrides: object) -> Parts:
    return await open_parts(provider="openai", openai_base_url=fake_llm.base_url, openai_timeout_s=0.5, **overrides)


async def test_every_transient_failure_is_retried_with_its_kind_until_the_item_is_generated(
    open_parts: PartsFactory, fake_llm: FakeLLM, people: dict[str, Person]
) -> None:
    script = [
        *("500", "503", "reset", "reset-body", "timeout:2", "429", "malformed", "schema", "refusal", "duplicate"),
        *("length", "placeholders"),
    ]
    fake_llm.queue(*script)
    rt = await _openai(open_parts, fake_llm, max_attempts=len(script) + 1)
    # Twelve failures in a row: the error-rate guard (issue 13) would pause it, which is not the point here.
    batch_id = await start_batch(rt, people["faculty"], 1, error_rate_guard=False)
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items) == ("completed", 1)
    await assert_consistent(rt.db, batch_id)
    await assert_attempts_accounted(rt.db, batch_id, max_attempts=len(script) + 1)

    failures = [p for _, name, p in await event_log(rt.db, batch_id) if name == "item.failed"]
    assert [(p["itemIndex"], p["retryCount"], p["willRetry"], p["errorKind"]) for p in failures] == [
        (0, n, True, kind)
        for n, kind in enumerate(
            [
                "provider_error",
                "provider_error",
                "provider_error",
                "provider_error",
                "timeout",
                "rate_limited",
                "validation",
                "validation",
                "validation",
                "validation",
                "truncated",
                "validation",
            ],
            start=1,
        )
    ]
    assert failures[0]["errorMessage"] == "Provider error: HTTP 500: fake 500"  # with what the server said
    assert failures[9]["errorMessage"] == "Validation failed: options B and D are identical"
    assert failures[10]["errorMessage"].startswith("Truncated: the answer reached the token cap (1024 tokens)")
    assert failures[11]["errorMessage"] == 'Validation failed: option A is a placeholder ("A"), not an answer'

    assert failures[3]["errorMessage"].startswith("Could not reach the provider")  # reset mid-body
    assert failures[4]["errorMessage"] == "LLM provider timeout after 0.5s"
    assert fake_llm.request_count == len(script) + 1, "one request per attempt"
    assert {r["body"]["model"] for r in fake_llm.requests} == {"gpt-4o-mini"}


async def test_a_rejected_api_key_fails_the_batch_at_once_with_a_clear_message(
    open_parts: PartsFactory, fake_llm: FakeLLM, people: dict[str, Person]
) -> None:
    fake_llm.default = "401"
    rt = await _openai(open_parts, fake_llm, batch_concurrency=4, max_attempts=3)
    batch_id = await start_batch(rt, people["faculty"], 20)
    batch = await wait_for_status(rt, batch_id)
    assert batch.status == "failed"
    assert batch.error_message == "The provider rejected the API key (HTTP 401): check LIVEBATCH_OPENAI_API_KEY."
    assert fake_llm.request_count <= 4, "no item is tried again, no new item starts"
    await assert_consistent(rt.db, batch_id)
    assert batch.failed_items <= 4 and batch.pending_items >= 16
    events = await event_log(rt.db, batch_id)
    failed = [p for _, name, p in events if name == "item.failed"]
    assert failed and all(p["willRetry"] is False and p["errorKind"] == "auth" for p in failed)
    assert events[-1][1] == "batch.complete" and events[-1][2]["status"] == "failed"


async def test_retry_after_from_the_provider_delays_the_next_attempt(
    open_parts: PartsFactory, fake_llm: FakeLLM, people: dict[str, Person]
) -> None:
    fake_llm.queue("429:1")
    rt = await _openai(open_parts, fake_llm, retry_base_ms=20, retry_max_ms=40)
    batch_id = await start_batch(rt, people["faculty"], 1)
    assert (await wait_for_status(rt, batch_id)).status == "completed"
    async with rt.db.read_session() as session:
        rows = (
            await session.execute(select(LogEntry.name, LogEntry.created_at).where(LogEntry.batch_id == batch_id))
        ).all()
    assert [name for name, _ in rows] == [
        "item.started",
        "item.failed",
        "item.started",
        "item.completed",
        "batch.complete",
    ]
    waited = (rows[2][1] - rows[1][1]).total_seconds()
    assert waited >= 1.0, f"the second attempt came {waited:.3f}s after the 429, before its Retry-After"


async def test_a_429_storm_pauses_the_batch_within_the_guards_window_and_loses_nothing(
    open_parts: PartsFactory, fake_llm: FakeLLM, people: dict[str, Person]
) -> None:
    fake_llm.default = "429"  # the provider rate-limits every request, for as long as the storm lasts
    rt = await _openai(open_parts, fake_llm, batch_concurrency=4, max_attempts=10, retry_base_ms=5, retry_max_ms=20)
    owner = people["faculty"]
    batch_id = await start_batch(rt, owner, 30)
    paused = await wait_for_status(rt, batch_id, {"paused"})
    assert paused.pause_reason == "error_rate"

    async def settled() -> bool:
        return (await load_batch(rt.db, batch_id)).in_progress_items == 0

    await wait_until(settled)
    events = await event_log(rt.db, batch_id)
    pause_seq = next(seq for seq, name, p in events if name == "batch.paused" and p["reason"] == "error_rate")
    failures_before = [p for seq, name, p in events if name == "item.failed" and seq < pause_seq]
    assert len(failures_before) == 11, "paused at the 11th failure: more than half of a window of 20"
    assert all(p["errorKind"] == "rate_limited" and p["willRetry"] for p in failures_before)
    storm_requests = fake_llm.request_count
    assert storm_requests <= 20, "within the window: the attempts in flight at the pause, and no new one"
    assert storm_requests == sum(1 for _, name, _ in events if name == "item.started")
    batch = await assert_consistent(rt.db, batch_id)
    assert (batch.completed_items, batch.failed_items, batch.pending_items) == (0, 0, 30), "every item waits"
    assert batch.prompt_tokens == 0, "a 429 used no tokens"

    # The storm passes; a person resumes; the batch runs to its end and every attempt is in the log.
    fake_llm.default = "ok"
    resumed = await control(rt, service.resume_batch, batch_id, owner.user)
    assert resumed.recent_outcomes == "" and resumed.pause_reason is None
    done = await wait_for_status(rt, batch_id)
    assert (done.status, done.completed_items) == ("completed", 30)
    await assert_consistent(rt.db, batch_id)
    await assert_attempts_accounted(rt.db, batch_id, max_attempts=10)
    log = await event_log(rt.db, batch_id)
    assert fake_llm.request_count == sum(1 for _, name, _ in log if name == "item.started"), "one request an attempt"
    assert done.prompt_tokens == 30 * 10 and done.completion_tokens == 30 * 10  # the fake's usage, per answer
