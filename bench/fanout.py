"""Fan-out: delivery latency, throughput, server CPU per event and memory per stream, N streams on one server.

A load generator (bench/loadgen.py, its own process) opens N progress streams of one batch on a
`livebatch serve` (SQLite, embedded) while the server runs that batch with the offline provider, asked for
100 item events/s. Latency is commit -> receipt: the commit time is when the event first became visible to
a reader polling the log every 2 ms (`CommitWatch`; an upper bound by at most one poll). The event's own
`created_at` is stamped before its transaction waits for SQLite's write lock, seconds early under load; the
latency from it is printed alongside. CPU is the server process's utime+stime over the measured window
divided by the item events delivered in it; memory is the server's RSS with N streams open minus before,
per stream. The baseline is a bare FastAPI + sse-starlette broadcaster (bench/bare_sse.py) sending the same
payloads from memory, loaded by the same load generator, at the item event rate livebatch reached: the
emitter shares the server's event loop with the fan-out, so under load it emits less than asked for.

`BENCH_FANOUT_SIZES=1000` runs one size; `BENCH_FANOUT_PROFILE=/tmp/x` records the servers with py-spy
over the window (raw collapsed stacks, /tmp/x.livebatch-N.txt, /tmp/x.bare_sse-N.txt, /tmp/x.raw_sse-N.txt).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlalchemy import select

from bench.common import Figure, free_port, percentile

SECRET = "bench-fanout-secret-0123456789-0123456789"
RATE = 100.0  # item events per second wanted; the server's database work caps what it reaches
LATENCY_MS = (
    150  # offline generation time: concurrency / latency = items/s (nominal; DB work slows it), two item events each
)
CONCURRENCY = 20
FINISH_TIMEOUT_S = 20.0
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    latencies_ms: list[float]
    delivered_per_s: float
    cpu_us_per_event: float
    rss_kib_per_stream: float
    emitted_per_s: float
    missing: int  # deliveries of window events that never arrived
    streams_failed: int


def run(quick: bool) -> list[Figure]:
    sizes = [5, 20] if quick else [10, 100, 1000, 5000]
    if os.environ.get("BENCH_FANOUT_SIZES"):  # e.g. "1000", to profile one size
        sizes = [int(n) for n in os.environ["BENCH_FANOUT_SIZES"].split(",")]
    main = 1000 if 1000 in sizes else sizes[-1]
    window = 1.5 if quick else 6.0
    figures: list[Figure] = []
    emitted: dict[int, float] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
            lb, payloads = measure_livebatch(n, window, Path(tmp))
            emitted[n] = lb.emitted_per_s
            if quick and n != main:
                continue  # quick: the small size is there for the emission ratio only
            if n > main:
                # Past the main size the baselines, asked for the rate livebatch reaches, fall so far behind
                # that they do not stop within minutes (sse-starlette at 5 000 streams): livebatch alone.
                print(
                    f"  N={n} livebatch: {lb.emitted_per_s:.0f} item events/s emitted, "
                    f"{lb.cpu_us_per_event:.1f} us CPU per delivered event",
                    flush=True,
                )
                figures += alone_figures(n, lb)
                continue
            # At the rate livebatch reached, so that all three serve the same work.
            base = measure_baseline(n, window, Path(tmp), payloads, lb.emitted_per_s)
            raw = measure_baseline(n, window, Path(tmp), payloads, lb.emitted_per_s, server=RAW)
        for label, m in (("livebatch", lb), ("sse-starlette", base), ("raw asyncio", raw)):
            print(
                f"  N={n} {label}: {m.emitted_per_s:.0f} item events/s emitted, {m.delivered_per_s:.0f} delivered/s,"
                f" {m.cpu_us_per_event:.1f} us CPU per delivered event, {m.missing} deliveries missing,"
                f" {m.streams_failed} streams refused",
                flush=True,
            )
        figures += figures_for(n, lb, base, raw, main=n == main)
        if n == main and not quick:
            # Can the target be met on this machine at all? Each baseline alone, asked for the full rate.
            for name, server in (("sse-starlette", BARE), ("raw asyncio", RAW)):
                with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
                    alone = measure_baseline(n, window / 2, Path(tmp), payloads, RATE, server=server)
                at = f"{n} streams, {name} alone at {RATE:.0f} item events/s"
                figures += [
                    Figure(f"fanout p99 latency, {at}", percentile(alone.latencies_ms, 99), "ms"),
                    Figure(f"fanout item events emitted, {at}", alone.emitted_per_s, "/s"),
                    Figure(f"fanout server CPU per event, {at}", alone.cpu_us_per_event, "us"),
                ]
    small = sizes[0]
    if main != small:
        figures.append(
            Figure(
                f"fanout item events emitted (embedded), {main} streams (baseline: {small} streams)",
                emitted[main],
                "/s",
                emitted[small],
                target=("ratio>=", 0.8),
            )
        )
    return figures


def alone_figures(n: int, lb: Measured) -> list[Figure]:
    """livebatch's figures at `n` streams, without baselines."""
    at = f"{n} streams (no baseline)"
    return [
        Figure(f"fanout p50 latency, {at}", percentile(lb.latencies_ms, 50), "ms"),
        Figure(f"fanout p99 latency, {at}", percentile(lb.latencies_ms, 99), "ms"),
        Figure(f"fanout item events emitted, {at}", lb.emitted_per_s, "/s"),
        Figure(f"fanout events delivered, {at}", lb.delivered_per_s, "/s"),
        Figure(f"fanout server CPU per event, {at}", lb.cpu_us_per_event, "us"),
        Figure(f"fanout memory per idle open stream, {at}", lb.rss_kib_per_stream, "KiB"),
    ]


