"""Generation providers behind one small interface, and the errors they may raise.

A `GenerationError` is one failed attempt. `retryable` ones send the item back to pending (while
attempts remain); a `FatalProviderError` (a rejected API key) fails the whole batch at once instead of
after a thousand doomed retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from livebatch.batches.events import ErrorKind
from livebatch.batches.questions import Question


@dataclass(frozen=True, slots=True)
class ItemRequest:
    batch_id: UUID
    item_index: int
    attempt: int
    course_title: str
    question_type: str
    difficulty: str
    requeues: int = 0  # times "Retry failed" queued the item again; `attempt` starts over at each


class GenerationError(Exception):
    retryable = True

    def __init__(self, kind: ErrorKind, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message
        self.retry_after_s = retry_after_s


class FatalProviderError(GenerationError):
    retryable = False


class Provider(Protocol):
    name: str

    async def generate(self, request: ItemRequest) -> Question: ...

    async def aclose(self) -> None: ...
