"""What a server process holds, read from its /metrics: file descriptors, asyncio tasks, subscriptions to
the fan-out, open streams and resident memory. Compared before and after a load, they show a leak."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
from sqlalchemy.engine import make_url

from livebatch.config import Settings
from tests.scaled.conftest import sample, scrape, wait_until


@dataclass(frozen=True)
class Resources:
    fds: int
    tasks: int
    subscribers: int
    streams: int
    rss_mb: float

    def __str__(self) -> str:
        return (
            f"{self.fds} fds, {self.tasks} tasks, {self.subscribers} subscriptions, {self.streams} streams, "
            f"{self.rss_mb:.1f} MB RSS"
        )


async def resources(base_url: str) -> Resources:
    samples = await scrape(f"{base_url}/metrics")
    return Resources(
        fds=int(sample(samples, "process_open_fds")),
        tasks=int(sample(samples, "livebatch_asyncio_tasks")),
        subscribers=int(sample(samples, "livebatch_bus_subscribers")),
        streams=int(sample(samples, "livebatch_open_streams")),
        rss_mb=sample(samples, "process_resident_memory_bytes") / 2**20,
    )


async def settled(base_url: str) -> Resources:
    """The server's resources once its last stream is gone (a disconnect is noticed within milliseconds)."""

    async def idle() -> bool:
        now = await resources(base_url)
        return now.streams == 0 and now.subscribers == 0

    await wait_until(idle, timeout=30, what="every stream to be released")
    return await resources(base_url)


def server_ports(settings: Settings) -> frozenset[int]:
    """The ports of the database and Redis servers a process of `settings` connects to (none on SQLite)."""
    ports: set[int] = set()
    if not settings.is_sqlite:
        ports.add(make_url(settings.effective_database_url).port or 5432)
    if settings.redis_url:
        ports.add(urlsplit(settings.redis_url).port or 6379)
    return frozenset(ports)


def pooled_connections(pid: int, ports: frozenset[int]) -> int:
    """Connections of process `pid` to the servers on `ports` (the database, Redis, the provider). Their pools
    open one per concurrent use and keep it, so they grow to the load's peak concurrency and stop there: a
    leak check counts them apart from the other descriptors and bounds them on their own."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for c in connections if c.raddr and c.raddr.port in ports and c.status == psutil.CONN_ESTABLISHED)


async def tasks_back_to(base_url: str, count: int) -> None:
    """Waits for the server's asyncio tasks to number `count` or fewer: a periodic sweep may be running at any
    one scrape, a leaked task stays."""

    async def back() -> bool:
        return (await resources(base_url)).tasks <= count

    await wait_until(back, timeout=10, what=f"asyncio tasks back to {count}")
