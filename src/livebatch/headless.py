"""Batches followed from a terminal: run one here (`run-batch`), or watch one on a server (`watch`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
from pydantic import ValidationError
from pydantic.alias_generators import to_snake
from rich.console import Console

from livebatch.batches import reads, service
from livebatch.batches.guards import ERROR_WINDOW, Budget
from livebatch.batches.lifecycle import snapshot_of
from livebatch.batches.models import Batch
from livebatch.batches.schemas import BatchCreate, BudgetSpec, DifficultyDistribution
from livebatch.batches.status import BatchStatus
from livebatch.client import ApiError, BatchClient
from livebatch.config import Settings
from livebatch.courses.service import ensure_demo_course
from livebatch.errors import BadRequest, LivebatchError
from livebatch.events.bus import Marker, SubscriptionCutOff
from livebatch.migrate import upgrade_async
from livebatch.parts import Parts
from livebatch.terminal import ProgressView, format_failure_groups, format_summary
from livebatch.users.models import Role
from livebatch.users.service import ensure_user

FINISHED_OK = (BatchStatus.completed, BatchStatus.completed_with_errors)


@dataclass(frozen=True, slots=True)
class Guards:
    """What `run-batch` asks of a new batch's guards: a cost and a token budget, and the error-rate guard."""

    cost: float | None = None
    tokens: int | None = None
    error_rate: bool = True


async def run_headless(
    settings: Settings,
    console: Console,
    *,
    count: int,
    user: str,
    course: str,
    batch_id: str | None,
    mix: tuple[int, int, int],
    guards: Guards = Guards(),
) -> int:
    if settings.is_sqlite:
        await upgrade_async(settings.effective_database_url)
    parts = Parts(settings, worker=True)
    await parts.start()
    try:
        try:
            batch = await _create_or_find(
                parts, count=count, email=user, course=course, batch_id=batch_id, mix=mix, guards=guards
            )
        except LivebatchError as exc:
            console.print(f"[red]{exc.message}")
            return 2
        console.print(f"batch {batch.id}: {batch.total_items} items, status {batch.status}")
        final, usage = await _follow_locally(parts, console, batch)
        groups = await _failure_groups(parts, batch.id) if final["failedItems"] else []
    finally:
        await parts.aclose()
    # The failures by cause before the summary line, which scripts read where it always was.
    for line in format_failure_groups(groups):
        console.print(line, soft_wrap=True, markup=False)
    console.print(format_summary(str(batch.id), final, usage), soft_wrap=True)
    if final.get("errorMessage"):
        console.print(f"[red]{final['errorMessage']}", soft_wrap=True)
    return 0 if final["status"] in FINISHED_OK else 1


async def _create_or_find(
    parts: Parts,
    *,
    count: int,
    email: str,
    course: str,
    batch_id: str | None,
    mix: tuple[int, int, int],
    guards: Guards,
) -> Batch:
    async with parts.transactions.begin() as uow:
        with _option("--user"):
            owner = await ensure_user(uow.session, email, Role.faculty)
        if batch_id is not None:
            with _option("--batch"):
                batch = await reads.get_owned_batch(uow.session, service.parse_batch_id(batch_id), owner)
        else:
            await ensure_demo_course(uow.session, course)
            spec = _spec(course, count, mix, guards)
            try:
                batch = await service.create_batch(uow, spec, owner=owner, limits=parts.limits, now=parts.now())
            except service.InvalidBatchConfig as exc:
                option = _OPTIONS[to_snake(exc.field)]
                raise BadRequest(f"{option}: {exc.message.removeprefix(exc.field + ' ')}") from None
        await uow.commit()
        return batch


_OPTIONS = {
    "course_id": "--course",
    "target_count": "--count",
    "difficulty_distribution": "--easy/--medium/--hard",
    "cost": "--budget",
    "tokens": "--budget-tokens",
}


@contextmanager
def _option(name: str) -> Iterator[None]:
    """An error of this step is about the option `name`: the message says so (`--user: ...`)."""
    try:
        yield
    except LivebatchError as exc:
        raise BadRequest(f"{name}: {exc.message}") from None


