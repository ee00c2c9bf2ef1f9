"""Generation providers behind one small interface, and the errors they may raise.

A `GenerationError` is one failed attempt. `retryable` ones send the item back to pending (while
attempts remain); a `FatalProviderError` (a rejected API key) fails the whole batch at once instead of
after a thousand doomed retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from livebatch.batches.events import ErrorKind
from livebatch.generation.items import Question

if TYPE_CHECKING:
    from livebatch.config import Settings


@dataclass(frozen=True, slots=True)
class ItemRequest:
    batch_id: UUID
    item_index: int
    attempt: int
    course_title: str
    question_type: str
    difficulty: str


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


def create_provider(settings: Settings) -> Provider:
    if settings.provider == "openai":
        from livebatch.generation.openai_provider import OpenAIProvider

        return OpenAIProvider(
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key.get_secret_value(),
            model=settings.openai_model,
            timeout_s=settings.openai_timeout_s,
        )
    from livebatch.generation.offline import OfflineProvider

    return OfflineProvider(latency_ms=settings.offline_latency_ms, failure_rate=settings.offline_failure_rate)
