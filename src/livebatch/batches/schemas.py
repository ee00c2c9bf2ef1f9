"""Request and response bodies of the batch API.

The batch resource keeps the field names of the brief's `MOCK_BATCH_JOB` fixture (`total_items`,
`started_at`, with its camelCase `config`); what the issue adds (`snapshot`, `items`, `lastEventId`) is
camelCase like the stream's payloads. Issue 13 adds, in the same way: `budget` and `errorRateGuard` in
`config`, `pauseReason` and `guards` in the batch, and each generated item's tokens and cost.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from livebatch.batches.accounting import to_units
from livebatch.batches.events import BatchProgressSnapshot, ErrorKind, PauseReason, WireModel, one_line
from livebatch.batches.failures import FailureGroup
from livebatch.batches.guards import ERROR_WINDOW, Budget, recent_failures
from livebatch.batches.item_repository import FeedRow
from livebatch.batches.models import Batch, GeneratedItem, Item
from livebatch.batches.progress import run_rate_per_minute
from livebatch.batches.questions import LABELS, Difficulty, Label, Option, Question
from livebatch.batches.status import Action, BatchStatus, ItemStatus, allowed_actions
from livebatch.clock import iso, iso_or_none
from livebatch.courses.models import Course

QuestionType = Literal["single-best-answer"]
# An item index as a query parameter: the column is a 32-bit integer on PostgreSQL, so a larger one is a 422,
# not a database error.
MAX_ITEM_INDEX = 2**31 - 1


class DifficultyDistribution(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    easy: int = Field(ge=0, le=100)
    medium: int = Field(ge=0, le=100)
    hard: int = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _sums_to_100(self) -> DifficultyDistribution:
        total = self.easy + self.medium + self.hard
        if total != 100:
            raise ValueError(f"easy + medium + hard must be 100, not {total}")
        return self


class BudgetSpec(BaseModel):
    """What a batch may spend before it pauses itself (`budget_reached`): a cost in the server's currency
    (`LIVEBATCH_CURRENCY`), a number of tokens (prompt and completion together), or both; null: no cap.
    Also the body of `PUT /api/v1/generation/batch/{batchId}/budget`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cost: float | None = Field(default=None, gt=0, le=1_000_000, allow_inf_nan=False, description="Cost cap")
    tokens: int | None = Field(default=None, ge=1, le=10**12, description="Token cap")


