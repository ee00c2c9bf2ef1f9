"""A small Python client for the livebatch API (httpx + httpx-sse).

`follow()` yields a batch's events and survives dropped connections: it reconnects with the last id it
saw as `Last-Event-ID`, so no event is missed or repeated, and it stops after `batch.complete` (or at
the server's `204`, which means there is nothing left to see).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

MAX_RECONNECT_DELAY_S = 5.0


class ApiError(Exception):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{status_code} {code}: {message}")
        self.status_code, self.code, self.message = status_code, code, message


@dataclass(frozen=True, slots=True)
class StreamEvent:
    name: str
    data: dict[str, Any]
    id: int | None


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "HTTP_ERROR", response.text[:200]
    raise ApiError(response.status_code, code, message)


class BatchClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
            timeout=httpx.Timeout(timeout, read=None),
        )
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnects = 0

    async def __aenter__(self) -> BatchClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._http.request(method, path, **kwargs)
        _raise_for_error(response)
        return response.json()

    async def create_batch(
        self,
        course_id: str,
        target_count: int,
        *,
        easy: int = 30,
        medium: int = 50,
        hard: int = 20,
        budget: dict[str, float | int | None] | None = None,
        error_rate_guard: bool = True,
    ) -> dict[str, Any]:
        """`budget`: `{"cost": 5.0}` and/or `{"tokens": 200000}`; `error_rate_guard`: pause when more than half
        of the last 20 attempts failed."""
        body: dict[str, Any] = {
            "courseId": course_id,
            "targetCount": target_count,
            "questionType": "single-best-answer",
            "difficultyDistribution": {"easy": easy, "medium": medium, "hard": hard},
            "errorRateGuard": error_rate_guard,
        }
        if budget is not None:
            body["budget"] = budget
        result: dict[str, Any] = await self._json("POST", "/api/v1/generation/batch", json=body)
        return result

    async def set_budget(
        self, batch_id: str, *, cost: float | None = None, tokens: int | None = None
    ) -> dict[str, Any]:
        """Sets the batch's budget (both None: no cap); a batch paused by its budget is then resumed by `control`."""
        body = {"cost": cost, "tokens": tokens}
        result: dict[str, Any] = await self._json("PUT", f"/api/v1/generation/batch/{batch_id}/budget", json=body)
        return result

    async def get_batch(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/api/v1/generation/batch/{batch_id}")
        return result

    async def control(self, batch_id: str, action: str) -> dict[str, Any]:
        """`action` is pause, resume, cancel or retry-failed."""
        result: dict[str, Any] = await self._json("POST", f"/api/v1/generation/batch/{batch_id}/{action}")
        return result

    async def retry_failed(
        self, batch_id: str, *, kinds: list[str] | None = None, groups: list[str] | None = None
    ) -> dict[str, Any]:
        """Retries the batch's failed items: all of them, or those of these kinds and groups (`failureGroups` keys)."""
        only = {k: v for k, v in (("errorKinds", kinds), ("groups", groups)) if v}
        path = f"/api/v1/generation/batch/{batch_id}/retry-failed"
        result: dict[str, Any] = await self._json("POST", path, json=only or None)
        return result

    async def follow(
        self, batch_id: str, *, last_event_id: int | None = None, on_drop: Callable[[], None] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """The batch's events from after `last_event_id` (or from now) until `batch.complete`. `on_drop` is
        called each time the connection is lost (or cannot be made) and is about to be tried again; the
        delay before each try doubles while the server stays away, up to `MAX_RECONNECT_DELAY_S`."""
        last = last_event_id
        url = f"/api/v1/generation/batch/{batch_id}/progress"
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                async with aconnect_sse(self._http, "GET", url, headers=headers) as source:
                    if source.response.status_code == 204:
                        return
                    if not source.response.is_success:
                        await source.response.aread()
                        _raise_for_error(source.response)
                    failures = 0
                    async for sse in source.aiter_sse():
                        if sse.id:
                            last = int(sse.id)
                        data = json.loads(sse.data) if sse.data else {}
                        yield StreamEvent(sse.event, data, int(sse.id) if sse.id else None)
                        if sse.event == "batch.complete":
                            return
            except (httpx.TransportError, SSEError):
                pass  # dropped: reconnect below, from the last id seen
            self.reconnects += 1
            if on_drop is not None:
                on_drop()
            await asyncio.sleep(min(self.reconnect_delay_s * 2**failures, MAX_RECONNECT_DELAY_S))
            failures += 1
