"""Fixtures for tests that only make sense scaled out: real `livebatch serve --no-worker` and
`livebatch worker` subprocesses on the real PostgreSQL and Redis, a private `redis-server` a test may
kill and restart, a TCP proxy a test may cut, an SSE follower that fails over between instances, and a
Prometheus scraper. In the embedded run these tests are skipped (they need PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import SSEError, aconnect_sse
from prometheus_client.parser import text_string_to_metric_families

from livebatch.config import Settings
from livebatch.db import Database
from tests.checks import event_log
from tests.conftest import LiveFactory, LiveProcess, free_port

NOT_STREAMED = frozenset({"batch.progress", "heartbeat"})  # derived, never logged


@pytest.fixture(autouse=True)
def _scaled_only(request: pytest.FixtureRequest) -> None:
    if request.config.getoption("--backend") != "scaled":
        pytest.skip("needs PostgreSQL and Redis: runs with --backend=scaled (make test-scaled)")


# --- processes ------------------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float, what: str) -> float:
    """Polls until `predicate` holds; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what}: not after {timeout}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=1) as http:
            return (await http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class Cluster:
    """API instances and workers as subprocesses, started without blocking the event loop. Each binds
    a port the system picks (port 0) and the test reads it from the process's JSON log: a port picked
    here and bound there could be taken in between by another process of this shared machine."""

    start_process: LiveFactory
    apis: list[LiveProcess] = field(default_factory=list)
    workers: list[LiveProcess] = field(default_factory=list)
    metrics_ports: dict[int, int] = field(default_factory=dict)  # id(worker) -> port

    async def start(self, settings: Settings, *, apis: int = 0, workers: int = 0) -> None:
        assert settings.log_format != "text", "the cluster reads ports from JSON logs"
        started = [
            self.start_process(settings, "serve", "--no-worker", "--host", "127.0.0.1", "--port", "0", wait=False)
            for _ in range(apis)
        ]
        self.apis += started
        new_workers = [
            self.start_process(settings, "worker", "--metrics-port", "0", wait=False) for _ in range(workers)
        ]
        self.workers += new_workers
        for api in started:
            api.port = await self._logged_port(api, r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
            await self.wait_up(api, f"{api.base_url}/healthz")
        for worker in new_workers:
            self.metrics_ports[id(worker)] = await self._logged_port(worker, r'"worker up".*"metrics_port": (\d+)')

    @staticmethod
    async def _logged_port(proc: LiveProcess, pattern: str, timeout: float = 60) -> int:
        found: list[int] = []

        async def logged() -> bool:
            assert proc.process is not None
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.process.returncode}:\n{proc.log()}")
            match = re.search(pattern, proc.log_path.read_text(errors="replace"))
            if match:
                found.append(int(match.group(1)))
            return bool(found)

        await wait_until(logged, timeout=timeout, what=f"{proc.args[0]} to log its port")
        return found[0]

    @staticmethod
    async def wait_up(proc: LiveProcess, url: str, timeout: float = 60) -> None:
        async def up() -> bool:
            assert proc.process is not None
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.process.returncode}:\n{proc.log()}")
            return await _answers(url)

        await wait_until(up, timeout=timeout, what=f"{proc.args[0]} up at {url}")

    def worker_metrics_url(self, worker: LiveProcess) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[id(worker)]}/metrics"

    def processes(self) -> list[LiveProcess]:
        return [*self.apis, *self.workers]


@pytest.fixture
def cluster(live_process: LiveFactory) -> Cluster:
    return Cluster(live_process)


def json_log_lines(proc: LiveProcess) -> list[dict[str, Any]]:
    """Every line a process logged, parsed: fails on any line that is not one JSON object."""
    lines = proc.log_path.read_text(errors="replace").splitlines()
    parsed = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"{proc.log_path.name}: not a JSON log line: {line[:200]!r}") from None
        assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


# --- a private Redis, and a TCP proxy -------------------------------------------------------------------


