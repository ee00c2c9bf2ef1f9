"""Records real event sequences for the reducer's tests (`tests/js/fixtures/*.json`).

Runs `livebatch serve` on a scratch database with the offline provider failing often, drives batches
through the API and keeps what a browser would see: the batch API's answers at the start, in the middle
and at the end, every SSE message as `EventSource` reports it (a heartbeat repeats the previous event's
id there, which is exactly what the page must ignore), and, as `refreshes`, the batch API's answer read
right after each event that makes the page read the batch again (a batch event, or the first
`item.started` of a batch it knows as queued), with that event's id. Run it again only to refresh the
fixtures:

    .venv/bin/python -m tests.web.record_events
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from tests.conftest import free_port

FIXTURES = Path(__file__).parents[1] / "js" / "fixtures"
# After these the page reads the batch again: what they did to its status, controls and rows is the server's.
BATCH_EVENTS = {"batch.paused", "batch.resumed", "batch.retried", "batch.complete"}


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "livebatch", *args], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Reads:
    """The batch API's answers the page would have read during the streams, and the status it last knew."""

    status: str
    refreshes: list[dict[str, Any]] = field(default_factory=list)

    def asks(self, name: str) -> bool:
        """Whether the page reads the batch again after this event (reduce.js's `mustRead`)."""
        return name in BATCH_EVENTS or (name == "item.started" and self.status == "queued")


class Recorder:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def create(self, count: int) -> str:
        body = {
            "courseId": "course-uuid-1",
            "targetCount": count,
            "difficultyDistribution": {"easy": 30, "medium": 50, "hard": 20},
        }
        response = self.http.post("/api/v1/generation/batch", json=body)
        response.raise_for_status()
        batch_id: str = response.json()["id"]
        return batch_id

    def detail(self, batch_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/generation/batch/{batch_id}")
        response.raise_for_status()
        detail: dict[str, Any] = response.json()
        return detail

    def post(self, batch_id: str, action: str) -> None:
        self.http.post(f"/api/v1/generation/batch/{batch_id}/{action}").raise_for_status()

    def stream(self, batch_id: str, after: int, reads: Reads, on_event: Any = None) -> list[dict[str, Any]]:
        """Every message until `batch.complete`, as (event, id, data); the batch read again where the page
        would read it, before anything else happens (`on_event` drives the batch)."""
        events: list[dict[str, Any]] = []
        url = f"/api/v1/generation/batch/{batch_id}/progress"
        with connect_sse(self.http, "GET", url, params={"lastEventId": str(after)}) as source:
            for message in source.iter_sse():
                events.append({"event": message.event, "id": message.id, "data": message.data})
                if reads.asks(message.event):
                    detail = self.detail(batch_id)
                    reads.status = detail["status"]
                    reads.refreshes.append({"after": int(message.id), "detail": detail})
                if on_event is not None:
                    on_event(message.event, events)
                if message.event == "batch.complete":
                    break
        return events


def record_errors_and_retry(rec: Recorder) -> dict[str, Any]:
    """A batch with retried and finally failed items, then "Retry failed" until it ends again."""
    for _ in range(20):
        batch_id = rec.create(10)
        start = rec.detail(batch_id)
        reads = Reads(start["status"])
        middle: dict[str, Any] = {}

        def grab_middle(
            name: str, events: list[dict[str, Any]], batch_id: str = batch_id, middle: dict[str, Any] = middle
        ) -> None:
            if not middle and name == "item.completed" and sum(e["event"] == name for e in events) == 4:
                middle.update(rec.detail(batch_id))

        first = rec.stream(batch_id, start["lastEventId"], reads, grab_middle)
        ended = rec.detail(batch_id)
        failed_for_good = [e for e in first if e["event"] == "item.failed" and '"willRetry":false' in e["data"]]
        retried = [e for e in first if e["event"] == "item.failed" and '"willRetry":true' in e["data"]]
        if ended["status"] != "completed_with_errors" or not failed_for_good or not retried or not middle:
            continue
        rec.post(batch_id, "retry-failed")
        second = rec.stream(batch_id, ended["lastEventId"], reads)
        return {
            "about": "10 items, offline provider failing 35% of attempts, 2 attempts per item; "
            "retry-failed after the first end",
            "start": start,
            "middle": middle,
            "ended": ended,
            "final": rec.detail(batch_id),
            "events": first,
            "afterRetry": second,
            "refreshes": reads.refreshes,
        }
    raise RuntimeError("no batch ended with errors, retries and a final failure in 20 tries")


def record_pause_resume_cancel(rec: Recorder) -> dict[str, Any]:
    batch_id = rec.create(12)
    start = rec.detail(batch_id)
    reads = Reads(start["status"])
    state = {"paused": False, "resumed": False, "cancelled": False}

    def drive(name: str, events: list[dict[str, Any]]) -> None:
        completed = sum(e["event"] == "item.completed" for e in events)
        if not state["paused"] and completed >= 2:
            state["paused"] = True
            rec.post(batch_id, "pause")
        elif name == "batch.paused" and not state["resumed"]:
            state["resumed"] = True
            rec.post(batch_id, "resume")
        elif state["resumed"] and not state["cancelled"] and completed >= 5:
            state["cancelled"] = True
            rec.post(batch_id, "cancel")

    events = rec.stream(batch_id, start["lastEventId"], reads, drive)
    return {
        "about": "12 items: paused after 2 completions, resumed, cancelled after 5",
        "start": start,
        "events": events,
        "final": rec.detail(batch_id),
        "refreshes": reads.refreshes,
    }


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
        env |= {
            "LIVEBATCH_DATA_DIR": data,
            "LIVEBATCH_OFFLINE_LATENCY_MS": "120",
            "LIVEBATCH_OFFLINE_FAILURE_RATE": "0.35",
            "LIVEBATCH_MAX_ATTEMPTS": "2",
            "LIVEBATCH_RETRY_BASE_MS": "50",
            "LIVEBATCH_RETRY_MAX_MS": "100",
            "LIVEBATCH_BATCH_CONCURRENCY": "3",
            "LIVEBATCH_HEARTBEAT_S": "0.3",
            "LIVEBATCH_PROGRESS_INTERVAL_MS": "100",
            "LIVEBATCH_LOG_FORMAT": "text",
        }
        _cli(env, "course", "add", "--id", "course-uuid-1", "--title", "Cardiovascular Pathology", "--code", "CVP-301")
        token = _cli(env, "token", "--user", "recorder@uni.example")
        server = subprocess.Popen(
            [sys.executable, "-m", "livebatch", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            rec = Recorder(base, token)
            FIXTURES.mkdir(parents=True, exist_ok=True)
            for name, recording in (
                ("errors-and-retry", record_errors_and_retry(rec)),
                ("pause-resume-cancel", record_pause_resume_cancel(rec)),
            ):
                path = FIXTURES / f"{name}.json"
                path.write_text(json.dumps(recording, indent=1) + "\n")
                print(f"{path}: {len(recording['events'])} events, {len(recording['refreshes'])} refreshes")
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
