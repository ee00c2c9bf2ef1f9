"""The statuses of batches and items, their named sets, and what a faculty member may do in each.

    batch:  queued ─▶ running ⇄ paused ─▶ completed | completed_with_errors | failed | cancelled
            (completed_with_errors | failed) ─retry-failed─▶ running
    item:   pending ─claim─▶ in_progress ─▶ completed
                                         ─▶ pending  (failed attempt, retries left: `item.failed`, willRetry)
                                         ─▶ failed   (no attempts left, or the provider is unusable)
            pending | in_progress ─cancel─▶ cancelled

This is the one copy of the rules: the services check `allowed_actions` before they act, the batch API
sends the same list as `allowedActions`, and the page shows a control only when the list holds it.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    queued = "queued"
    running = "running"
    paused = "paused"
    completed = "completed"
    completed_with_errors = "completed_with_errors"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def label(self) -> str:
        return LABELS[self]


class ItemStatus(StrEnum):
    pending = "pending"
    in_progress = "in_progress"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class Action(StrEnum):
    """A control of the progress page, named as its endpoint (`POST /batch/{id}/retry-failed`)."""

    pause = "pause"
    resume = "resume"
    cancel = "cancel"
    retry_failed = "retry-failed"


# The batch is over: nothing runs until "Retry failed" (from the two that allow it).
TERMINAL = frozenset(
    {BatchStatus.completed, BatchStatus.completed_with_errors, BatchStatus.failed, BatchStatus.cancelled}
)
# Counts toward the per-user cap on batches: it holds, or may still take, a worker's time.
ACTIVE = (BatchStatus.queued, BatchStatus.running, BatchStatus.paused)
# Its items are dispatched and claimed (a paused batch keeps its place but starts nothing).
WORKING = (BatchStatus.queued, BatchStatus.running)
# Items that a cancel stops: waiting for a worker, or with one.
OPEN_ITEMS = (ItemStatus.pending, ItemStatus.in_progress)

_ALLOWED: dict[BatchStatus, tuple[Action, ...]] = {
    BatchStatus.queued: (Action.pause, Action.cancel),
    BatchStatus.running: (Action.pause, Action.cancel),
    BatchStatus.paused: (Action.resume, Action.cancel),
    BatchStatus.completed: (),
    BatchStatus.completed_with_errors: (Action.retry_failed,),
    BatchStatus.failed: (Action.retry_failed,),
    BatchStatus.cancelled: (),
}
_REFUSALS = {
    Action.pause: "A {status} batch cannot be paused.",
    Action.resume: "A {status} batch cannot be resumed; only a paused one.",
    Action.cancel: "A {status} batch cannot be cancelled.",
    Action.retry_failed: "A {status} batch has no failed items to retry.",
}
LABELS = {
    BatchStatus.queued: "Queued",
    BatchStatus.running: "Running",
    BatchStatus.paused: "Paused",
    BatchStatus.completed: "Completed",
    BatchStatus.completed_with_errors: "Completed with errors",
    BatchStatus.failed: "Failed",
    BatchStatus.cancelled: "Cancelled",
}


def allowed_actions(status: BatchStatus) -> tuple[Action, ...]:
    return _ALLOWED[status]


def refusal(action: Action, status: BatchStatus) -> str | None:
    """Why `action` cannot be taken on a batch in `status`; None when it can."""
    if action in _ALLOWED[status]:
        return None
    return _REFUSALS[action].format(status=status.value)
