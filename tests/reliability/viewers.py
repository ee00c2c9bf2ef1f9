"""Viewers of a batch's progress stream that behave like `EventSource`: they reconnect after any end that is
not `batch.complete` (a dropped connection, a refused one while the server restarts, a cut-off) with the
last id they saw, and stop at `batch.complete` or on `204`. What each received is kept to compare with the
event log; what each met on the way (statuses, transport errors) to tell a survived fault from a hidden one.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import SSEError, aconnect_sse

from tests.stream.support import UNLOGGED, Logged, progress_url


@dataclass
class Viewer:
    batch_id: str
    rng: random.Random | None = None  # given: each connection is dropped after a random number of events
    last: int = 0
    logged: list[Logged] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    drops: int = 0
    connected_at: list[float] = field(default_factory=list)  # monotonic time of each 200
    done: bool = False

    async def follow(self, http: httpx.AsyncClient, *, retry_s: float = 0.1) -> None:
        """Until the batch is over; an unexpected status is kept and retried, like a transport error."""
        while not self.done:
            try:
                await self._connect(http)
            except (httpx.TransportError, SSEError):
                self.transport_errors += 1
            if not self.done:
                await asyncio.sleep(retry_s)

    async def _connect(self, http: httpx.AsyncClient) -> None:
        headers = {"Last-Event-ID": str(self.last)}
        async with aconnect_sse(http, "GET", progress_url(self.batch_id), headers=headers) as source:
            status = source.response.status_code
            self.statuses[status] += 1
            if status == 204:
                self.done = True
                return
            if status != 200:
                await source.response.aread()
                return
            self.connected_at.append(time.monotonic())
            budget = self.rng.randint(5, 60) if self.rng is not None else None
            async for sse in source.aiter_sse():
                if sse.event not in UNLOGGED:
                    self.logged.append((int(sse.id), sse.event, _payload(sse.data)))
                    self.last = int(sse.id)
                if sse.event == "batch.complete":
                    self.done = True
                    return
                if budget is not None:
                    budget -= 1
                    if budget <= 0:
                        self.drops += 1
                        return  # the client goes away mid-stream; leaving the block closes the connection

    @property
    def unexpected(self) -> dict[int, int]:
        """Statuses other than the stream's own 200 and the final 204."""
        return {status: n for status, n in self.statuses.items() if status not in (200, 204)}


def _payload(data: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(data)
    return payload
