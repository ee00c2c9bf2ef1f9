from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from livebatch.batches.status import BatchStatus, ItemStatus
from livebatch.clock import utcnow
from livebatch.db import Base


def _status_column(enum: type[BatchStatus] | type[ItemStatus], length: int) -> Enum:
    """The enum in Python, its value as plain text in the table (no database enum type, no CHECK)."""
    return Enum(enum, native_enum=False, create_constraint=False, length=length, values_callable=_values)


def _values(enum: type[BatchStatus] | type[ItemStatus]) -> list[str]:
    return [member.value for member in enum]


class Batch(Base):
    """A batch job and its counters.

    The counters, `last_seq` and the completion window change together, in the transaction that appends
    the event describing the change, so a snapshot is read from this one row (no scan of the items).
    Time spent paused is kept out of throughput by an "active clock": `active_ms` accumulated before
    `running_since`, plus the time since it while running. The usage counters (tokens, cost, attempts of
    unknown cost) and the error-rate guard's window change in the transaction that records an attempt.
    """

    __tablename__ = "batch_jobs"
    __table_args__ = (Index("ix_batch_jobs_owner_created", "owner_id", "created_at"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    owner_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id"))
    config: Mapped[dict[str, Any]]
    status: Mapped[BatchStatus] = mapped_column(_status_column(BatchStatus, 24), index=True)
    concurrency: Mapped[int]
    # Expected time of one item (the setting when the batch was created): its ETA before any completion.
    item_prior_ms: Mapped[int]
    total_items: Mapped[int]
    completed_items: Mapped[int] = mapped_column(default=0)
    failed_items: Mapped[int] = mapped_column(default=0)
    in_progress_items: Mapped[int] = mapped_column(default=0)
    cancelled_items: Mapped[int] = mapped_column(default=0)
    # Pending items whose last attempt failed and that will be tried again: a subset of the pending ones.
    retrying_items: Mapped[int] = mapped_column(default=0)
    last_seq: Mapped[int] = mapped_column(default=0)
    active_ms: Mapped[int] = mapped_column(default=0)
    running_since: Mapped[datetime | None]
    # Active-clock times (ms) of the last completions, oldest first: at most WINDOW + 1 entries.
    completion_window: Mapped[list[int]] = mapped_column(default=list)
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    # Usage of every recorded attempt (accounting.py): cost in nano-units of `currency`, of the priced ones.
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    unpriced_attempts: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    # Why it is paused (guards.py): user, budget_reached or error_rate; None while not paused.
    pause_reason: Mapped[str | None] = mapped_column(String(16))
    # Outcomes of the last attempts since the error-rate guard was armed, oldest first ("." ok, "x" failed).
    recent_outcomes: Mapped[str] = mapped_column(String(32), default="")
    # Events up to this seq were pruned from the log (`livebatch prune`): a resume from before it is reset.
    pruned_through: Mapped[int] = mapped_column(default=0)

    @property
    def pending_items(self) -> int:
        return (
            self.total_items - self.completed_items - self.failed_items - self.in_progress_items - self.cancelled_items
        )


class Item(Base):
    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "idx", name="uq_batch_items_batch_idx"),
        # The next item to dispatch: pending, not dispatched, soonest due.
        Index("ix_batch_items_dispatch", "batch_id", "status", "dispatched_at", "next_attempt_at", "idx"),
        # The sweeper's questions: expired leases, and dispatches that never arrived.
        Index("ix_batch_items_lease", "status", "lease_expires_at"),
        Index("ix_batch_items_dispatched", "status", "dispatched_at"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batch_jobs.id", ondelete="CASCADE"))
    idx: Mapped[int]
    difficulty: Mapped[str] = mapped_column(String(8))
    status: Mapped[ItemStatus] = mapped_column(_status_column(ItemStatus, 16), default=ItemStatus.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    dispatched_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    # Which process holds the lease (generation/owner.py): an embedded server restarted after a crash
    # releases the claims of its own previous life at once.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
    generation_id: Mapped[UUID | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_kind: Mapped[str | None] = mapped_column(String(16))
    will_retry: Mapped[bool] = mapped_column(default=False)
    # Usage of its attempts, failed ones included (accounting.py); `usage_attempt` is the last attempt whose
    # usage was added, so that a late or repeated recording of one attempt never counts it twice.
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    unpriced_attempts: Mapped[int] = mapped_column(default=0)
    usage_attempt: Mapped[int] = mapped_column(default=0)
    # Times "Retry failed" queued the item again (its attempts start over): its next attempts draw afresh.
    requeues: Mapped[int] = mapped_column(default=0)


class GeneratedItem(Base):
    """A generated exam item; the unique `item_id` makes a second recording of one item impossible.

    `answer` is the key letter of `content`, kept beside it so that a batch's answer keys (asked with every
    read of the batch) are counted from an index, not by reading every item's content."""

    __tablename__ = "generated_items"
    __table_args__ = (
        Index("ix_generated_items_batch_idx", "batch_id", "idx"),
        Index("ix_generated_items_batch_answer", "batch_id", "answer"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    item_id: Mapped[UUID] = mapped_column(ForeignKey("batch_items.id", ondelete="CASCADE"), unique=True)
    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batch_jobs.id", ondelete="CASCADE"))
    idx: Mapped[int]
    content: Mapped[dict[str, Any]]
    answer: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
