"""`livebatch watch`: a terminal that follows a batch on a server to its end, driven as a subprocess."""

from __future__ import annotations

import asyncio
import io
import re
import socket
import sys

from rich.console import Console

from livebatch.headless import watch_remote
from tests.checks import event_log, load_batch, wait_until
from tests.client.conftest import Proxy
from tests.conftest import settings_env
from tests.stream.servers import Served
from tests.stream.support import control, create_batch, read_stream, wait_for_metric


async def _watch(served: Served, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livebatch",
        "watch",
        *args,
        env=settings_env(served.settings) | {"COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(90):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_watch_follows_a_running_batch_to_its_end(served: Served) -> None:
    async with served.http() as http, served.database() as db:
        # A third of the attempts fail on this server, on purpose: the error-rate guard could pause the batch.
        batch = await create_batch(http, 40, error_rate_guard=False)
        assert (await control(http, batch["id"], "pause")).status_code == 200

        async def settled() -> bool:
            return (await load_batch(db, batch["id"])).in_progress_items == 0

        await wait_until(settled)
        seen_before = (await load_batch(db, batch["id"])).last_seq
        watching = asyncio.create_task(
            _watch(served, batch["id"], "--url", served.base_url, "--token", served.people["faculty"].token)
        )
        await wait_for_metric(http, "livebatch_bus_subscribers", lambda n: n == 1, timeout=60)
        assert (await control(http, batch["id"], "resume")).status_code == 200
        code, output = await watching
        final = await load_batch(db, batch["id"])
        log = await event_log(db, batch["id"])
    lines = output.strip().splitlines()
    assert lines[0] == f"batch {batch['id']}: Cardiovascular Pathology, 40 items, paused"
    # Every failure after it started watching is listed as it happened, with its attempt and fate.
    failures = [p for seq, name, p in log if name == "item.failed" and seq > seen_before]
    listed = [line for line in lines if re.match(r"  #\d+ attempt \d+: ", line)]
    assert listed == [
        f"  #{f['itemIndex'] + 1} attempt {f['retryCount']}: {f['errorMessage']} "
        f"({'will retry' if f['willRetry'] else 'failed for good'})"
        for f in failures
    ]
    # The last line is the outcome, as the database has it.
    assert final.status in ("completed", "completed_with_errors")
    summary = re.fullmatch(
        rf"batch {batch['id']} (\w+): (\d+) completed, (\d+) failed of 40 in (\S+), ([\d,]+) tokens, cost unknown",
        lines[-1],
    )
    assert summary is not None, lines[-1]
    assert summary.groups()[:3] == (final.status, str(final.completed_items), str(final.failed_items))
    assert int(summary[5].replace(",", "")) == final.prompt_tokens + final.completion_tokens
    assert code == 0


async def _watch_here(served: Served, batch_id: str) -> tuple[int, str]:
    """What `watch` runs, in this process: for the cases that need no second process to show."""
    out = io.StringIO()
    code = await watch_remote(Console(file=out, width=200), served.base_url, served.people["faculty"].token, batch_id)
    return code, out.getvalue()


async def test_watch_of_a_finished_batch_prints_its_outcome(served: Served) -> None:
    async with served.http() as http:
        batch = await create_batch(http, 3)
        await read_stream(http, batch["id"])  # until it is over
        detail = (await http.get(f"/api/v1/generation/batch/{batch['id']}")).json()
    code, output = await _watch_here(served, batch["id"])
    assert code == 0
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"batch {batch['id']} {detail['status']}: {detail['completed_items']} completed, ")
    assert not last.endswith(" in —")  # the real duration, even when it ended before we looked


async def test_watch_of_an_unknown_batch_says_so_and_exits_2(served: Served) -> None:
    code, output = await _watch_here(served, "7d2c5a0e-3b7e-4a53-9d6c-0d1b7c4f2e11")
    assert (code, output.strip()) == (2, "404 NOT_FOUND: Batch 7d2c5a0e-3b7e-4a53-9d6c-0d1b7c4f2e11 does not exist.")


async def test_watch_of_a_server_that_is_down_says_so_in_one_line_and_exits_2(served: Served) -> None:
    """Not a 300-line traceback: where it looked, and why it found nothing."""
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    code, output = await _watch(served, "7d2c5a0e-3b7e-4a53-9d6c-0d1b7c4f2e11", "--url", url, "--token", "t")
    assert code == 2
    assert output.strip().splitlines() == [
        f"cannot reach {url}: connection refused (is `livebatch serve` running there?)"
    ], output


async def test_watch_says_reconnecting_during_an_outage_and_goes_on_to_the_end(served: Served, proxy: Proxy) -> None:
    async with served.http() as http:
        # A third of attempts fail here: the error-rate guard (issue 13) could pause it, and `watch` wait for good.
        batch = await create_batch(http, 30, error_rate_guard=False)
        assert (await control(http, batch["id"], "pause")).status_code == 200  # nothing ends meanwhile
        out = io.StringIO()
        watching = asyncio.create_task(
            watch_remote(Console(file=out, width=80), proxy.url, served.people["faculty"].token, batch["id"])
        )
        await wait_for_metric(http, "livebatch_open_streams", lambda n: n >= 1)  # it has the batch and its stream
        proxy.cut()  # the network drops the stream; the client reconnects through it
        await wait_until(lambda: _async("connection lost, reconnecting…" in out.getvalue()))
        assert (await control(http, batch["id"], "resume")).status_code == 200
        code = await asyncio.wait_for(watching, 90)
    lines = out.getvalue().strip().splitlines()
    assert "connection lost, reconnecting…" in lines and "reconnected" in lines, lines
    assert lines.index("connection lost, reconnecting…") < lines.index("reconnected")
    # The summary line, then what the batch used (issue 13).
    assert re.fullmatch(rf"batch {batch['id']} \w+: \d+ completed, \d+ failed of 30 in \S+, .* tokens, .+", lines[-1])
    assert code in (0, 1)


async def _async(value: bool) -> bool:
    return value
