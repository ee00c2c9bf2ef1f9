"""Failed items grouped by cause (batches/failures.py, pure), and "retry these": retry-failed with a filter, on a
real pipeline."""

from __future__ import annotations

from uuid import UUID

import pytest
from sqlalchemy import select

from livebatch.batches import service
from livebatch.batches.failures import GAP, FailureCount, group_failures, group_key, matching, normalize
from livebatch.batches.models import Item
from livebatch.batches.schemas import RetryFilter
from livebatch.batches.service import InvalidTransition, Limits
from livebatch.generation.providers import GenerationError
from livebatch.parts import Parts
from tests.batches.conftest import PartsFactory, ProbeProvider, control, start_batch
from tests.checks import assert_consistent, event_log, wait_for_status
from tests.conftest import Person


@pytest.mark.parametrize(
    ("message", "normalized"),
    [
        ("Validation failed: options B and D are identical", f"Validation failed: options {GAP} are identical"),
        ("Validation failed: options A and C are identical", f"Validation failed: options {GAP} are identical"),
        ("Validation failed: option C is empty", f"Validation failed: option {GAP} is empty"),
        (
            "Validation failed: expected 5 options (A-E), got 4",
            f"Validation failed: expected {GAP} options (A-E), got {GAP}",
        ),
        (
            "Validation failed: difficulty is easy, hard was requested",
            f"Validation failed: difficulty is {GAP}, {GAP} was requested",
        ),
        ("LLM provider timeout after 60s", f"LLM provider timeout after {GAP}"),
        ("LLM provider timeout after 2.5 s", f"LLM provider timeout after {GAP}"),
        ("Generation took longer than 90s", f"Generation took longer than {GAP}"),
        ("Provider error: HTTP 503", f"Provider error: HTTP {GAP}"),
        ("Rate limited by the provider (HTTP 429)", f"Rate limited by the provider ({GAP})"),
        ("The provider does not know model 'gpt-x' (HTTP 404).", f"The provider does not know model '{GAP}' ({GAP})"),
        ('Validation failed: the model refused ("no")', f"Validation failed: the model refused ({GAP})"),
        ("Request 3fa85f64-5717-4562-b3fc-2c963f66afa6 took 200 ms", f"Request {GAP} took {GAP}"),
        ("Internal error: ValueError", "Internal error: ValueError"),  # nothing varies: kept whole
        ("  Provider   error:\nHTTP 500 ", f"Provider error: HTTP {GAP}"),  # whitespace is not a cause
    ],
)
def test_normalize_takes_out_what_varies_from_item_to_item(message: str, normalized: str) -> None:
    assert normalize(message) == normalized


@pytest.mark.parametrize(
    ("first", "second", "same_group"),
    [
        (("validation", "options B and D are identical"), ("validation", "options A and C are identical"), True),
        (("timeout", "LLM provider timeout after 60s"), ("timeout", "LLM provider timeout after 30s"), True),
        (("validation", "options B and D are identical"), ("validation", "option C is empty"), False),
        # The same words from another kind of failure are another cause.
        (("timeout", "Provider error: HTTP 500"), ("provider_error", "Provider error: HTTP 500"), False),
    ],
)
def test_a_group_key_is_the_kind_and_the_normalized_message(
    first: tuple[str, str], second: tuple[str, str], same_group: bool
) -> None:
    assert (group_key(*first) == group_key(*second)) is same_group
    assert group_key(*first).startswith(f"{first[0]}-") and len(group_key(*first)) <= 64


def test_groups_add_up_largest_first_with_the_most_frequent_message_as_example() -> None:
    counts = [
        FailureCount("validation", "Validation failed: options B and D are identical", 2),
        FailureCount("validation", "Validation failed: options A and C are identical", 3),
        FailureCount("timeout", "LLM provider timeout after 60s", 4),
        FailureCount("validation", "Validation failed: option C is empty", 1),
        FailureCount(None, None, 1),  # a failure recorded without a kind or a message
    ]
    groups = group_failures(counts)
    assert [(g.error_kind, g.message, g.count) for g in groups] == [
        ("validation", f"Validation failed: options {GAP} are identical", 5),
        ("timeout", f"LLM provider timeout after {GAP}", 4),
        ("internal", "Unknown error", 1),
        ("validation", f"Validation failed: option {GAP} is empty", 1),
    ]
    assert groups[0].example == "Validation failed: options A and C are identical"
    assert sum(g.count for g in groups) == sum(c.count for c in counts)
    assert group_failures([]) == []


