"""A lean SSE load generator: N streams on raw asyncio sockets, each item event's receipt time recorded.

One process holds thousands of streams: no HTTP library, no task per stream, only a protocol object whose
`data_received` timestamps the chunk once and finds the item events in it with one regex. Driven over
stdin/stdout by the benchmark:

    python -m bench.loadgen --port P --path /api/... --token T --streams N --out DIR
    -> "open <ok> <failed>"   once every stream got its first frame (or failed)
    <- "finish <timeout_s>"   wait until every stream ended (or the timeout), write DIR/{seq,t,stream}.bin
    -> "done <ended> <open>"
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import cast

# Frames are written whole and in one piece each (one HTTP chunk or more), so the id and the event line of
# a frame are always in one completed part of the buffer.
ITEM_EVENT = re.compile(rb"id: (\d+)\nevent: item\.")
CONNECT_AT_ONCE = 100
OPEN_TIMEOUT_S = 60.0


class Recorder:
    def __init__(self) -> None:
        self.seq = array("q")
        self.t = array("d")
        self.stream = array("i")

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("seq", "t", "stream"):
            with (out / f"{name}.bin").open("wb") as f:
                getattr(self, name).tofile(f)


class Stream(asyncio.Protocol):
    def __init__(self, index: int, request: bytes, recorder: Recorder) -> None:
        self.index = index
        self.request = request
        self.recorder = recorder
        self.head = b""
        self.rest = b""
        self.status = 0
        self.first = asyncio.get_running_loop().create_future()
        self.ended = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass of it
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        if (data == b"0\r\n\r\n" or data.endswith(b"\r\n0\r\n\r\n")) and self.transport is not None:
            # The chunked body's end: the stream is over (the server would keep the connection for a while).
            self.transport.close()
        if not self.status:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head[9:12])
            data, self.head = self.head[end + 4 :], b""
            if self.status != 200:
                self._settle(self.first, False)
                assert self.transport is not None
                self.transport.close()
                return
        buf = self.rest + data if self.rest else data
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            self.rest = buf
            return
        body, self.rest = buf[: cut + 2], buf[cut + 2 :]
        self._settle(self.first, True)
        rec = self.recorder
        for match in ITEM_EVENT.finditer(body):
            rec.seq.append(int(match[1]))
            rec.t.append(received)
            rec.stream.append(self.index)

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(self.first, False)
        self._settle(self.ended, True)

    @staticmethod
    def _settle(future: asyncio.Future[bool], value: bool) -> None:
        if not future.done():
            future.set_result(value)


async def open_streams(port: int, path: str, token: str, count: int, recorder: Recorder) -> list[Stream]:
    loop = asyncio.get_running_loop()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\nCache-Control: no-cache\r\n\r\n"
    ).encode()
    streams = [Stream(i, request, recorder) for i in range(count)]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def connect(stream: Stream) -> None:
        async with gate:
            try:
                await loop.create_connection(lambda: stream, "127.0.0.1", port)
            except OSError:
                stream.connection_lost(None)
                return
            try:
                await asyncio.wait_for(asyncio.shield(stream.first), OPEN_TIMEOUT_S)
            except TimeoutError:
                stream.connection_lost(None)

    await asyncio.gather(*(connect(s) for s in streams))
    return streams


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    streams = await open_streams(args.port, args.path, args.token, args.streams, recorder)
    ok = sum(1 for s in streams if s.first.result())
    print(f"open {ok} {len(streams) - ok}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    command, timeout = line.split()
    assert command == "finish", line
    ended = [s.ended for s in streams]
    await asyncio.wait(ended, timeout=float(timeout))
    done = sum(1 for f in ended if f.done())
    recorder.write(Path(args.out))
    for s in streams:
        if s.transport is not None:
            s.transport.abort()
    print(f"done {done} {len(streams) - done}", flush=True)


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--out", required=True)
    raise_nofile()
    import uvloop

    uvloop.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