def figures_for(n: int, lb: Measured, base: Measured, raw: Measured, *, main: bool) -> list[Figure]:
    """Each figure against the sse-starlette broadcaster; latency, CPU and memory also against raw asyncio."""
    at = f"{n} streams"
    floor = f"{at} (baseline: raw asyncio)"
    p99 = percentile(lb.latencies_ms, 99)
    return [
        Figure(f"fanout p50 latency, {at}", percentile(lb.latencies_ms, 50), "ms", percentile(base.latencies_ms, 50)),
        Figure(
            f"fanout p99 latency, {at}",
            p99,
            "ms",
            percentile(base.latencies_ms, 99),
            target=("<", 100) if main else None,
        ),
        Figure(f"fanout p99 latency, {floor}", p99, "ms", percentile(raw.latencies_ms, 99)),
        Figure(f"fanout max latency, {at}", max(lb.latencies_ms, default=0), "ms", max(base.latencies_ms, default=0)),
        Figure(f"fanout item events emitted, {at}", lb.emitted_per_s, "/s", base.emitted_per_s),
        Figure(f"fanout events delivered, {at}", lb.delivered_per_s, "/s", base.delivered_per_s),
        Figure(
            f"fanout server CPU per event, {at}",
            lb.cpu_us_per_event,
            "us",
            base.cpu_us_per_event,
            target=("ratio<=", 1.0) if main else None,
        ),
        Figure(f"fanout server CPU per event, {floor}", lb.cpu_us_per_event, "us", raw.cpu_us_per_event),
        Figure(
            f"fanout memory per idle open stream, {at}",
            lb.rss_kib_per_stream,
            "KiB",
            base.rss_kib_per_stream,
            target=("<=", 30) if main else None,
        ),
        Figure(f"fanout memory per idle open stream, {floor}", lb.rss_kib_per_stream, "KiB", raw.rss_kib_per_stream),
    ]


# --- livebatch ----------------------------------------------------------------------------------------------


