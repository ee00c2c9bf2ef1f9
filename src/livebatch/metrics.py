"""Prometheus metrics, registries per process's parts (several apps in one test process do not mix figures).

Two kinds. Process figures (open streams, events delivered, generation latency) count what this process
did: an API instance serves them at `/metrics`, a worker on `livebatch worker --metrics-port`; sum them
over instances. Cluster figures (items by status, batches, queue depth) come from the database at scrape
time, summed from the batches' counters (no scan of the items): every API instance reports the same
values whichever process did the work, so aggregate them with `max`, not `sum`.

The standard `process_*` figures (open file descriptors, resident memory, CPU) and the count of asyncio
tasks come with each process's own: a leak of connections, streams or tasks shows as a line that only
grows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    start_http_server,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # this process
        self.cluster = CollectorRegistry()  # from the database
        self.open_streams = Gauge(
            "livebatch_open_streams", "Progress streams open on this process.", registry=self.registry
        )
        self.events_delivered = Counter(
            "livebatch_events_delivered",
            "SSE events written to clients, by event name.",
            ["event"],
            registry=self.registry,
        )
        self.stream_cutoffs = Counter(
            "livebatch_stream_cutoffs",
            "Streams cut off because the client fell too far behind: its buffer filled (`buffer_full`), "
            "or its socket accepted nothing for the send timeout (`send_timeout`).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("buffer_full", "send_timeout"):
            self.stream_cutoffs.labels(reason)  # exported as 0 from the start
        self.bus_subscribers = Gauge(
            "livebatch_bus_subscribers",
            "Subscriptions to the live fan-out on this process (one per open stream).",
            registry=self.registry,
        )
        self.generation_seconds = Histogram(
            "livebatch_generation_seconds",
            "Duration of one generation attempt, by outcome.",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
            registry=self.registry,
        )
        self.asyncio_tasks = Gauge(
            "livebatch_asyncio_tasks", "Asyncio tasks alive in this process's event loop.", registry=self.registry
        )
        ProcessCollector(registry=self.registry)
        self.items = Gauge("livebatch_items", "Items of all batches, by status.", ["status"], registry=self.cluster)
        self.batches = Gauge("livebatch_batches", "Batches, by status.", ["status"], registry=self.cluster)
        self.queue_depth = Gauge(
            "livebatch_queue_depth",
            "Items dispatched to the work queue and not yet claimed.",
            registry=self.cluster,
        )
        self._server: Any = None

    def watch_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Counts the tasks of `loop` at each scrape (a worker's scrapes come from another thread)."""
        self.asyncio_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))

    def serve_process_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        """Serves this process's figures over HTTP from a thread (a worker has no web app); returns the
        port (the one the system chose, given 0)."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def observe_generation(self, seconds: float, outcome: str) -> None:
        self.generation_seconds.labels(outcome).observe(seconds)

    def render(self, *, items: Mapping[str, int], batches: Mapping[str, int], queue_depth: int) -> bytes:
        """Sets the cluster gauges to figures read from the database, and renders the text exposition format."""
        for status, value in items.items():
            self.items.labels(status).set(value)
        self.batches.clear()
        for status, n in batches.items():
            self.batches.labels(status).set(n)
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry) + generate_latest(self.cluster)

    def render_process(self) -> bytes:
        return generate_latest(self.registry)
