"""The figures of the README's "Run it with a local model": N requests through livebatch's openai provider to
a running OpenAI-compatible server, C at a time, each item put through both gates.

    .venv/bin/python scripts/llm/measure.py http://127.0.0.1:PORT/v1 --requests 20 --concurrency 4

Prints one JSON line per request as it ends, then a summary line: seconds per request, completion tokens
per second per request, and how many requests gave an item that passed the structural gate and then the
semantic one (the others: which kind of failure). One attempt per item: no retries, unlike a batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any
from uuid import uuid4

from livebatch.batches.questions import semantic_rule_broken, structural_rule_broken
from livebatch.generation.openai_provider import OpenAIProvider
from livebatch.generation.providers import GenerationError, ItemRequest

DIFFICULTIES = ("easy", "medium", "hard")


async def measure(base_url: str, requests: int, concurrency: int, timeout_s: float) -> dict[str, Any]:
    provider = OpenAIProvider(base_url=base_url, api_key="not-needed", model="local", timeout_s=timeout_s)
    slots = asyncio.Semaphore(concurrency)
    batch_id = uuid4()
    results: list[dict[str, Any]] = []

    async def one(index: int) -> None:
        request = ItemRequest(
            batch_id=batch_id,
            item_index=index,
            attempt=1,
            course_title="Cardiovascular Pathology",
            question_type="single-best-answer",
            difficulty=DIFFICULTIES[index % 3],
        )
        async with slots:
            started = time.perf_counter()
            result: dict[str, Any] = {"index": index}
            try:
                generated = await provider.generate(request)
                question, usage = generated.question, generated.usage
                broken = structural_rule_broken(question, difficulty=request.difficulty)
                result["outcome"] = "structural" if broken else "semantic"
                broken = broken or semantic_rule_broken(question)
                result["outcome"] = result["outcome"] if broken else "passed"
                result["reason"] = broken
                result["item"] = question.model_dump()
            except GenerationError as exc:
                usage = exc.usage
                result["outcome"], result["reason"] = exc.kind, exc.message
            result["seconds"] = round(time.perf_counter() - started, 2)
            result["completion_tokens"] = None if usage is None else usage.completion_tokens
        results.append(result)
        print(json.dumps(result), flush=True)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one(i) for i in range(requests)))
    finally:
        await provider.aclose()
    answered = [r for r in results if r["completion_tokens"]]
    outcomes = Counter(r["outcome"] for r in results)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "wall_s": round(time.perf_counter() - started, 1),
        "seconds_per_request": round(sum(r["seconds"] for r in results) / requests, 1),
        "completion_tokens_per_s_per_request": round(
            sum(r["completion_tokens"] for r in answered) / sum(r["seconds"] for r in answered), 1
        )
        if answered
        else None,
        # Passed the structural gate: reached the semantic one (failed there) or passed both.
        "passed_structural": outcomes["semantic"] + outcomes["passed"],
        "passed_both": outcomes["passed"],
        "outcomes": dict(outcomes),
        "semantic_reasons": dict(Counter(_reason(r["reason"]) for r in results if r["outcome"] == "semantic")),
    }


def _reason(reason: str) -> str:
    for words in ("not a question", "placeholder", "does not mention"):
        if words in reason:
            return words
    return reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    args = parser.parse_args()
    summary = asyncio.run(measure(args.base_url, args.requests, args.concurrency, args.timeout))
    print(json.dumps({"summary": summary}))


if __name__ == "__main__":
    main()
