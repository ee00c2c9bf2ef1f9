"""Generation providers behind one small interface, and the errors they may raise.

A provider returns the question with what the request used (`Generated`: the question and its `Usage`, or
None when the server reported none). A `GenerationError` is one failed attempt, with the usage of the
request when the server answered (a reply that broke the schema used tokens too). `retryable` ones send
the item back to pending (while attempts remain); a `FatalProviderError` (a rejected API key) fails the
whole batch at once instead of after a thousand doomed retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from livebatch.batches.accounting import Usage
from livebatch.batches.events import ErrorKind
from livebatch.batches.questions import Question

__all__ = ["FatalProviderError", "Generated", "GenerationError", "ItemRequest", "Provider", "Usage"]


@dataclass(frozen=True, slots=True)
class ItemRequest:
    batch_id: UUID
    item_index: int
    attempt: int
    course_title: str
    question_type: str
    difficulty: str
    requeues: int = 0  # times "Retry failed" queued the item again; `attempt` starts over at each


@dataclass(frozen=True, slots=True)
class Generated:
    """What a provider returns: the question, and the tokens its request used (None: not reported)."""

    question: Question
    usage: Usage | None = None


class GenerationError(Exception):
    retryable = True

    def __init__(
        self, kind: ErrorKind, message: str, *, retry_after_s: float | None = None, usage: Usage | None = None
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.usage = usage  # what the failed request used, when the server answered at all


class FatalProviderError(GenerationError):
    retryable = False


class Provider(Protocol):
    name: str

    async def generate(self, request: ItemRequest) -> Generated: ...

    async def aclose(self) -> None: ...
