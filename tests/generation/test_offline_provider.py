"""The `offline` provider: the same request always gives the same outcome; its latency and failure
rate are the configured ones; what it produces passes validation, except the failures it means."""

from __future__ import annotations

import statistics
from uuid import UUID

import pytest

from livebatch.batches.questions import Question, rule_broken
from livebatch.generation.offline import OfflineProvider
from livebatch.generation.providers import GenerationError, ItemRequest

BATCH = UUID("6f1c1d1e-8a55-4d47-9d2e-0c7d1a0b9e11")
DIFFICULTIES = ("easy", "medium", "hard")


def request(index: int, attempt: int = 1, *, batch: UUID = BATCH) -> ItemRequest:
    return ItemRequest(
        batch_id=batch,
        item_index=index,
        attempt=attempt,
        course_title="Cardiovascular Pathology",
        question_type="single-best-answer",
        difficulty=DIFFICULTIES[index % 3],
    )


async def outcome(provider: OfflineProvider, req: ItemRequest) -> Question | str:
    """The question, or the failure the pipeline would record (an error, or the rule it breaks)."""
    try:
        question = (await provider.generate(req)).question
    except GenerationError as exc:
        return f"{exc.kind}: {exc.message}"
    broken = rule_broken(question, difficulty=req.difficulty)
    return question if broken is None else f"validation: {broken}"


async def test_the_same_request_gives_the_same_outcome() -> None:
    provider = OfflineProvider(latency_ms=0, failure_rate=0.3)
    first = [await outcome(provider, request(i)) for i in range(60)]
    again = [await outcome(OfflineProvider(latency_ms=0, failure_rate=0.3), request(i)) for i in range(60)]
    assert first == again
    elsewhere = [await outcome(provider, request(i, batch=UUID(int=1))) for i in range(60)]
    assert first != elsewhere
    stems = {q.stem for q in first if isinstance(q, Question)}
    assert len(stems) > 20, "items of a batch differ from one another"


async def test_every_item_it_means_to_produce_passes_validation() -> None:
    provider = OfflineProvider(latency_ms=0, failure_rate=0.0)
    results = [await outcome(provider, request(i)) for i in range(600)]
    assert all(isinstance(r, Question) for r in results), [r for r in results if not isinstance(r, Question)][:3]
    assert {r.difficulty for r in results if isinstance(r, Question)} == set(DIFFICULTIES)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 1.0])
async def test_the_failure_rate_is_the_configured_one(rate: float) -> None:
    provider = OfflineProvider(latency_ms=0, failure_rate=rate)
    results = [await outcome(provider, request(i, attempt)) for i in range(1000) for attempt in (1, 2)]
    failed = [r for r in results if isinstance(r, str)]
    assert len(failed) / len(results) == pytest.approx(rate, abs=0.02)
    if rate == 1.0:
        kinds = {f.split(":")[0] for f in failed}
        assert kinds == {"timeout", "rate_limited", "provider_error", "validation"}
        assert "validation: options B and D are identical" in failed


async def test_latency_is_drawn_around_the_configured_mean() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    provider = OfflineProvider(latency_ms=200, failure_rate=0.0, sleep=sleep)
    for i in range(400):
        await provider.generate(request(i))
    assert len(slept) == 400
    assert all(0.1 <= s <= 0.3 for s in slept)
    assert statistics.mean(slept) == pytest.approx(0.2, rel=0.05)
    assert statistics.pstdev(slept) > 0.03, "latency varies like a real provider's"


async def test_each_answer_reports_plausible_usage_of_the_offline_model_and_a_lost_request_none() -> None:
    provider = OfflineProvider(latency_ms=0, failure_rate=0.0)
    generated = [await provider.generate(request(i)) for i in range(50)]
    usages = [g.usage for g in generated]
    assert all(u is not None and u.model == "offline" for u in usages)
    prompts = [u.prompt_tokens for u in usages if u is not None]
    completions = [u.completion_tokens for u in usages if u is not None]
    assert all(190 <= p <= 210 for p in prompts)
    assert all(100 <= c <= 400 for c in completions), completions
    assert len(set(prompts)) > 5, "the figures vary like a real provider's"
    again = [(await provider.generate(request(i))).usage for i in range(50)]
    assert again == usages, "the same attempt reports the same usage"

    failing = OfflineProvider(latency_ms=0, failure_rate=1.0)
    for i in range(40):
        try:
            answered = await failing.generate(request(i))
        except GenerationError as exc:
            assert exc.usage is None  # a timeout, a 429, a 503: no answer
        else:
            assert answered.usage is not None  # it answered, with an item that breaks a rule
