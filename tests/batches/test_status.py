"""The batch state machine's one copy (`batches/status.py`): what each status is called, whether it is over, and
which controls it allows; the services refuse the rest, and the page shows only these."""

from __future__ import annotations

import pytest

from livebatch.batches.status import Action, BatchStatus, allowed_actions, refusal

PAUSE, RESUME, CANCEL, RETRY = Action.pause, Action.resume, Action.cancel, Action.retry_failed


# status, its words, whether it is over, the controls it allows
STATUSES = [
    (BatchStatus.queued, "Queued", False, (PAUSE, CANCEL)),
    (BatchStatus.running, "Running", False, (PAUSE, CANCEL)),
    (BatchStatus.paused, "Paused", False, (RESUME, CANCEL)),
    (BatchStatus.completed, "Completed", True, ()),
    (BatchStatus.completed_with_errors, "Completed with errors", True, (RETRY,)),
    (BatchStatus.failed, "Failed", True, (RETRY,)),
    (BatchStatus.cancelled, "Cancelled", True, ()),
]


@pytest.mark.parametrize(("status", "label", "finished", "allowed"), STATUSES)
def test_each_status_has_its_words_its_end_and_its_controls(
    status: BatchStatus, label: str, finished: bool, allowed: tuple[Action, ...]
) -> None:
    assert (status.label, status.is_terminal, allowed_actions(status)) == (label, finished, allowed)


def test_the_table_names_every_status() -> None:
    assert [row[0] for row in STATUSES] == list(BatchStatus)


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        (PAUSE, BatchStatus.paused, "A paused batch cannot be paused."),
        (PAUSE, BatchStatus.completed, "A completed batch cannot be paused."),
        (RESUME, BatchStatus.queued, "A queued batch cannot be resumed; only a paused one."),
        (RESUME, BatchStatus.running, "A running batch cannot be resumed; only a paused one."),
        (CANCEL, BatchStatus.cancelled, "A cancelled batch cannot be cancelled."),
        (CANCEL, BatchStatus.failed, "A failed batch cannot be cancelled."),
        (RETRY, BatchStatus.running, "A running batch has no failed items to retry."),
        (RETRY, BatchStatus.completed, "A completed batch has no failed items to retry."),
    ],
)
def test_a_refusal_says_why(action: Action, status: BatchStatus, message: str) -> None:
    assert refusal(action, status) == message


@pytest.mark.parametrize("status", list(BatchStatus))
@pytest.mark.parametrize("action", list(Action))
def test_a_control_is_refused_exactly_when_its_status_does_not_allow_it(action: Action, status: BatchStatus) -> None:
    refused = refusal(action, status)
    if action in allowed_actions(status):
        assert refused is None
    else:
        assert refused is not None and f"A {status.value} batch" in refused
