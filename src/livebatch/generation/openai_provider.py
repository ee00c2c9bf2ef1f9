"""Any OpenAI-compatible chat-completions endpoint, through the official SDK, with structured output.

The SDK's own retries are off (`max_retries=0`): livebatch retries with backoff itself, and each of our
attempts must be one request, not up to three with minutes of sleep hidden inside (docs/stack-notes.md).
What a request used is read from the answer's `usage` and priced as the configured model.
"""

from __future__ import annotations

import email.utils
import time

import openai
import pydantic
from openai.types.chat import ChatCompletion

from livebatch.batches.questions import Question
from livebatch.generation.providers import FatalProviderError, Generated, GenerationError, ItemRequest, Usage

SYSTEM_PROMPT = (
    "You write single-best-answer exam items for medical school courses. Each item has a clinical stem, "
    "exactly five plausible, distinct options labelled A to E, exactly one correct answer, and a short "
    "explanation of why it is correct. Reply with JSON that matches the given schema and nothing else."
)


def user_prompt(request: ItemRequest) -> str:
    return (
        f"Course: {request.course_title}\n"
        f"Difficulty: {request.difficulty}\n"
        f"Write item {request.item_index + 1} of the batch as a {request.question_type} question. "
        f'Set "difficulty" to "{request.difficulty}".'
    )


def retry_after_s(headers: object) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date), when the server sent one."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    if (ms := get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, base_url: str | None, api_key: str, model: str, timeout_s: float) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    async def generate(self, request: ItemRequest) -> Generated:
        try:
            completion = await self.client.chat.completions.parse(
                model=self.model,
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": user_prompt(request)},
                ],
                response_format=Question,
                timeout=self.timeout_s,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise FatalProviderError(
                "auth",
                f"The provider rejected the API key (HTTP {exc.status_code}): check LIVEBATCH_OPENAI_API_KEY.",
            ) from exc
        except openai.NotFoundError as exc:
            raise FatalProviderError(
                "provider_error", f"The provider does not know model {self.model!r} (HTTP 404)."
            ) from exc
        except openai.RateLimitError as exc:
            raise GenerationError(
                "rate_limited",
                "Rate limited by the provider (HTTP 429)",
                retry_after_s=retry_after_s(exc.response.headers),
            ) from exc
        except openai.APITimeoutError as exc:
            raise GenerationError("timeout", f"LLM provider timeout after {self.timeout_s:g}s") from exc
        except openai.APIConnectionError as exc:
            raise GenerationError("provider_error", f"Could not reach the provider: {exc}") from exc
        except openai.APIStatusError as exc:
            raise GenerationError(
                "provider_error",
                f"Provider error: HTTP {exc.status_code}",
                retry_after_s=retry_after_s(exc.response.headers),
            ) from exc
        except (
            pydantic.ValidationError,
            openai.LengthFinishReasonError,
            openai.APIResponseValidationError,
        ) as exc:
            raise GenerationError(
                "validation",
                f"Validation failed: output does not match the schema ({_first_line(exc)})",
                usage=self._usage(getattr(exc, "completion", None)),
            ) from exc
        except openai.ContentFilterFinishReasonError as exc:
            raise GenerationError(
                "validation",
                "Validation failed: the provider's content filter stopped the output",
                usage=self._usage(exc.completion),
            ) from exc
        usage = self._usage(completion)
        message = completion.choices[0].message if completion.choices else None
        if message is None or message.refusal:
            reason = message.refusal if message is not None else "no choices"
            raise GenerationError("validation", f"Validation failed: the model refused ({reason})", usage=usage)
        if message.parsed is None:
            raise GenerationError("validation", "Validation failed: the model returned no item", usage=usage)
        return Generated(message.parsed, usage)

    def _usage(self, completion: ChatCompletion | None) -> Usage | None:
        """The answer's token counts, priced as the model we asked for (the name a price table knows)."""
        counted = None if completion is None else completion.usage
        if counted is None:
            return None
        return Usage(counted.prompt_tokens, counted.completion_tokens, self.model)

    async def aclose(self) -> None:
        await self.client.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