def _spec(course: str, count: int, mix: tuple[int, int, int], guards: Guards) -> BatchCreate:
    """The batch the options describe; a bad option is a `BadRequest` that names it."""
    easy, medium, hard = mix
    try:
        budget = None
        if guards.cost is not None or guards.tokens is not None:
            budget = BudgetSpec(cost=guards.cost, tokens=guards.tokens)
        return BatchCreate(
            course_id=course,
            target_count=count,
            difficulty_distribution=DifficultyDistribution(easy=easy, medium=medium, hard=hard),
            budget=budget,
            error_rate_guard=guards.error_rate,
        )
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            option = _OPTIONS.get(field, _OPTIONS["difficulty_distribution"])
            problems.append(f"{option}: {error['msg'].removeprefix('Value error, ')}")
        raise BadRequest("; ".join(problems)) from None


async def _follow_locally(parts: Parts, console: Console, batch: Batch) -> tuple[dict[str, Any], dict[str, Any]]:
    """Shows progress from the bus, and from the database once a second (another process may be doing
    the work, and its notices do not reach this one)."""
    topic = str(batch.id)
    subscription = parts.bus.subscribe(topic)
    shown_status: str | None = None
    with ProgressView(console, batch.total_items) as view:
        try:
            while True:
                current = await _read(parts, batch.id)
                snapshot = json.loads(snapshot_of(current).to_json())
                view.update(snapshot)
                if current.status.is_terminal:
                    return _complete_of(current), snapshot
                if current.status != shown_status:
                    # Paused, nothing moves until someone resumes it: say so rather than look hung.
                    if current.status == BatchStatus.paused:
                        view.note(
                            f"paused{_why(current)}: waiting for it to be resumed (from its page, or the API); "
                            "Ctrl-C stops"
                        )
                    elif shown_status == BatchStatus.paused:
                        view.note("resumed")
                    shown_status = current.status
                try:
                    notice = await subscription.get(timeout=1.0)
                except SubscriptionCutOff:
                    subscription.close()
                    subscription = parts.bus.subscribe(topic)
                    continue
                if notice is None or isinstance(notice, Marker):
                    continue
                for event in notice.events:
                    if event.name == "item.failed":
                        view.failure(json.loads(event.data))
        finally:
            subscription.close()


async def _failure_groups(parts: Parts, batch_id: UUID) -> list[dict[str, Any]]:
    async with parts.db.read_session() as session:
        batch = await reads.get_batch(session, batch_id)
        groups = await reads.failure_groups(session, batch) if batch is not None else []
    return [group.model_dump(by_alias=True) for group in groups]


async def _read(parts: Parts, batch_id: UUID) -> Batch:
    async with parts.db.read_session() as session:
        batch = await reads.get_batch(session, batch_id)
    assert batch is not None
    return batch


def _why(batch: Batch) -> str:
    """Why a batch paused, for the terminal: nothing for a pause by hand."""
    if batch.pause_reason == "budget_reached":
        spent = Budget.of(batch.config).describe(batch.currency)
        return f" by its budget ({spent} spent; raise it with PUT …/budget, then resume)"
    if batch.pause_reason == "error_rate":
        return f" by its error-rate guard (more than half of its last {ERROR_WINDOW} attempts failed)"
    return ""


def _complete_of(batch: Batch) -> dict[str, Any]:
    started = batch.started_at or batch.created_at
    ended = batch.completed_at or started
    return {
        "errorMessage": batch.error_message,
        "status": batch.status,
        "totalItems": batch.total_items,
        "completedItems": batch.completed_items,
        "failedItems": batch.failed_items,
        "totalDurationMs": round((ended - started).total_seconds() * 1000),
    }


