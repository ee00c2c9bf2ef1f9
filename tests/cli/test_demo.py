"""`make demo`: the server starts, a demo batch runs, and the sign-in link it prints lands on that batch's page;
the batch is one to watch (minutes long, with failures); a taken port moves it, and every link and command
it prints names the port it really has."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from livebatch.batches import service
from livebatch.batches.status import ACTIVE
from livebatch.cli import DEMO_USER
from livebatch.config import Settings
from livebatch.courses.service import seed_demo_courses
from livebatch.db import Database
from livebatch.demo import DEMO_COUNT, demo_settings, expected_ms, served_url
from livebatch.users.models import Role
from livebatch.users.service import ensure_user
from tests.batches.conftest import spec
from tests.checks import Unqueued, load_batch, wait_until
from tests.cli.conftest import LIVEBATCH
from tests.conftest import Backend, free_port

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/auth/login\?token=\S+)")
DEMO_BATCH = re.compile(r"Demo batch (?P<id>[0-9a-f-]{36}): (?P<count>\d+) items")


async def _leave_demo_batches_running(db: Database, count: int) -> None:
    """What earlier demos stopped with Ctrl-C leave behind: active batches of the demo user."""
    async with Unqueued(db).begin() as uow:
        await seed_demo_courses(uow.session)
        owner = await ensure_user(uow.session, DEMO_USER, Role.faculty)
        for _ in range(count):
            await service.create_batch(uow, spec(1), owner=owner, limits=service.Limits(), now=owner.created_at)
        await uow.commit()


async def test_demo_starts_even_after_earlier_demos_and_its_link_lands_on_the_running_batch(
    backend: Backend, env_for: Callable[..., dict[str, str]], db: Database, tmp_path: Path
) -> None:
    if backend.scaled:
        pytest.skip("make demo runs the embedded default; scaled out, its work needs `livebatch worker`")
    await _leave_demo_batches_running(db, service.Limits().max_active_batches)
    port = free_port()
    env = env_for(
        {"public_url": f"http://127.0.0.1:{port}"},
        LIVEBATCH_OFFLINE_LATENCY_MS="20",
        LIVEBATCH_OFFLINE_FAILURE_RATE="0",
    )
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        demo = subprocess.Popen(
            [LIVEBATCH, "demo", "--port", str(port), "--count", "6"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:

        async def link_printed() -> bool:
            assert demo.poll() is None, log.read_text()[-3000:]
            return LINK.search(log.read_text()) is not None

        await wait_until(link_printed, timeout=60)
        output = log.read_text()
        link = LINK.search(output)
        printed = DEMO_BATCH.search(output)
        assert link is not None and printed is not None, output
        batch_id = printed["id"]

        async with httpx.AsyncClient(timeout=10) as browser:
            page = await browser.get(link[1], follow_redirects=True)
            assert page.status_code == 200
            assert page.url.path == f"/faculty/generate/batch/{batch_id}"
            again = await browser.get(link[1])  # the link works once
            assert again.status_code == 401

        async def finished() -> bool:
            return (await load_batch(db, batch_id)).status not in ACTIVE

        await wait_until(finished, timeout=60)
        done = await load_batch(db, batch_id)
        assert done.completed_items == 6
        # The demo shows what a batch costs: its offline model is priced unless LIVEBATCH_PRICES says otherwise.
        assert "Prices (USD, LIVEBATCH_PRICES): offline: 0.15/0.6 per million tokens" in output
        assert done.cost_nanos > 0 and done.unpriced_attempts == 0 and done.prompt_tokens > 0

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert await asyncio.to_thread(demo.wait, 30) == 0, log.read_text()[-3000:]
        assert "Traceback" not in log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(10)


def test_the_demo_batch_is_one_to_watch_with_failures_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A newcomer who opens the link must find the batch running (60 items were over in 29 s), and see the
    error states (no item failed for good with the library's defaults)."""
    for name in [name for name in os.environ if name.startswith("LIVEBATCH_")]:
        monkeypatch.delenv(name)
    settings = demo_settings(Settings())
    assert 90_000 <= expected_ms(settings, DEMO_COUNT) <= 180_000, "a couple of minutes"
    assert settings.max_attempts == 2 and settings.offline_failure_rate >= 0.2
    permanent = DEMO_COUNT * settings.offline_failure_rate**settings.max_attempts
    assert 3 <= permanent <= 8, f"a few items fail for good: {permanent:.1f} expected"
    # What the environment sets wins; the library's defaults (which the tests rely on) are untouched.
    assert demo_settings(Settings(offline_failure_rate=0.0)).offline_failure_rate == 0.0
    assert Settings().max_attempts == 3
    assert demo_settings(Settings(provider="openai")).max_attempts == 3


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8001"),
        ("http://localhost:8000/", "http://localhost:8001"),
        ("https://livebatch.example.edu", "https://livebatch.example.edu"),  # a proxy in front: its URL
    ],
)
def test_the_printed_url_is_the_port_served(public_url: str, expected: str) -> None:
    assert served_url(Settings(public_url=public_url), "127.0.0.1", 8001) == expected


@contextmanager
def _taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_second_demo_moves_to_the_next_port_and_every_link_and_command_names_it(
    backend: Backend, env_for: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    if backend.scaled:
        pytest.skip("make demo runs the embedded default; scaled out, its work needs `livebatch worker`")
    with _taken_port() as taken:
        # The defaults for the URL (:8000) and for what the demo chooses itself (its latency and failures).
        chosen = ("LIVEBATCH_PUBLIC_URL", "LIVEBATCH_OFFLINE_LATENCY_MS", "LIVEBATCH_OFFLINE_FAILURE_RATE")
        env = {k: v for k, v in env_for().items() if k not in (*chosen, "LIVEBATCH_MAX_ATTEMPTS")}
        log = tmp_path / "demo.log"
        with log.open("w") as out:
            demo = subprocess.Popen(
                [LIVEBATCH, "demo", "--port", str(taken), "--count", "2"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:

            async def link_printed() -> bool:
                assert demo.poll() is None, log.read_text()[-3000:]
                return "A new link any time" in log.read_text()

            await wait_until(link_printed, timeout=60)
            output = log.read_text()
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
    ports = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", output)}
    assert taken not in ports and len(ports) == 1, output
    (served,) = ports
    assert f"Port {taken} is taken: serving on {served} instead." in output
    assert re.search(
        r"Demo batch \S+: 2 items for Cardiovascular Pathology, running now; it takes about \d+ seconds", output
    )
    assert "fail on purpose" in output and "Retry failed" in output
    watch = re.search(r"Or in a terminal:  (\S+) watch (\S+) --url (\S+)", output)
    assert watch is not None and watch[3] == f"http://127.0.0.1:{served}", output
    assert watch[1].endswith("livebatch") and "/bin/" in watch[1], "the project's own livebatch, not one on PATH"
    # The command for a new link, run as printed, prints a link to this port.
    line = re.search(r"A new link any time: (.+?) login-link", output)
    assert line is not None, output
    words = shlex.split(line[1])
    assigned = dict(word.split("=", 1) for word in words if "=" in word)
    assert assigned == {"LIVEBATCH_PUBLIC_URL": f"http://127.0.0.1:{served}"}
    cli = [word for word in words if "=" not in word]
    done = subprocess.run(
        [*cli, "login-link"], env=env | assigned, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().startswith(f"http://127.0.0.1:{served}/auth/login?token=")
    assert os.path.exists(cli[0])
