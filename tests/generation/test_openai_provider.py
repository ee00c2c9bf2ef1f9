"""The `openai` provider against a real local chat-completions server: what it sends (the tight item
schema, a token cap, a temperature), what it keeps (the server's usage and error text), and how every way
the server can fail becomes a retryable or a fatal error, including a server that refuses `json_schema`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from livebatch.generation.openai_provider import ERROR_TEXT_CHARS, OpenAIProvider
from livebatch.generation.providers import FatalProviderError, GenerationError, ItemRequest, Usage
from tests.fakes.llm_server import FakeLLM


def request(difficulty: str = "hard") -> ItemRequest:
    return ItemRequest(
        batch_id=uuid4(),
        item_index=4,
        attempt=1,
        course_title="Cardiovascular Pathology",
        question_type="single-best-answer",
        difficulty=difficulty,
    )


@pytest.fixture
async def provider(fake_llm: FakeLLM) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(
        base_url=fake_llm.base_url,
        api_key="sk-test",
        model="test-model",
        timeout_s=0.5,
        max_tokens=900,
        temperature=0.25,
    )
    yield p
    await p.aclose()


async def test_a_good_item_comes_back_parsed_from_one_structured_output_request(
    provider: OpenAIProvider, fake_llm: FakeLLM
) -> None:
    generated = await provider.generate(request("hard"))
    question = generated.question
    assert generated.usage == Usage(prompt_tokens=10, completion_tokens=10, model="test-model")
    assert question.difficulty == "hard"
    assert [o.label for o in question.options] == ["A", "B", "C", "D", "E"]

    (sent,) = fake_llm.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == "Bearer sk-test"
    body = sent["body"]
    assert body["model"] == "test-model"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Cardiovascular Pathology" in body["messages"][1]["content"]
    assert "Difficulty: hard" in body["messages"][1]["content"]
    assert (body["max_tokens"], body["temperature"]) == (900, 0.25)
    response_format = body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    schema = response_format["json_schema"]["schema"]
    assert set(schema["required"]) == {"stem", "options", "answer", "explanation", "difficulty"}
    assert schema["additionalProperties"] is False
    # Held tight while the model writes: five options labelled A-E, bounded text, the requested difficulty.
    props = schema["properties"]
    assert (props["options"]["minItems"], props["options"]["maxItems"]) == (5, 5)
    option = props["options"]["items"]
    assert option["properties"]["label"]["enum"] == ["A", "B", "C", "D", "E"]
    assert option["additionalProperties"] is False and set(option["required"]) == {"label", "text"}
    assert props["answer"]["enum"] == ["A", "B", "C", "D", "E"]
    assert props["difficulty"]["enum"] == ["hard"]
    for text in (props["stem"], props["explanation"], option["properties"]["text"]):
        assert text["type"] == "string" and 0 < text["minLength"] < text["maxLength"] <= 1000


@pytest.mark.parametrize(
    ("behaviour", "kind", "message", "retry_after_s"),
    [
        ("429:2", "rate_limited", "Rate limited by the provider (HTTP 429)", 2.0),
        ("429", "rate_limited", "Rate limited by the provider (HTTP 429)", None),
        ("500", "provider_error", "Provider error: HTTP 500: fake 500", None),
        ("503", "provider_error", "Provider error: HTTP 503: fake 503", None),
        ("500:slot unavailable", "provider_error", "Provider error: HTTP 500: slot unavailable", None),
        ("timeout:3", "timeout", "LLM provider timeout after 0.5s", None),
        ("reset", "provider_error", "Could not reach the provider", None),
        ("reset-body", "provider_error", "Could not reach the provider", None),
        ("malformed", "validation", "Validation failed: output does not match the schema", None),
        ("schema", "validation", "Validation failed: output does not match the schema", None),
        ("refusal", "validation", "Validation failed: the model refused (I can't help with that.)", None),
        ("length", "truncated", "Truncated: the answer reached the token cap (900 tokens)", None),
    ],
)
async def test_transient_failures_are_retryable_and_cost_one_request(
    provider: OpenAIProvider,
    fake_llm: FakeLLM,
    behaviour: str,
    kind: str,
    message: str,
    retry_after_s: float | None,
) -> None:
    fake_llm.queue(behaviour)
    with pytest.raises(GenerationError) as failed:
        await provider.generate(request())
    error = failed.value
    assert not isinstance(error, FatalProviderError) and error.retryable
    assert error.kind == kind
    assert error.message.startswith(message), error.message
    assert error.retry_after_s == retry_after_s
    assert fake_llm.request_count == 1, "the SDK must not retry on its own"
    assert (await provider.generate(request())).question.stem  # and the next attempt is unaffected


@pytest.mark.parametrize(
    ("behaviour", "kind", "message"),
    [
        ("401", "auth", "The provider rejected the API key (HTTP 401): check LIVEBATCH_OPENAI_API_KEY."),
        ("403", "auth", "The provider rejected the API key (HTTP 403): check LIVEBATCH_OPENAI_API_KEY."),
        ("404", "provider_error", "The provider does not know model 'test-model' (HTTP 404)."),
    ],
)
async def test_a_rejected_key_or_unknown_model_is_fatal(
    provider: OpenAIProvider, fake_llm: FakeLLM, behaviour: str, kind: str, message: str
) -> None:
    fake_llm.queue(behaviour)
    with pytest.raises(FatalProviderError) as failed:
        await provider.generate(request())
    assert not failed.value.retryable
    assert (failed.value.kind, failed.value.message) == (kind, message)
    assert fake_llm.request_count == 1


async def test_an_answer_cut_off_by_the_token_cap_is_truncated_not_a_schema_mismatch(
    provider: OpenAIProvider, fake_llm: FakeLLM
) -> None:
    fake_llm.queue("length")
    with pytest.raises(GenerationError) as failed:
        await provider.generate(request())
    assert failed.value.kind == "truncated"
    assert failed.value.message == (
        "Truncated: the answer reached the token cap (900 tokens) before the item was complete; "
        "raise LIVEBATCH_OPENAI_MAX_TOKENS"
    )
    assert failed.value.usage == Usage(10, 10, "test-model"), "the failed attempt cost tokens too"


async def test_the_servers_error_text_is_kept_on_one_line_and_bounded(
    provider: OpenAIProvider, fake_llm: FakeLLM
) -> None:
    fake_llm.queue("500:the model crashed:\n" + "x" * 5000)
    with pytest.raises(GenerationError) as failed:
        await provider.generate(request())
    message = failed.value.message
    assert message.startswith("Provider error: HTTP 500: the model crashed: xxx")
    assert "\n" not in message
    assert len(message) == len("Provider error: HTTP 500: ") + ERROR_TEXT_CHARS
    assert message.endswith("…")


async def test_a_server_that_refuses_json_schema_is_asked_with_json_object_and_the_schema_from_then_on(
    provider: OpenAIProvider, fake_llm: FakeLLM
) -> None:
    fake_llm.json_schema = False
    question = (await provider.generate(request("easy"))).question  # the first attempt does not fail for it
    assert question.difficulty == "easy"
    refused, fallback = fake_llm.requests
    assert refused["body"]["response_format"]["type"] == "json_schema"
    assert fallback["body"]["response_format"]["type"] == "json_object"
    schema = fallback["body"]["response_format"]["schema"]
    assert schema == refused["body"]["response_format"]["json_schema"]["schema"]
    assert '"minItems": 5' in fallback["body"]["messages"][0]["content"], "the schema is in the prompt too"

    await provider.generate(request("hard"))  # remembered: one request per attempt again
    assert fake_llm.request_count == 3
    assert fake_llm.requests[2]["body"]["response_format"]["type"] == "json_object"
    assert fake_llm.injected["refuse-json-schema"] == 1


async def test_other_server_errors_do_not_switch_away_from_json_schema(
    provider: OpenAIProvider, fake_llm: FakeLLM
) -> None:
    # A server that takes json_schema but not this schema says so, and must be shown, not worked around.
    fake_llm.queue("500", "500:Invalid schema for response_format 'exam_item': 'maxLength' is not permitted")
    for _ in range(2):
        with pytest.raises(GenerationError):
            await provider.generate(request())
    await provider.generate(request())
    assert [r["body"]["response_format"]["type"] for r in fake_llm.requests] == ["json_schema"] * 3


@pytest.mark.parametrize(
    ("behaviour", "usage"),
    [
        # The server answered: what the answer used is known, also when the answer was no good.
        ("refusal", Usage(10, 10, "test-model")),
        # Content that is not the item: the provider parses the answer itself, so its usage is known too.
        ("schema", Usage(10, 10, "test-model")),
        ("malformed", Usage(10, 10, "test-model")),
        # No answer, nothing used that we know of.
        ("429", None),
        ("503", None),
        ("reset", None),
    ],
)
async def test_a_failed_attempt_carries_the_usage_of_the_answer_when_there_was_one(
    provider: OpenAIProvider, fake_llm: FakeLLM, behaviour: str, usage: Usage | None
) -> None:
    fake_llm.queue(behaviour)
    with pytest.raises(GenerationError) as failed:
        await provider.generate(request())
    assert failed.value.usage == usage