async def watch_remote(console: Console, base_url: str, token: str, batch_id: str) -> int:
    """Follows the batch to its end: 0 when it finished, 1 when it failed or was cancelled, 2 when it could
    not be followed (no server there, a refusal), each said in one line."""
    try:
        return await _watch(console, base_url, token, batch_id)
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach {base_url}: {_reason(exc)}", soft_wrap=True)
    except ApiError as exc:
        console.print(f"[red]{exc}", soft_wrap=True)
    return 2


def _reason(exc: httpx.TransportError) -> str:
    """`connection refused`, `timed out`, ...: the innermost cause, in words, without the traceback."""
    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused (is `livebatch serve` running there?)"
    return str(cause) or type(cause).__name__


async def _watch(console: Console, base_url: str, token: str, batch_id: str) -> int:
    async with BatchClient(base_url, token) as client:
        batch = await client.get_batch(batch_id)
        console.print(f"batch {batch_id}: {batch['course']['title']}, {batch['total_items']} items, {batch['status']}")
        final: dict[str, Any] | None = None
        with ProgressView(console, batch["total_items"], label="watching") as view:
            view.update(batch["snapshot"])
            lost = False

            def dropped() -> None:
                nonlocal lost
                if not lost:
                    view.note("connection lost, reconnecting…")
                    view.reconnecting(True)
                lost = True

            async for event in client.follow(batch_id, last_event_id=batch["lastEventId"], on_drop=dropped):
                if lost:
                    lost = False
                    view.reconnecting(False)
                    view.note("reconnected")
                if event.name == "batch.progress":
                    view.update(event.data)
                elif event.name == "item.failed":
                    view.failure(event.data)
                elif event.name == "batch.complete":
                    final = event.data
        # The batch as it ended: what it used (batch.complete does not say), and how it ended when the stream
        # had nothing left to send (204).
        batch = await client.get_batch(batch_id)
        snapshot = batch["snapshot"]
        if final is None:
            final = {
                "status": batch["status"],
                "totalItems": snapshot["totalItems"],
                "completedItems": snapshot["completedItems"],
                "failedItems": snapshot["failedItems"],
                "totalDurationMs": _duration_ms(batch["started_at"], batch["completed_at"]),
            }
        groups = batch["failureGroups"] if final["failedItems"] else []
    for line in format_failure_groups(groups):
        console.print(line, soft_wrap=True, markup=False)
    console.print(format_summary(batch_id, final, snapshot), soft_wrap=True)
    return 0 if final["status"] in FINISHED_OK else 1


async def show_failures(console: Console, base_url: str, token: str, batch_id: str) -> int:
    """Prints a batch's failed items grouped by cause, with the keys `retry-failed --group` takes."""
    async with BatchClient(base_url, token) as client:
        try:
            batch = await client.get_batch(batch_id)
        except ApiError as exc:
            console.print(f"[red]{exc}")
            return 2
    console.print(f"batch {batch_id}: {batch['course']['title']}, {batch['status']}", markup=False)
    lines = format_failure_groups(batch["failureGroups"]) or ["no failed items"]
    for line in lines:
        console.print(line, soft_wrap=True, markup=False)
    return 0


async def retry_remote(
    console: Console, base_url: str, token: str, batch_id: str, *, kinds: list[str], groups: list[str]
) -> int:
    """Retries a batch's failed items (all, or those of these kinds and groups) on a server."""
    async with BatchClient(base_url, token) as client:
        try:
            batch = await client.retry_failed(batch_id, kinds=kinds or None, groups=groups or None)
        except ApiError as exc:
            console.print(str(exc), style="red", markup=False)
            return 2 if exc.status_code in (404, 422) else 1
    snapshot = batch["snapshot"]
    console.print(
        f"batch {batch_id} {batch['status']}: {snapshot['pendingItems']} items to run again, "
        f"{snapshot['failedItems']} left failed",
        soft_wrap=True,
    )
    return 0


def _duration_ms(started_at: str | None, completed_at: str | None) -> int:
    if started_at is None or completed_at is None:
        return 0
    return round((datetime.fromisoformat(completed_at) - datetime.fromisoformat(started_at)).total_seconds() * 1000)