def measure_livebatch(n: int, window: float, tmp: Path) -> tuple[Measured, list[tuple[str, str]]]:
    from livebatch.config import Settings
    from livebatch.migrate import upgrade

    data = tmp / "data"
    settings = Settings(data_dir=data, jwt_secret=SecretStr(SECRET))
    upgrade(settings.effective_database_url)
    token = asyncio.run(_faculty_token(settings))
    count = int(window * RATE * 2) + 100  # items: never all done within the window, whatever the rate reached
    env = _env(
        LIVEBATCH_DATA_DIR=str(data),
        LIVEBATCH_JWT_SECRET=SECRET,
        LIVEBATCH_OFFLINE_LATENCY_MS=str(LATENCY_MS),
        LIVEBATCH_OFFLINE_FAILURE_RATE="0",
        LIVEBATCH_BATCH_CONCURRENCY=str(CONCURRENCY),
        LIVEBATCH_MAX_STREAMS_PER_USER=str(n + 10),
        LIVEBATCH_MAX_TARGET_COUNT=str(count),
        LIVEBATCH_MAX_ITEMS_PER_DAY=str(count),
        LIVEBATCH_LOG_LEVEL="WARNING",
        LIVEBATCH_LOG_FORMAT="json",
        LIVEBATCH_SERVE_METRICS="true",  # the delivered-events figure is read from /metrics
    )
    port = free_port()
    headers = {"Authorization": f"Bearer {token}"}
    api = f"http://127.0.0.1:{port}/api/v1/generation"
    with Server(["-m", "livebatch", "serve", "--port", str(port)], env, tmp / "serve.log", port) as server:
        http = httpx.Client(headers=headers, timeout=30)
        batch_id = paused_batch(http, api, count)
        path = f"/api/v1/generation/batch/{batch_id}/progress"
        watch = CommitWatch(data / "livebatch.db")

        def start() -> None:
            watch.start()
            http.post(f"{api}/batch/{batch_id}/resume").raise_for_status()

        try:
            window_s, cpu_s, rss, received, failed = _load(
                server,
                n,
                path,
                token,
                tmp / "lb",
                window,
                start=start,
                stop=lambda: cancel(http, f"{api}/batch/{batch_id}/cancel", n),
                label=f"livebatch-{n}",
            )
        finally:
            watch.stop()
        # What the server wrote, by event name: snapshots are writes of their own between item events.
        written = [
            ln for ln in http.get(f"http://127.0.0.1:{port}/metrics").text.splitlines() if "delivered_total{" in ln
        ]
        print(f"  N={n} livebatch frames written: {', '.join(ln.split('{', 1)[1] for ln in written)}", flush=True)
    logged = asyncio.run(_logged_events(settings, batch_id))
    committed = {seq: watch.seen[seq] for seq in logged if seq in watch.seen}
    payloads = [
        (name, data) for seq, (name, data, _) in sorted(logged.items()) if _inside(committed.get(seq, 0), window_s)
    ]
    stamped = _measured(n, window_s, cpu_s, rss, received, failed, {s: at for s, (_, _, at) in logged.items()})
    print(
        f"  N={n} livebatch from created_at (stamped before the transaction waits for SQLite's write lock):"
        f" p50 {percentile(stamped.latencies_ms, 50):.0f} ms, p99 {percentile(stamped.latencies_ms, 99):.0f} ms",
        flush=True,
    )
    return _measured(n, window_s, cpu_s, rss, received, failed, committed), payloads


async def _faculty_token(settings: object) -> str:
    from livebatch.auth import mint_token
    from livebatch.clock import utcnow
    from livebatch.config import Settings
    from livebatch.courses.service import seed_demo_courses
    from livebatch.db import Database
    from livebatch.users.models import Role
    from livebatch.users.service import ensure_user

    assert isinstance(settings, Settings)
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=0)
    try:
        async with db.session() as session:
            await seed_demo_courses(session)
            user = await ensure_user(session, "bench@uni.example", Role.faculty)
            await session.commit()
    finally:
        await db.dispose()
    return mint_token(settings, user, now=utcnow())


