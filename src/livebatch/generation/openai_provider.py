"""Any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp's server), through the
official SDK, with the item's JSON schema enforced by the server while the model writes.

The SDK's own retries are off (`max_retries=0`): livebatch retries with backoff itself, and each of our
attempts must be one request, not up to three with minutes of sleep hidden inside (docs/stack-notes.md).
The one exception is a server that refuses `response_format: json_schema` (llama-cpp-python's server
answers it with HTTP 500): the provider notices from the error text, asks again at once with
`json_object` plus the schema, and keeps to that from then on. What a request used is read from the answer's
`usage` and priced as the configured model.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from typing import Any, Literal

import openai
import pydantic
from openai.types.chat import ChatCompletion

from livebatch.batches.questions import Question, item_schema
from livebatch.generation.providers import FatalProviderError, Generated, GenerationError, ItemRequest, Usage

logger = logging.getLogger("livebatch.provider")

SYSTEM_PROMPT = (
    "You write single-best-answer exam items for medical school courses. Each item has a clinical stem that "
    "ends with a question, exactly five plausible, distinct options labelled A to E (each a short answer, "
    "never just a letter or a number), exactly one correct answer, and a short explanation that names the "
    "correct option and says why it is correct. Reply with JSON that matches the given schema and nothing else."
)
ERROR_TEXT_CHARS = 300  # of a server's error message kept in `errorMessage`

ResponseMode = Literal["json_schema", "json_object"]


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


def server_text(exc: openai.APIStatusError) -> str:
    """What the server said about its error, on one line and bounded: the `message` of an OpenAI-style
    error body, else the `detail` FastAPI servers send, else the body as it came."""
    body: Any = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            body = error.get("message") or error.get("detail") or json.dumps(error)
        else:
            body = error
    text = " ".join(str(body if body is not None else "").split())
    return text if len(text) <= ERROR_TEXT_CHARS else text[: ERROR_TEXT_CHARS - 1] + "…"


def refuses_json_schema(exc: openai.APIStatusError) -> bool:
    """A server that does not take `response_format: json_schema` names the field or its allowed types:
    llama-cpp-python says "Input should be 'text' or 'json_object'" (HTTP 500), others 400 or 422."""
    if exc.status_code not in (400, 422, 500, 501):
        return False
    text = server_text(exc).lower()
    if "invalid schema" in text:
        return False  # the server takes `json_schema` but not this schema: that must show, not be worked around
    return any(word in text for word in ("json_schema", "json_object", "response_format"))


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str,
        model: str,
        timeout_s: float,
        max_tokens: int = 1024,
        temperature: float = 0.3,
    ) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.mode: ResponseMode = "json_schema"  # until the server refuses it
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    async def generate(self, request: ItemRequest) -> Generated:
        started = time.perf_counter()
        mode = self.mode
        try:
            try:
                completion = await self._create(request, mode)
            except openai.APIStatusError as exc:
                if mode != "json_schema" or not refuses_json_schema(exc):
                    raise
                logger.warning(
                    "the provider refuses response_format json_schema (%s); using json_object with the schema "
                    "from now on",
                    server_text(exc),
                )
                self.mode = mode = "json_object"
                completion = await self._create(request, mode)
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
            said = server_text(exc)
            raise GenerationError(
                "provider_error",
                f"Provider error: HTTP {exc.status_code}" + (f": {said}" if said else ""),
                retry_after_s=retry_after_s(exc.response.headers),
            ) from exc
        except openai.APIResponseValidationError as exc:
            raise GenerationError(
                "validation", f"Validation failed: the answer is not a chat completion ({_first_line(exc)})"
            ) from exc
        usage, seconds = self._usage(completion), time.perf_counter() - started
        logger.info(
            "item %d attempt %d: %s prompt + %s completion tokens in %.1fs",
            request.item_index,
            request.attempt,
            "?" if usage is None else usage.prompt_tokens,
            "?" if usage is None else usage.completion_tokens,
            seconds,
            extra={
                "seconds": round(seconds, 3),
                "batch_id": str(request.batch_id),
                "item_index": request.item_index,
                "attempt": request.attempt,
                "prompt_tokens": None if usage is None else usage.prompt_tokens,
                "completion_tokens": None if usage is None else usage.completion_tokens,
                "finish_reason": completion.choices[0].finish_reason if completion.choices else None,
                "response_format": mode,
            },
        )
        return Generated(self._question(completion, usage), usage)

    async def _create(self, request: ItemRequest, mode: ResponseMode) -> ChatCompletion:
        schema = item_schema(request.difficulty)
        system = SYSTEM_PROMPT
        response_format: Any
        if mode == "json_schema":
            response_format = {
                "type": "json_schema",
                "json_schema": {"name": "exam_item", "strict": True, "schema": schema},
            }
        else:
            # `schema` beside `json_object` is how llama.cpp's and llama-cpp-python's servers take a schema in
            # JSON mode; a server that ignores it still has the schema in the prompt.
            response_format = {"type": "json_object", "schema": schema}
            system = f"{SYSTEM_PROMPT}\nThe JSON schema:\n{json.dumps(schema)}"
        return await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user_prompt(request)}],
            response_format=response_format,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            timeout=self.timeout_s,
        )

    def _question(self, completion: ChatCompletion, usage: Usage | None) -> Question:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else None
        if choice is None or message is None:
            raise GenerationError("validation", "Validation failed: the model returned no item", usage=usage)
        if message.refusal:
            raise GenerationError(
                "validation", f"Validation failed: the model refused ({message.refusal})", usage=usage
            )
        if choice.finish_reason == "length":
            # Cut off by the token cap, not a schema mismatch: the item was unfinished, not wrong.
            raise GenerationError(
                "truncated",
                f"Truncated: the answer reached the token cap ({self.max_tokens} tokens) before the item was "
                "complete; raise LIVEBATCH_OPENAI_MAX_TOKENS",
                usage=usage,
            )
        if choice.finish_reason == "content_filter":
            raise GenerationError(
                "validation", "Validation failed: the provider's content filter stopped the output", usage=usage
            )
        if not message.content:
            raise GenerationError("validation", "Validation failed: the model returned no item", usage=usage)
        try:
            question = Question.model_validate_json(message.content)
        except pydantic.ValidationError as exc:
            raise GenerationError(
                "validation", f"Validation failed: output does not match the schema ({_first_line(exc)})", usage=usage
            ) from exc
        return question

    def _usage(self, completion: ChatCompletion) -> Usage | None:
        """What the request used, priced as the model asked for (a server may name its own differently)."""
        counted = completion.usage
        if counted is None:
            return None
        return Usage(counted.prompt_tokens, counted.completion_tokens, self.model)

    async def aclose(self) -> None:
        await self.client.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
