"""A client that stops reading is cut off once its stream's buffer is full; the others never wait for it.

The stalled client here sends its request and then reads nothing. On loopback the kernel would absorb
megabytes for it before the server's writes block (docs/stack-notes.md), so its socket is made small, as over a
slow link: a 2 KB receive buffer and a 536-byte segment size keep what the kernel holds to tens of KB.
Past that the server's write blocks, the stream stops draining its subscription, and the bounded queue
(`LIVEBATCH_STREAM_BUFFER`) fills: the fan-out drops the subscriber instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import h11
import pytest

from tests.checks import event_log, load_batch
from tests.stream.servers import Served
from tests.stream.support import (
    create_batch,
    logged,
    metric,
    parse_sse,
    progress_url,
    read_stream,
    wait_for_metric,
)

CUTOFFS = "livebatch_stream_cutoffs_total"


class StalledClient:
    """An HTTP/1.1 client that sends one request, then reads nothing until told to."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.http = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int, target: str, headers: dict[str, str]) -> StalledClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connecting, so that the handshake advertises them: a small window and small segments.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        client = cls(sock)
        request = h11.Request(method="GET", target=target, headers=[("Host", "127.0.0.1"), *headers.items()])
        await loop.sock_sendall(sock, client.http.send(request) + client.http.send(h11.EndOfMessage()))
        return client

    async def read_to_end(self, timeout: float = 30) -> tuple[int, bytes, bool]:
        """Reads everything until the server closes: (status, body, whether the body was complete)."""
        loop = asyncio.get_running_loop()
        status, body, complete = 0, bytearray(), False
        async with asyncio.timeout(timeout):
            while True:
                try:
                    event = self.http.next_event()
                except h11.RemoteProtocolError:  # closed in the middle of the body
                    break
                if event is h11.NEED_DATA:
                    self.http.receive_data(await loop.sock_recv(self.sock, 65536))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    complete = True
                    break
        return status, bytes(body), complete

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def stalled() -> AsyncIterator[list[StalledClient]]:
    clients: list[StalledClient] = []
    yield clients
    for client in clients:
        client.close()


async def test_a_stream_that_never_reads_is_cut_off_and_delays_no_one(
    constrained: Served, stalled: list[StalledClient]
) -> None:
    """On the `constrained` server: a buffer of 64 notices per stream, a snapshot after every change."""
    server = constrained
    faculty = server.people["faculty"]
    async with server.http() as http, server.database() as db:
        batch = await create_batch(http, 250)
        slow = await StalledClient.open(server.port, progress_url(batch["id"]) + "?lastEventId=0", faculty.headers)
        stalled.append(slow)
        readers = [asyncio.create_task(read_stream(http, batch["id"], query_id=0)) for _ in range(2)]

        await wait_for_metric(http, CUTOFFS, lambda n: n == 1, labels='reason="buffer_full"', timeout=60)
        # Cut off while the batch was still running, and its subscription given back at once.
        assert (await load_batch(db, batch["id"])).status == "running"
        assert await metric(http, "livebatch_bus_subscribers") <= 2

        # The two readers saw the whole batch, live, to its end: nothing of theirs waited for the slow one.
        fast = await asyncio.gather(*readers)
        log = await event_log(db, batch["id"])
        assert log[-1][1] == "batch.complete"
        for stream in fast:
            assert stream.logged == log
        assert await metric(http, CUTOFFS, 'reason="buffer_full"') == 1
        assert await metric(http, CUTOFFS, 'reason="send_timeout"') == 0

        # When the slow client reads at last, it finds what was sent before the cut, then the end.
        # Whether the response also ended cleanly depends on whether its last 5 bytes still fitted in the
        # socket (`_end_cut_off` tries for a second): either way, the events stop short of the end.
        status, body, _ = await slow.read_to_end()
        assert status == 200
        before_cut = parse_sse(body.decode())
        assert 0 < len(logged(before_cut)) < len(log)
        assert logged(before_cut) == log[: len(logged(before_cut))]
        # Reconnecting with the last id it saw, it resumes where it was cut: no gap, no repeat.
        last_id = [e.id for e in before_cut][-1]
        resumed = await read_stream(http, batch["id"], header_id=last_id)
        assert logged(before_cut) + resumed.logged == log
        assert await metric(http, "livebatch_open_streams") == 0
    # A cut-off is counted and logged as one (INFO), not as an error an operator would be paged for.
    server_log = server.process.log_path.read_text()
    assert "stream cut off: its client fell behind (buffer_full)" in server_log
    assert " ERROR " not in server_log and "Traceback" not in server_log, server_log[-3000:]