async def _logged_events(settings: object, batch_id: str) -> dict[int, tuple[str, str, float]]:
    """seq -> (name, payload, commit time) of the batch's item events."""
    from uuid import UUID

    from livebatch.config import Settings
    from livebatch.db import Database
    from livebatch.events.log import LogEntry

    assert isinstance(settings, Settings)
    db = Database(settings.effective_database_url, pool_size=1, max_overflow=0)
    try:
        async with db.read_session() as session:
            stmt = select(LogEntry.seq, LogEntry.name, LogEntry.payload, LogEntry.created_at).where(
                LogEntry.batch_id == UUID(batch_id), LogEntry.name.startswith("item.")
            )
            rows = (await session.execute(stmt)).all()
    finally:
        await db.dispose()
    return {seq: (name, payload, at.timestamp()) for seq, name, payload, at in rows}


def paused_batch(http: httpx.Client, api: str, count: int) -> str:
    """Creates a batch of `count` items and pauses it at once, so that streams open before its work starts."""
    body = {
        "courseId": "course-uuid-1",
        "targetCount": count,
        "questionType": "single-best-answer",
        "difficultyDistribution": {"easy": 30, "medium": 50, "hard": 20},
    }
    created = http.post(f"{api}/batch", json=body)
    created.raise_for_status()
    batch_id = str(created.json()["id"])
    http.post(f"{api}/batch/{batch_id}/pause").raise_for_status()
    return batch_id


# --- baseline -----------------------------------------------------------------------------------------------


BARE, RAW = "bench.bare_sse", "bench.raw_sse"


def measure_baseline(
    n: int, window: float, tmp: Path, payloads: list[tuple[str, str]], rate: float, *, server: str = BARE
) -> Measured:
    """`server`: the sse-starlette broadcaster (bench/bare_sse.py) or the raw asyncio one (bench/raw_sse.py)."""
    payload_file = tmp / "payloads.json"
    payload_file.write_text(json.dumps(payloads))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["-m", server, "--port", str(port), "--payloads", str(payload_file)]
    emitted: dict[int, float] = {}
    with Server(args, _env(), tmp / f"{server}.log", port) as process:
        http = httpx.Client(timeout=30)

        def stop() -> None:
            response = http.post(f"{base}/stop", timeout=180)  # an overloaded loop answers late
            response.raise_for_status()
            emitted.update({int(k): v for k, v in response.json()["emitted"].items()})

        window_s, cpu_s, rss, received, failed = _load(
            process,
            n,
            "/stream",
            "",
            tmp / "base",
            window,
            start=lambda: http.post(f"{base}/start", params={"rate": rate}).raise_for_status(),
            stop=stop,
            label=f"{server.removeprefix('bench.')}-{n}",
        )
    return _measured(n, window_s, cpu_s, rss, received, failed, emitted)


# --- shared -------------------------------------------------------------------------------------------------

Received = tuple["array[int]", "array[float]", "array[int]"]


def _load(
    server: Server,
    n: int,
    path: str,
    token: str,
    out: Path,
    window: float,
    *,
    start: object,
    stop: object,
    label: str,
) -> tuple[tuple[float, float], float, float, Received, int]:
    """Opens n streams, runs the emitter for `window` seconds, ends it; returns the window (unix times),
    the server CPU seconds in it, RSS KiB per stream, what the streams received, and refused streams."""
    assert callable(start) and callable(stop)
    rss_before = server.rss_kib()
    args = ["--port", str(server.port), "--path", path, "--token", token, "--streams", str(n), "--out", str(out)]
    gen = subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", *args],
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_raise_nofile,
    )
    try:
        assert gen.stdin is not None and gen.stdout is not None
        word, ok, failed = gen.stdout.readline().split()
        assert word == "open", word
        rss_per_stream = (server.rss_kib() - rss_before) / max(1, int(ok))
        cpu0, t0 = server.cpu_s(), time.time()
        start()
        profile = os.environ.get("BENCH_FANOUT_PROFILE")  # a py-spy flame graph of the server, this path
        if profile:
            spy = [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(server.pid),
                "--duration",
                str(int(window)),
                "--nonblocking",
            ]
            subprocess.run([*spy, "--format", "raw", "-o", f"{profile}.{label}.txt"], check=False)
        else:
            time.sleep(window)  # the measured window: the emitter runs for this long
        cpu1, t1 = server.cpu_s(), time.time()
        stop()
        gen.stdin.write(f"finish {FINISH_TIMEOUT_S}\n")
        gen.stdin.flush()
        gen.stdout.readline()
        gen.wait(30)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    received = (_read(out / "seq.bin", "q"), _read(out / "t.bin", "d"), _read(out / "stream.bin", "i"))
    return (t0, t1), cpu1 - cpu0, rss_per_stream, received, int(failed)


