"""Scaled out: 2 API instances and 1 worker on PostgreSQL and Redis, 2 000 streams split between the two.

The same load as bench/fanout.py's, spread: one `livebatch worker` runs the batch (offline provider, asked for
100 item events/s), two `livebatch serve --no-worker` instances each serve half of the streams of that batch
(a load generator per instance, its own process). Notices reach both instances over Redis pub/sub. Latency
is from the event's `created_at` to receipt: an upper bound, as the stamp is taken before the transaction
waits for the batch's row lock (the worker's attempts at one batch take turns on it); CPU is each
instance's own over the window, per item event delivered by that instance. The README's estimate for
10 000 and 100 000 streams is made of these per-instance figures. Reported only: the targets are the
embedded ones of bench/fanout.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from pydantic import SecretStr

from bench.common import PG_URL, Figure, free_port, percentile
from bench.fanout import (
    LATENCY_MS,
    RATE,
    SECRET,
    Server,
    _env,
    _faculty_token,
    _logged_events,
    _measured,
    _raise_nofile,
    _read,
    paused_batch,
)
from bench.scratch import _admin
from livebatch.migrate import upgrade_async

REDIS_URL = "redis://127.0.0.1:6379/0"
INSTANCES = 2
CONCURRENCY = 20


def run(quick: bool) -> list[Figure]:
    per_instance = 10 if quick else 1000
    window = 1.5 if quick else 6.0
    name = f"lbbench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f"CREATE DATABASE {name}"))
    try:
        url = f"{PG_URL.rpartition('/')[0]}/{name}"
        asyncio.run(upgrade_async(url))
        with tempfile.TemporaryDirectory(prefix="bench-scaled-") as tmp:
            return measure(url, Path(tmp), per_instance, window)
    finally:
        asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def measure(url: str, tmp: Path, per_instance: int, window: float) -> list[Figure]:
    from livebatch.config import Settings

    prefix = f"lbbench-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp, database_url=url, redis_url=REDIS_URL, jwt_secret=SecretStr(SECRET))
    token = asyncio.run(_faculty_token(settings))
    count = int(window * RATE * 2) + 100
    env = _env(
        LIVEBATCH_DATA_DIR=str(tmp),
        LIVEBATCH_DATABASE_URL=url,
        LIVEBATCH_REDIS_URL=REDIS_URL,
        LIVEBATCH_REDIS_PREFIX=prefix,
        LIVEBATCH_JWT_SECRET=SECRET,
        LIVEBATCH_OFFLINE_LATENCY_MS=str(LATENCY_MS),
        LIVEBATCH_OFFLINE_FAILURE_RATE="0",
        LIVEBATCH_BATCH_CONCURRENCY=str(CONCURRENCY),
        LIVEBATCH_MAX_CONCURRENCY=str(CONCURRENCY),
        # The per-user stream limit holds across the instances together (Redis), so it must admit them all.
        LIVEBATCH_MAX_STREAMS_PER_USER=str(INSTANCES * per_instance + 10),
        LIVEBATCH_MAX_TARGET_COUNT=str(count),
        LIVEBATCH_MAX_ITEMS_PER_DAY=str(count),
        LIVEBATCH_LOG_LEVEL="WARNING",
        LIVEBATCH_LOG_FORMAT="json",
    )
    ports = [free_port() for _ in range(INSTANCES)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "livebatch", "worker"],
        env=env,
        stdout=(tmp / "worker.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    servers = [
        Server(["-m", "livebatch", "serve", "--no-worker", "--port", str(p)], env, tmp / f"serve-{p}.log", p)
        for p in ports
    ]
    try:
        for server in servers:
            server.__enter__()
        return _measure(servers, token, tmp, per_instance, window, count, settings)
    finally:
        for server in servers:
            if server.process is not None:
                server.__exit__()
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _measure(
    servers: list[Server], token: str, tmp: Path, per_instance: int, window: float, count: int, settings: object
) -> list[Figure]:
    api = f"http://127.0.0.1:{servers[0].port}/api/v1/generation"
    http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    batch_id = paused_batch(http, api, count)
    path = f"/api/v1/generation/batch/{batch_id}/progress"
    gens: list[subprocess.Popen[str]] = []
    for i, server in enumerate(servers):
        args = ["--port", str(server.port), "--path", path, "--token", token, "--streams", str(per_instance)]
        gens.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", *args, "--out", str(tmp / f"gen{i}")],
                env=_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=_raise_nofile,
            )
        )
    try:
        failed = []
        for gen in gens:
            assert gen.stdout is not None
            word, _, refused = gen.stdout.readline().split()
            assert word == "open", word
            failed.append(int(refused))
        cpu0, t0 = [s.cpu_s() for s in servers], time.time()
        http.post(f"{api}/batch/{batch_id}/resume").raise_for_status()
        time.sleep(window)
        cpu1, t1 = [s.cpu_s() for s in servers], time.time()
        http.post(f"{api}/batch/{batch_id}/cancel", timeout=180).raise_for_status()
        for gen in gens:
            assert gen.stdin is not None and gen.stdout is not None
            gen.stdin.write("finish 20\n")
            gen.stdin.flush()
            gen.stdout.readline()
            gen.wait(30)
    finally:
        for gen in gens:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    logged = asyncio.run(_logged_events(settings, batch_id))
    created_at = {seq: at for seq, (_, _, at) in logged.items()}
    figures: list[Figure] = []
    total = INSTANCES * per_instance
    for i, server in enumerate(servers):
        out = tmp / f"gen{i}"
        received = (_read(out / "seq.bin", "q"), _read(out / "t.bin", "d"), _read(out / "stream.bin", "i"))
        m = _measured(per_instance, (t0, t1), cpu1[i] - cpu0[i], 0.0, received, failed[i], created_at)
        at = f"{total} streams on {INSTANCES} API instances + 1 worker (PostgreSQL, Redis), instance {i + 1}"
        print(
            f"  instance {i + 1} ({server.port}): {m.emitted_per_s:.0f} item events/s emitted, "
            f"{m.delivered_per_s:.0f} delivered/s, {m.cpu_us_per_event:.1f} us CPU per delivered event, "
            f"{m.missing} deliveries missing, {m.streams_failed} streams refused",
            flush=True,
        )
        figures += [
            Figure(f"scaled p99 latency, {at}", percentile(m.latencies_ms, 99), "ms"),
            Figure(f"scaled server CPU per event, {at}", m.cpu_us_per_event, "us"),
        ]
        if i == 0:
            figures.append(Figure(f"scaled item events emitted, {at}", m.emitted_per_s, "/s"))
    return figures