@dataclass
class RedisServer:
    """A `redis-server` of this test's own, with no persistence, that may be killed and restarted on the
    same port (the shared one on 6379 is never touched)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_up(self) -> None:
        async def pong() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise TimeoutError(f"redis-server exited with {self.process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                return False
            writer.close()
            return True

        await wait_until(pong, timeout=10, what="private redis-server")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    directory = tmp_path / "redis"
    directory.mkdir()
    for _ in range(3):  # the free port may be taken before redis-server binds it: try another
        server = RedisServer(directory)
        server.start()
        try:
            await server.wait_up()
            break
        except TimeoutError:
            server.kill()
    else:
        pytest.fail(f"could not start redis-server:\n{(directory / 'redis.log').read_text()[-2000:]}")
    yield server
    server.kill()


class TcpProxy:
    """Forwards a local port to `target`; `cut()` drops every connection and refuses new ones until
    `restore()`. Runs on the test's event loop."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0  # the system picks one at the first start; a restore binds it again
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()


@pytest.fixture
async def pg_proxy(backend: Any) -> AsyncIterator[TcpProxy]:
    url = httpx.URL(backend.pg_admin_url.replace("+asyncpg", ""))
    proxy = TcpProxy(url.host, url.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.cut()


# --- following a batch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    name: str
    id: int | None
    data: dict[str, Any]
    instance: str
    at: float


class Follower:
    """Follows a batch's progress stream like a browser behind a load balancer: it reconnects with the
    last id it saw whenever a stream ends before `batch.complete`, moving on to the next instance."""

    def __init__(self, urls: list[str], token: str, batch_id: str, *, after: int | None = 0) -> None:
        self.urls, self.token, self.batch_id = urls, token, batch_id
        self.last = after
        self.current = 0
        self.events: list[Received] = []
        self.ends: list[tuple[str, str]] = []  # (instance, "clean" or the error)
        self.complete = asyncio.Event()
        self._changed = asyncio.Event()

    async def run(self) -> None:
        path = f"/api/v1/generation/batch/{self.batch_id}/progress"
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            while not self.complete.is_set():
                url = self.urls[self.current]
                headers = {"Authorization": f"Bearer {self.token}", "Accept": "text/event-stream"}
                if self.last is not None:
                    headers["Last-Event-ID"] = str(self.last)
                try:
                    async with aconnect_sse(http, "GET", url + path, headers=headers) as source:
                        if source.response.status_code == 204:
                            self.ends.append((url, "204"))
                            self.complete.set()
                            return
                        source.response.raise_for_status()
                        async for sse in source.aiter_sse():
                            event_id = int(sse.id) if sse.id else None
                            self.events.append(
                                Received(sse.event, event_id, json.loads(sse.data), url, time.monotonic())
                            )
                            if event_id is not None:
                                self.last = event_id
                            self._changed.set()
                            if sse.event == "batch.complete":
                                self.complete.set()
                                return
                    self.ends.append((url, "clean"))
                except (httpx.TransportError, SSEError) as exc:
                    self.ends.append((url, f"error: {exc!r}"))
                self.current = (self.current + 1) % len(self.urls)
                await asyncio.sleep(0.05)

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e.name == name)

    async def wait_for(self, predicate: Callable[[Follower], bool], *, timeout: float, what: str) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                if self.complete.is_set():
                    raise AssertionError(f"the batch ended before {what}")
                self._changed.clear()
                await self._changed.wait()

    def logged(self) -> list[tuple[int | None, str, dict[str, Any]]]:
        """What the client received of the logged events, in the order received."""
        return [(e.id, e.name, e.data) for e in self.events if e.name not in NOT_STREAMED]


@contextlib.asynccontextmanager
async def following(urls: list[str], token: str, batch_id: str) -> AsyncIterator[Follower]:
    follower = Follower(urls, token, batch_id)
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def assert_received_exactly_the_log(follower: Follower, db: Database) -> int:
    """Every logged event reached the client once, in seq order; returns how many."""
    log = await event_log(db, follower.batch_id)
    received = follower.logged()
    ids = [event_id or 0 for event_id, _, _ in received]
    duplicates = len(ids) - len(set(ids))
    assert duplicates == 0, f"{duplicates} events received twice"
    assert ids == sorted(ids), "events out of order"
    assert received == [(seq, name, payload) for seq, name, payload in log], "the stream and the log differ"
    return len(received)


# --- metrics --------------------------------------------------------------------------------------------


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