def test_matching_selects_the_exact_messages_of_the_kinds_and_groups_asked_for() -> None:
    duplicate_bd = FailureCount("validation", "Validation failed: options B and D are identical", 2)
    duplicate_ac = FailureCount("validation", "Validation failed: options A and C are identical", 3)
    empty = FailureCount("validation", "Validation failed: option C is empty", 1)
    timeout = FailureCount("timeout", "LLM provider timeout after 60s", 4)
    counts = [duplicate_bd, duplicate_ac, empty, timeout]

    def pair(c: FailureCount) -> tuple[str | None, str | None]:
        return c.error_kind, c.error_message

    assert matching(counts, kinds=["timeout"]) == [pair(timeout)]
    assert matching(counts, keys=[group_key("validation", duplicate_bd.error_message or "")]) == [
        pair(duplicate_bd),
        pair(duplicate_ac),
    ]
    assert matching(counts, kinds=["timeout"], keys=[group_key("validation", empty.error_message or "")]) == []
    assert matching(counts, kinds=["rate_limited"]) == []
    assert matching(counts) == [pair(c) for c in counts]


# --- retry these: the service on a real pipeline ----------------------------------------------------------


async def _statuses(rt: Parts, batch_id: UUID) -> dict[int, tuple[str, str | None]]:
    async with rt.db.read_session() as session:
        rows = await session.execute(
            select(Item.idx, Item.status, Item.last_error_kind).where(Item.batch_id == batch_id).order_by(Item.idx)
        )
        return {idx: (str(status), kind) for idx, status, kind in rows.all()}


def _timeout() -> GenerationError:
    return GenerationError("timeout", "LLM provider timeout after 60s")


def _duplicate(letters: str) -> GenerationError:
    return GenerationError("validation", f"Validation failed: options {letters[0]} and {letters[1]} are identical")


async def _batch_with_mixed_failures(rt: Parts, probe: ProbeProvider, owner: Person) -> UUID:
    """Six items: #0 and #1 time out twice, #2, #3 and #4 break a rule twice (different letters), #5 succeeds."""
    for index in (0, 1):
        probe.fail(index, _timeout(), _timeout())
    for index, letters in ((2, "BD"), (3, "AC"), (4, "BE")):
        probe.fail(index, _duplicate(letters), _duplicate(letters))
    batch_id = await start_batch(rt, owner, 6)
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.failed_items, batch.completed_items) == ("completed_with_errors", 5, 1)
    return batch_id


async def test_retry_with_a_kind_filter_runs_only_those_failures_again(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, max_attempts=2)
    owner = people["faculty"]
    batch_id = await _batch_with_mixed_failures(rt, probe, owner)
    calls_before = dict(probe.calls)

    retried = await control(
        rt, service.retry_failed, batch_id, owner.user, limits=rt.limits, only=RetryFilter(error_kinds=["timeout"])
    )
    assert (retried.status, retried.failed_items) == ("running", 3)
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items, batch.failed_items) == ("completed_with_errors", 3, 3)
    statuses = await _statuses(rt, batch_id)
    assert [statuses[i][0] for i in range(6)] == ["completed", "completed", "failed", "failed", "failed", "completed"]
    # The items that failed validation were not attempted again.
    assert all(probe.calls[batch_id, i] == calls_before[batch_id, i] for i in (2, 3, 4, 5))
    assert [p["retriedItems"] for _, n, p in await event_log(rt.db, batch_id) if n == "batch.retried"] == [2]
    await assert_consistent(rt.db, batch_id)


async def test_retry_of_one_group_runs_its_items_whatever_their_letters(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, max_attempts=2)
    owner = people["faculty"]
    batch_id = await _batch_with_mixed_failures(rt, probe, owner)
    key = group_key("validation", "Validation failed: options B and D are identical")

    await control(rt, service.retry_failed, batch_id, owner.user, limits=rt.limits, only=RetryFilter(groups=[key]))
    batch = await wait_for_status(rt, batch_id)
    assert (batch.completed_items, batch.failed_items) == (4, 2)
    statuses = await _statuses(rt, batch_id)
    assert {i for i, (status, _) in statuses.items() if status == "failed"} == {0, 1}
    assert [p["retriedItems"] for _, n, p in await event_log(rt.db, batch_id) if n == "batch.retried"] == [3]
    await assert_consistent(rt.db, batch_id)


async def test_a_filter_that_selects_nothing_is_refused_and_changes_nothing(
    open_parts: PartsFactory, people: dict[str, Person]
) -> None:
    probe = ProbeProvider()
    rt = await open_parts(probe, max_attempts=2)
    owner = people["faculty"]
    batch_id = await _batch_with_mixed_failures(rt, probe, owner)
    before = await event_log(rt.db, batch_id)
    for only in (RetryFilter(error_kinds=["rate_limited"]), RetryFilter(groups=["timeout-0000000000"])):
        with pytest.raises(InvalidTransition, match="No failed item"):
            await control(rt, service.retry_failed, batch_id, owner.user, limits=rt.limits, only=only)
    assert await event_log(rt.db, batch_id) == before
    # An empty filter is no filter: every failed item runs again, as without one.
    await control(rt, service.retry_failed, batch_id, owner.user, limits=Limits(), only=RetryFilter())
    batch = await wait_for_status(rt, batch_id)
    assert (batch.status, batch.completed_items) == ("completed", 6)
