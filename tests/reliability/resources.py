"""What a server process holds, read from its /metrics: file descriptors, asyncio tasks, subscriptions to
the fan-out, open streams and resident memory. Compared before and after a load, they show a leak."""

from __future__ import annotations

from dataclasses import dataclass

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
