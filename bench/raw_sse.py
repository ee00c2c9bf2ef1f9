"""The floor for Python: a raw asyncio (uvloop) server writing the same frames to the same sockets.

No framework, no ASGI, no task per stream: a protocol object per connection, and a broadcaster that encodes
each event once and writes it to every stream's transport as one HTTP chunk, as it is emitted (one write per
event per stream, as the sse-starlette baseline makes). It answers the same requests as bench/bare_sse.py:

    python -m bench.raw_sse --port P --payloads FILE   (FILE: JSON list of [name, data])
    GET /stream   a hello frame, then the broadcast; ends after `batch.complete`
    GET /healthz
    POST /start?rate=R   begin broadcasting R events/s (the payloads in a loop)
    POST /stop   a last `batch.complete` to everyone; answers {"emitted": {seq: unix time}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import cast
from urllib.parse import parse_qs, urlsplit

from livebatch.events.sse import frame

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\n"
    b"connection: keep-alive\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Broadcaster:
    def __init__(self, payloads: list[tuple[str, str]]) -> None:
        self.payloads = payloads
        self.streams: set[asyncio.Transport] = set()
        self.emitted: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None

    def broadcast(self, data: bytes) -> None:
        wire = chunk(data)
        for transport in tuple(self.streams):
            if transport.is_closing():
                self.streams.discard(transport)
            else:
                transport.write(wire)

    async def emit(self, rate: float) -> None:
        started = time.monotonic()
        seq = 0
        while True:
            seq += 1
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            name, data = self.payloads[(seq - 1) % len(self.payloads)]
            self.emitted[seq] = time.time()
            self.broadcast(frame(name, data, event_id=seq))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.broadcast(frame("batch.complete", '{"status":"cancelled"}'))
        for transport in tuple(self.streams):
            transport.write(b"0\r\n\r\n")
            transport.close()  # the stream is over (as the others end theirs): the load generator waits for it
        self.streams.clear()


class Connection(asyncio.Protocol):
    def __init__(self, hub: Broadcaster) -> None:
        self.hub = hub
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.hub.streams.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        request, self.buffer = self.buffer[:end].decode("latin-1"), b""
        method, target, _ = request.split("\r\n", 1)[0].split(" ", 2)
        url = urlsplit(target)
        transport = self.transport
        assert transport is not None
        if method == "GET" and url.path == "/stream":
            transport.write(HEAD + chunk(frame("hello", "{}")))
            self.hub.streams.add(transport)
        elif method == "GET" and url.path == "/healthz":
            self._answer({"subscribers": len(self.hub.streams)})
        elif method == "POST" and url.path == "/start":
            rate = float(parse_qs(url.query)["rate"][0])
            self.hub.task = asyncio.get_running_loop().create_task(self.hub.emit(rate))
            self._answer({"started": True})
        elif method == "POST" and url.path == "/stop":
            self.hub.stop()
            self._answer({"emitted": self.hub.emitted})
        else:
            transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            transport.close()

    def _answer(self, body: object) -> None:
        data = json.dumps(body).encode()
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%b"
            % (len(data), data)
        )
        self.transport.close()


async def serve(port: int, payloads: list[tuple[str, str]]) -> None:
    hub = Broadcaster(payloads)
    server = await asyncio.get_running_loop().create_server(lambda: Connection(hub), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_sse")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--payloads", type=Path, required=True)
    args = parser.parse_args()
    payloads = [(str(name), str(data)) for name, data in json.loads(args.payloads.read_text())]
    import uvloop

    uvloop.run(serve(args.port, payloads))


if __name__ == "__main__":
    cli()
