"""What a server process holds, read from its /metrics: file descriptors, asyncio tasks, subscriptions to
the fan-out, open streams and resident memory. Compared before and after a load, they show a leak."""

from __future__ import annotations

from dataclasses import dataclass

from tests.scaled.conftest import sample, scrape


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