class BatchCreate(BaseModel):
    """`POST /api/v1/generation/batch`; the same shape is kept as the batch's `config`."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True)

    course_id: str = Field(min_length=1, max_length=64)
    target_count: int = Field(ge=1)
    question_type: QuestionType = "single-best-answer"
    difficulty_distribution: DifficultyDistribution
    budget: BudgetSpec | None = Field(default=None, description="Pause the batch once it has spent this")
    error_rate_guard: bool = Field(
        default=True, description="Pause the batch when more than half of its last 20 attempts failed"
    )

    @field_validator("course_id")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        # PostgreSQL refuses a NUL in text (a 500 otherwise), and no control character belongs in an id.
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError("must not contain control characters")
        return value


class GuardsRead(WireModel):
    """What the batch's guards see now (batches/guards.py): whether its budget is spent, and the outcomes of its
    last attempts since the error-rate guard was armed (the guard pauses it at more than half of the window)."""

    budget_reached: bool
    recent_attempts: int
    recent_failures: int
    error_window: int

    @classmethod
    def of(cls, batch: Batch) -> GuardsRead:
        budget = Budget.of(batch.config)
        return cls(
            budget_reached=budget.reached(
                tokens=batch.prompt_tokens + batch.completion_tokens, cost_nanos=batch.cost_nanos
            ),
            recent_attempts=len(batch.recent_outcomes),
            recent_failures=recent_failures(batch.recent_outcomes),
            error_window=ERROR_WINDOW,
        )


class CourseRead(BaseModel):
    id: str
    code: str | None
    title: str


class BatchRead(BaseModel):
    id: str
    status: BatchStatus
    total_items: int
    completed_items: int
    failed_items: int
    config: BatchCreate
    course: CourseRead
    error_message: str | None
    started_at: str | None
    created_at: str
    completed_at: str | None
    snapshot: BatchProgressSnapshot
    status_label: str = Field(serialization_alias="statusLabel", description="The status in words")
    finished: bool = Field(description="The batch is over: nothing runs until a retry")
    allowed_actions: list[Action] = Field(
        serialization_alias="allowedActions", description="The controls its status allows, as endpoint names"
    )
    pause_reason: PauseReason | None = Field(
        default=None, serialization_alias="pauseReason", description="Why it is paused; null unless paused"
    )
    guards: GuardsRead | None = Field(default=None, description="What its budget and error-rate guards see")
    active_ms: int = Field(
        serialization_alias="activeMs",
        description="Time it has run, paused time excluded, up to `runningSince` (or in all, when not running)",
    )
    running_since: str | None = Field(
        serialization_alias="runningSince", description="When its current running period began; null unless running"
    )
    run_rate: float | None = Field(
        serialization_alias="runRate",
        description="Once it is over: items per minute over the whole run (completed items over `activeMs`)",
    )

    @classmethod
    def of(cls, batch: Batch, course: Course | None, snapshot: BatchProgressSnapshot) -> BatchRead:
        finished = batch.status.is_terminal
        return cls(
            id=str(batch.id),
            status=batch.status,
            total_items=batch.total_items,
            completed_items=batch.completed_items,
            failed_items=batch.failed_items,
            config=BatchCreate.model_validate(batch.config),
            course=CourseRead(
                id=batch.course_id,
                code=course.code if course else None,
                title=course.title if course else batch.course_id,
            ),
            error_message=batch.error_message,
            started_at=iso_or_none(batch.started_at),
            created_at=iso(batch.created_at),
            completed_at=iso_or_none(batch.completed_at),
            snapshot=snapshot,
            status_label=batch.status.label,
            finished=finished,
            allowed_actions=list(allowed_actions(batch.status)),
            pause_reason=batch.pause_reason if batch.status == BatchStatus.paused else None,  # type: ignore[arg-type]
            guards=GuardsRead.of(batch),
            active_ms=batch.active_ms,
            running_since=iso_or_none(batch.running_since),
            run_rate=round(run_rate_per_minute(batch.completed_items, batch.active_ms), 2) if finished else None,
        )


def _is_none(value: object) -> bool:
    return value is None


class FeedEntry(WireModel):
    """One row of the page's item feed (the brief's `BatchItemFeedEntry`, plus the retry information).

    A field the brief marks optional (`generationId?: string`) is left out when it has no value, never
    sent as null: the same shape as an entry the page builds from the stream's events. Beyond the brief's
    statuses: `cancelled`, and `queued` (with `retried`) for an item "Retry failed" queued again that has
    not started yet, so that its row stays in the feed instead of vanishing until it runs."""

    item_id: str
    item_index: int
    status: Literal["started", "completed", "failed", "cancelled", "queued"]
    generation_id: str | None = Field(default=None, exclude_if=_is_none)
    error_message: str | None = Field(default=None, exclude_if=_is_none)
    error_kind: ErrorKind | None = Field(default=None, exclude_if=_is_none)
    retry_count: int | None = Field(default=None, exclude_if=_is_none)
    will_retry: bool | None = Field(default=None, exclude_if=_is_none)
    stopped: bool | None = Field(default=None, exclude_if=_is_none)
    retried: bool | None = Field(default=None, exclude_if=_is_none)
    duration_ms: int | None = Field(default=None, exclude_if=_is_none)
    timestamp: str

    @classmethod
    def of(cls, item: FeedRow | Item, batch_status: BatchStatus) -> FeedEntry:
        """The item's row: what its last event said, with what its batch did since (a failed batch retries
        nothing until "Retry failed", so a row that was waiting for a retry is `stopped`)."""
        status = item.status
        moment = item.finished_at or item.started_at or item.next_attempt_at
        if status == ItemStatus.in_progress:
            return cls(item_id=str(item.id), item_index=item.idx, status="started", timestamp=iso(moment))
        if status == ItemStatus.completed:
            return cls(
                item_id=str(item.id),
                item_index=item.idx,
                status="completed",
                generation_id=str(item.generation_id),
                duration_ms=item.duration_ms,
                timestamp=iso(moment),
            )
        if status == ItemStatus.cancelled:
            return cls(item_id=str(item.id), item_index=item.idx, status="cancelled", timestamp=iso(moment))
        if status == ItemStatus.pending and item.attempts == 0:  # queued again by "Retry failed"
            queued_at = iso(item.next_attempt_at)
            return cls(item_id=str(item.id), item_index=item.idx, status="queued", retried=True, timestamp=queued_at)
        # failed for good, or pending again after a failed attempt
        stopped = item.will_retry and batch_status == BatchStatus.failed
        return cls(
            item_id=str(item.id),
            item_index=item.idx,
            status="failed",
            error_message=item.last_error,
            error_kind=item.last_error_kind,  # type: ignore[arg-type]
            retry_count=item.attempts,
            will_retry=item.will_retry and not stopped,
            stopped=True if stopped else None,
            timestamp=iso(moment),
        )


class FailureGroupRead(WireModel):
    """Items failed for good that share a cause: their kind and their message with what varies taken out."""

    key: str = Field(description="Send it back in `groups` to retry this group (opaque, stable)")
    error_kind: ErrorKind
    message: str = Field(description="The message with what varies from item to item shown as …")
    example: str = Field(description="The group's most frequent message, as its items show it")
    count: int

    @classmethod
    def of(cls, group: FailureGroup) -> FailureGroupRead:
        return cls(
            key=group.key,
            error_kind=group.error_kind,  # type: ignore[arg-type]
            message=group.message,
            example=group.example,
            count=group.count,
        )


class BatchDetail(BatchRead):
    """Everything the progress page needs on load: the batch, its feed, and where its stream resumes."""

    items: list[FeedEntry]
    last_event_id: int = Field(serialization_alias="lastEventId")
    answer_keys: dict[Label, int] = Field(
        serialization_alias="answerKeys",
        description="How many of the batch's generated items each letter keys, A to E (a lopsided key lets "
        "students guess it).",
    )
    failure_groups: list[FailureGroupRead] = Field(
        default_factory=list,
        serialization_alias="failureGroups",
        description="The items failed for good, grouped by cause, the largest group first",
    )


def answer_keys(counts: dict[str, int]) -> dict[Label, int]:
    """Every letter, A to E, with its count (0 when no item is keyed so)."""
    return {label: counts.get(label, 0) for label in LABELS}


GroupKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RetryFilter(BaseModel):
    """The optional body of `POST .../retry-failed`: retry only the failed items of these kinds and (when both
    are given, and) of these groups. No body, or `{}`, retries every failed item, as before."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, populate_by_name=True)

    error_kinds: list[ErrorKind] | None = Field(default=None, min_length=1, max_length=20)
    groups: list[GroupKey] | None = Field(default=None, min_length=1, max_length=100)

    @property
    def is_empty(self) -> bool:
        return self.error_kinds is None and self.groups is None


