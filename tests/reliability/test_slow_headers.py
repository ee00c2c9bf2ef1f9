"""Clients that open connections and trickle their request headers (or send nothing) are cut off after
`LIVEBATCH_HEADER_TIMEOUT_S`, with a 408, while ordinary requests go on being answered: a few hundred such
connections once held a server's file descriptors for good (issue 19, item 7)."""

from __future__ import annotations

import asyncio
import time

import httpx

from livebatch.config import Settings
from tests.conftest import LiveFactory, LiveProcess, SettingsFactory
from tests.reliability.conftest import Serve

TRICKLERS = 100
SILENT = 20
HEADER_TIMEOUT_S = 1.5
DEADLINE_S = HEADER_TIMEOUT_S + 10  # closed by then, with room for a busy machine


async def _held_for(server: LiveProcess, *, trickle: bool) -> float:
    """Seconds until the server closed a connection that trickles a header line every 0.2 s (or sends
    nothing), or the deadline if it never did."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    started = time.monotonic()
    try:
        if trickle:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while time.monotonic() - started < DEADLINE_S:
            try:
                data = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                if trickle:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
                continue
            if not data:
                return time.monotonic() - started
            assert data.startswith(b"HTTP/1.1 408"), data
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    finally:
        writer.close()
    return DEADLINE_S


async def test_connections_trickling_headers_are_closed_and_normal_requests_are_answered(
    make_settings: SettingsFactory, live_process: LiveFactory, serve: Serve
) -> None:
    settings: Settings = make_settings(header_timeout_s=HEADER_TIMEOUT_S)
    server = serve(settings)
    holders = [asyncio.create_task(_held_for(server, trickle=True)) for _ in range(TRICKLERS)]
    holders += [asyncio.create_task(_held_for(server, trickle=False)) for _ in range(SILENT)]
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as http:  # meanwhile, a normal request
        assert (await http.get("/healthz")).status_code == 200
        held = await asyncio.gather(*holders)
        assert (await http.get("/healthz")).status_code == 200

    assert max(held) < DEADLINE_S, f"{sum(h >= DEADLINE_S for h in held)} connections were never closed"
    assert min(held) >= HEADER_TIMEOUT_S * 0.5, min(held)  # cut off by the deadline, not at once
    print(f"\n{len(held)} slow connections closed after {min(held):.1f}-{max(held):.1f} s")
