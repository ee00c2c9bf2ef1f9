"""`livebatch serve`, unchanged, with the openai provider against llama.cpp's server and a real model, a batch
watched through the SSE stream. What is asserted holds for any model, good or bad: the batch ends, each
item either completed and passes every rule or failed with a clear kind, the stream and the event log and
the counts agree, and the usage the server reported was recorded for every attempt it answered.

The figures of the run (load time, seconds per item, tokens per second, what failed at which gate) are
written to `artifacts/llm-figures.json`, which the README's "Run it with a local model" section reports."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livebatch.batches.questions import Question, rule_broken
from tests.checks import assert_consistent, event_log
from tests.conftest import Backend
from tests.llm.conftest import LlamaServer
from tests.stream.servers import Served, serve
from tests.stream.support import create_batch, read_stream

# A CPU server shared with other work: 5 items, 3 attempts each, up to LIVEBATCH_GENERATION_TIMEOUT_S (150 s)
# each, four at a time, bounds a batch at about 12 minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ITEMS = 5
ARTIFACTS = Path(__file__).parents[2] / "artifacts"
# What an attempt may fail with against a healthy local server: never rate_limited, auth or internal.
KINDS = {"validation", "truncated", "timeout", "provider_error"}
# The wording of each gate's reasons, to count what failed where (tests/generation/test_items.py pins them).
SEMANTIC = ("the stem is not a question", "is a placeholder", "the explanation does not mention")
ANSWERED = {"validation", "truncated"}  # kinds of attempts that got an answer from the server


@pytest.fixture(scope="module")
def served(backend: Backend, tmp_path_factory: pytest.TempPathFactory, llama_server: LlamaServer) -> Iterator[Served]:
    """As `make demo-local-llm` runs it: timeouts a CPU server can meet, four items at once (its slots)."""
    with serve(
        backend,
        tmp_path_factory.mktemp("served"),
        provider="openai",
        openai_base_url=llama_server.base_url,
        openai_model="gemma-3-270m",
        openai_timeout_s=120,
        generation_timeout_s=150,
        batch_concurrency=4,
        max_attempts=3,
        lease_s=30,
        dispatch_timeout_s=60,
        log_format="json",
    ) as server:
        yield server


def provider_log(served: Served) -> list[dict[str, Any]]:
    """The provider's line for each request the server answered (JSON logs)."""
    lines = served.process.log_path.read_text(errors="replace").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in entries if e.get("logger") == "livebatch.provider" and "completion_tokens" in e]


def gate(failure: dict[str, Any]) -> str:
    kind, message = str(failure["errorKind"]), str(failure["errorMessage"])
    if kind != "validation":
        return kind
    return "semantic" if any(s in message for s in SEMANTIC) else "structural"


async def test_a_batch_runs_end_to_end_against_a_real_model(served: Served, llama_server: LlamaServer) -> None:
    predicted_before = llama_server.metric("llamacpp:tokens_predicted_total")
    async with served.http() as http:
        batch = await create_batch(http, ITEMS)
        started = time.monotonic()
        received = await read_stream(http, batch["id"], query_id=0, timeout=1100)
        wall_s = time.monotonic() - started
        detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
        generated = (await http.get(f"/api/v1/generation/batch/{batch['id']}/items")).json()["items"]

    # The batch ended, and what the stream delivered is the log, which agrees with the counts.
    assert received.complete, "the stream ended without batch.complete"
    async with served.database() as db:
        log = await event_log(db, batch["id"])
        final = await assert_consistent(db, batch["id"])
    assert received.logged == log
    complete = received.named("batch.complete")[0]
    assert complete["completedItems"] + complete["failedItems"] == ITEMS
    assert (final.completed_items, final.failed_items) == (complete["completedItems"], complete["failedItems"])
    assert (detail["snapshot"]["completedItems"], detail["snapshot"]["failedItems"]) == (
        complete["completedItems"],
        complete["failedItems"],
    )
    assert complete["status"] in {"completed", "completed_with_errors", "failed"}

    # Each completed item is one the model wrote and every rule accepts; each failure says what went wrong.
    assert len(generated) == complete["completedItems"]
    for item in generated:
        question = Question.model_validate(
            {k: item[k] for k in ("stem", "options", "answer", "explanation", "difficulty")}
        )
        assert rule_broken(question, difficulty=item["difficulty"]) is None, item
    failures = received.named("item.failed")
    for failure in failures:
        assert failure["errorKind"] in KINDS, failure
        assert failure["errorMessage"].strip(), failure
        if failure["errorKind"] == "validation":
            assert failure["errorMessage"].startswith("Validation failed: "), failure
        if failure["errorKind"] == "truncated":
            assert failure["errorMessage"].startswith("Truncated: the answer reached the token cap"), failure
    assert sum(not f["willRetry"] for f in failures) == complete["failedItems"]
    assert detail["answerKeys"] == {k: sum(i["answer"] == k for i in generated) for k in "ABCDE"}

    # Usage: every answered attempt recorded the tokens the server reported, and they are tokens it wrote.
    usage = provider_log(served)
    answered = complete["completedItems"] + sum(f["errorKind"] in ANSWERED for f in failures)
    assert len(usage) == answered
    assert all(u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 for u in usage), usage
    written = llama_server.metric("llamacpp:tokens_predicted_total") - predicted_before
    recorded = sum(u["completion_tokens"] for u in usage)
    if any(f["errorKind"] == "timeout" for f in failures):
        assert recorded <= written  # a request given up on still wrote tokens nobody was told of
    else:
        assert recorded == written

    _write_figures(
        llama_server=llama_server,
        wall_s=wall_s,
        complete=complete,
        attempts=sum(1 for _, name, _ in log if name == "item.started"),
        failures=failures,
        usage=usage,
        durations_ms=[p["durationMs"] for p in received.named("item.completed")],
    )


def _write_figures(
    *,
    llama_server: LlamaServer,
    wall_s: float,
    complete: dict[str, Any],
    attempts: int,
    failures: list[dict[str, Any]],
    usage: list[dict[str, Any]],
    durations_ms: list[int],
) -> None:
    """What the README's figures come from: printed (pytest -s) and kept in artifacts/ (ignored by git)."""
    seconds = [u["seconds"] for u in usage]
    tokens = [u["completion_tokens"] for u in usage]
    figures = {
        "llama_server_load_s": round(llama_server.load_s, 2),
        "items": ITEMS,
        "batch_wall_s": round(wall_s, 1),
        "seconds_per_item_wall": round(wall_s / ITEMS, 1),
        "status": complete["status"],
        "completed_items": complete["completedItems"],
        "failed_items": complete["failedItems"],
        "attempts": attempts,
        "answered_attempts": len(usage),
        "seconds_per_answered_request": round(sum(seconds) / len(seconds), 1) if seconds else None,
        "completion_tokens_per_s_per_request": round(sum(tokens) / sum(seconds), 1) if seconds else None,
        "completion_tokens_per_request": round(sum(tokens) / len(tokens)) if tokens else None,
        "completed_item_duration_ms": durations_ms,
        "failed_attempts_by_gate": dict(Counter(gate(f) for f in failures)),
        "failure_messages": [f["errorMessage"] for f in failures],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "llm-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