def cancel(http: httpx.Client, url: str, n: int) -> None:
    """Ends the emitter. The answer waits for the write lock and for an event loop busy with n streams:
    seconds at 5 000 streams, which is a finding of its own, printed."""
    started = time.monotonic()
    http.post(url, timeout=180).raise_for_status()
    print(f"  N={n} livebatch: the cancel was answered in {time.monotonic() - started:.1f}s", flush=True)


def _measured(
    n: int,
    window: tuple[float, float],
    cpu_s: float,
    rss_per_stream: float,
    received: Received,
    failed: int,
    committed: dict[int, float],
) -> Measured:
    t0, t1 = window
    seqs, times, _ = received
    in_window = {seq for seq, at in committed.items() if t0 <= at <= t1}
    latencies = [(t - committed[s]) * 1000 for s, t in zip(seqs, times, strict=True) if s in in_window]
    delivered = sum(1 for t in times if t0 <= t <= t1)
    return Measured(
        latencies_ms=latencies,
        delivered_per_s=delivered / (t1 - t0),
        cpu_us_per_event=cpu_s / max(1, delivered) * 1e6,
        rss_kib_per_stream=rss_per_stream,
        emitted_per_s=len(in_window) / (t1 - t0),
        missing=len(in_window) * (n - failed) - len(latencies),
        streams_failed=failed,
    )


def _inside(at: float, window: tuple[float, float]) -> bool:
    return window[0] <= at <= window[1]


def _read(path: Path, typecode: str) -> array:  # type: ignore[type-arg]
    values = array(typecode)
    with path.open("rb") as f:
        values.frombytes(f.read())
    return values


class CommitWatch:
    """When each event became visible in the database: polls the log every `POLL_S` from a thread. The
    `created_at` stamp is taken before the transaction, which can wait long for SQLite's write lock when the
    server is busy; the commit is what a stream can deliver from, so latency counts from here (from the
    poll before the one that saw it: early by at most one poll, so the latency is an upper bound)."""

    POLL_S = 0.002

    def __init__(self, db: Path) -> None:
        self.db = db
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="commit-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _poll(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            last = conn.execute("SELECT coalesce(max(seq), 0) FROM batch_events").fetchone()[0]
            before = time.time()
            while not self._stop.is_set():
                polled = time.time()
                for (seq,) in conn.execute("SELECT seq FROM batch_events WHERE seq > ? ORDER BY seq", (last,)):
                    # Committed after the previous poll began: that start makes the latency an upper bound.
                    self.seen[seq], last = before, seq
                before = polled
                self._stop.wait(self.POLL_S)
        finally:
            conn.close()


class Server:
    """A server subprocess on a port; its CPU time and RSS from /proc."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.args, self.env, self.log, self.port = args, env, log, port
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_raise_nofile,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.args} not up: {self.log.read_text()[-3000:]}")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def rss_kib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
        raise RuntimeError("no VmRSS")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
    root = Path(__file__).resolve().parents[1]  # this checkout's code, in every subprocess
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), str(root), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
