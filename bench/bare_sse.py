"""The fan-out baseline: a bare FastAPI + sse-starlette endpoint broadcasting payloads from memory.

No database, no auth, no snapshots: every subscriber has a bounded queue, a broadcaster puts each event
(one `ServerSentEvent`, encoded by sse-starlette per stream, as an app written the obvious way does) into
every queue at a fixed rate, and stamps the time it did so, the analogue of livebatch's commit time.

    python -m bench.bare_sse --port P --payloads FILE   (FILE: JSON list of [name, data])
    GET /stream   a hello frame, then the broadcast; ends after `batch.complete`
    POST /start?rate=R   begin broadcasting R events/s (the payloads in a loop)
    POST /stop   a last `batch.complete` to everyone; answers {"emitted": {seq: unix time}}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sse_starlette import EventSourceResponse, ServerSentEvent

SEP = "\n"
QUEUE = 2000  # livebatch's default stream buffer


def create_app(payloads: list[tuple[str, str]]) -> FastAPI:
    app = FastAPI()
    subscribers: set[asyncio.Queue[ServerSentEvent | None]] = set()
    emitted: dict[int, float] = {}
    running: list[asyncio.Task[None]] = []

    def broadcast(event: ServerSentEvent | None) -> None:
        for queue in tuple(subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    async def emit(rate: float) -> None:
        started = time.monotonic()
        seq = 0
        while True:
            seq += 1
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            name, data = payloads[(seq - 1) % len(payloads)]
            emitted[seq] = time.time()
            broadcast(ServerSentEvent(data=data, event=name, id=str(seq), sep=SEP))

    async def events(queue: asyncio.Queue[ServerSentEvent | None]) -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent(data="{}", event="hello", sep=SEP)
            while (event := await queue.get()) is not None:
                yield event
        finally:
            subscribers.discard(queue)

    @app.get("/stream")
    async def stream() -> EventSourceResponse:
        queue: asyncio.Queue[ServerSentEvent | None] = asyncio.Queue(QUEUE)
        subscribers.add(queue)
        return EventSourceResponse(events(queue), sep=SEP, ping=15, send_timeout=10)

    @app.get("/healthz")
    async def healthz() -> dict[str, int]:
        return {"subscribers": len(subscribers)}

    @app.post("/start")
    async def start(rate: float) -> dict[str, bool]:
        running.append(asyncio.create_task(emit(rate)))
        return {"started": True}

    @app.post("/stop")
    async def stop() -> dict[str, dict[int, float]]:
        for task in running:
            task.cancel()
        broadcast(ServerSentEvent(data='{"status":"cancelled"}', event="batch.complete", sep=SEP))
        broadcast(None)
        return {"emitted": emitted}

    return app


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_sse")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payloads", type=Path, required=True)
    args = parser.parse_args()
    payloads = [(str(name), str(data)) for name, data in json.loads(args.payloads.read_text())]
    # As `livebatch serve` runs it: one process, uvicorn's defaults (uvloop and httptools when installed).
    uvicorn.run(create_app(payloads), host="127.0.0.1", port=args.port, log_config=None, log_level="warning")


if __name__ == "__main__":
    cli()