class BatchPage(BaseModel):
    batches: list[BatchRead]
    next_cursor: str | None = Field(serialization_alias="nextCursor")


class GeneratedItemRead(WireModel):
    """A generated item, and what generating it used: the tokens and cost of all of its attempts, failed ones
    included (`cost` null when one of them had no price)."""

    generation_id: str
    item_id: str
    item_index: int
    difficulty: Difficulty
    stem: str
    options: list[Option]
    answer: str
    explanation: str
    created_at: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    currency: str = "USD"

    def to_json(self) -> str:
        return one_line(self.model_dump_json(by_alias=True))  # an unknown cost is null, never left out

    @classmethod
    def of(cls, generated: GeneratedItem, item: Item, *, currency: str) -> GeneratedItemRead:
        question = Question.model_validate(generated.content)
        return cls(
            generation_id=str(generated.id),
            item_id=str(generated.item_id),
            item_index=generated.idx,
            difficulty=question.difficulty,
            stem=question.stem,
            options=question.options,
            answer=question.answer,
            explanation=question.explanation,
            prompt_tokens=item.prompt_tokens,
            completion_tokens=item.completion_tokens,
            cost=None if item.unpriced_attempts else to_units(item.cost_nanos),
            currency=currency,
            created_at=iso(generated.created_at),
        )


class GeneratedItemPage(WireModel):
    items: list[GeneratedItemRead]
    next_cursor: int | None
