"""`make demo`: the server on the embedded default, a demo batch running, and a link to watch it.

The demo batch is made to be watched: long enough (about two minutes) that a newcomer who opens the link
finds it running, with attempts that fail and are retried and a few items that fail for good, so the
page's error states and "Retry failed" show. Those are the demo's settings (`DEMO_SETTINGS`), applied only
where the environment sets nothing; the library's defaults, which the tests rely on, stay as they are.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from rich.console import Console

from livebatch.app import create_app
from livebatch.batches import service
from livebatch.batches.schemas import BatchCreate, DifficultyDistribution
from livebatch.config import ModelPrice, Settings
from livebatch.courses.service import DEMO_COURSES, seed_demo_courses
from livebatch.generation.offline import OFFLINE_MODEL
from livebatch.migrate import upgrade_async
from livebatch.parts import Parts
from livebatch.serving import options as server_options
from livebatch.terminal import cli_command
from livebatch.users.models import Role
from livebatch.users.service import create_sign_in_link, ensure_user

DEMO_USER = "faculty@livebatch.local"
DEMO_PRICES = {OFFLINE_MODEL: ModelPrice(input=0.15, output=0.60)}
DEMO_COUNT = 80
# 80 items, 4 at a time, 5 s each (0.5-1.5x): about two minutes. A quarter of attempts fail, two attempts an
# item: about 1 item in 16 fails for good (5 of 80), and a fresh draw after "Retry failed" mostly succeeds.
DEMO_SETTINGS: dict[str, Any] = {"offline_latency_ms": 5000, "offline_failure_rate": 0.25, "max_attempts": 2}


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings where the environment sets none (an offline provider only)."""
    if settings.provider != "offline":
        return settings
    chosen = {name: value for name, value in DEMO_SETTINGS.items() if name not in settings.model_fields_set}
    return settings.model_copy(update=chosen)


def expected_ms(settings: Settings, count: int) -> int:
    """About how long the demo batch takes: rounds of the concurrency, each attempt its mean latency, plus
    the attempts that fail and are tried again."""
    attempts = count * (1 + settings.offline_failure_rate * (settings.max_attempts > 1))
    return math.ceil(attempts / settings.batch_concurrency) * settings.offline_latency_ms


def about(ms: int) -> str:
    """`2 minutes`, `40 seconds`: a duration as a person says it."""
    if ms >= 90_000:
        return f"{round(ms / 60_000)} minutes"
    return f"{max(1, round(ms / 1000))} seconds"


def served_url(settings: Settings, host: str, port: int) -> str:
    """The base URL to print: this server's, unless the environment names another host (a proxy in front)."""
    configured = urlsplit(settings.public_url)
    if configured.hostname in (None, "127.0.0.1", "localhost"):
        return f"http://{configured.hostname or host}:{port}"
    return settings.public_url.rstrip("/")


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def run_demo(settings: Settings, console: Console, *, port: int, count: int) -> None:
    host = "127.0.0.1"
    asked = port
    while not _free(host, port):
        port += 1
    if port != asked:
        console.print(f"Port {asked} is taken: serving on {port} instead.")
    # Every link and command printed names the port really served (a second demo moves to 8001).
    settings = demo_settings(settings).model_copy(update={"public_url": served_url(settings, host, port)})
    if not settings.prices:
        # The demo shows what a batch costs: its offline attempts priced as a small hosted model would be.
        settings = settings.model_copy(update={"prices": DEMO_PRICES})
    if settings.is_sqlite:
        await upgrade_async(settings.effective_database_url)
    parts = Parts(settings, worker=settings.redis_url is None)
    await parts.start()
    try:
        await _serve(parts, console, host=host, port=port, count=count)
    finally:
        await parts.stop()


async def _serve(parts: Parts, console: Console, *, host: str, port: int, count: int) -> None:
    settings = parts.settings
    app = create_app(parts=parts)
    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=3, **server_options(settings))
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # start-up failed: show why
            return
        await asyncio.sleep(0.05)
    async with parts.transactions.begin() as uow:
        session = uow.session
        await seed_demo_courses(session)
        owner = await ensure_user(session, DEMO_USER, Role.faculty)
        spec = BatchCreate(
            course_id=DEMO_COURSES[0][0],
            target_count=count,
            difficulty_distribution=DifficultyDistribution(easy=30, medium=50, hard=20),
        )
        # One person on their own machine: batches left running by earlier demos (stopped with Ctrl-C) resume
        # on their own, and must not hold a new demo back the way the per-user cap does on a shared server.
        limits = replace(parts.limits, max_active_batches=sys.maxsize)
        batch = await service.create_batch(uow, spec, owner=owner, limits=limits, now=parts.now())
        secret = await create_sign_in_link(
            session,
            owner,
            next_path=f"/faculty/generate/batch/{batch.id}",
            now=parts.now(),
            ttl=timedelta(seconds=settings.login_link_ttl_s),
        )
        await uow.commit()
    url = settings.public_url
    cli = cli_command()
    # `login-link` prints a link to LIVEBATCH_PUBLIC_URL: name this server's in the command when it differs.
    env = "" if url == Settings().public_url.rstrip("/") else f"LIVEBATCH_PUBLIC_URL={url} "
    console.print(f"\n[bold]livebatch[/] is serving on {url} (data in {settings.data_dir})")
    console.print(
        f"Demo batch {batch.id}: {count} items for {DEMO_COURSES[0][2]}, running now; it takes about "
        f"{about(expected_ms(settings, count))}."
    )
    prices = ", ".join(f"{m}: {p.input:g}/{p.output:g} per million tokens" for m, p in settings.prices.items())
    console.print(f"Prices ({settings.currency}, LIVEBATCH_PRICES): {prices}", markup=False)
    if settings.provider == "offline" and settings.offline_failure_rate > 0:
        console.print(
            f"About {settings.offline_failure_rate:.0%} of attempts fail on purpose and are retried (up to "
            f"{settings.max_attempts} attempts an item), so a few items fail for good: open a failed row to see "
            "why, then press Retry failed.\n",
            soft_wrap=True,
        )
    console.print("[bold]Open this sign-in link to watch it live[/] (it works once, for a few minutes):")
    console.print(f"  {url}/auth/login?token={secret}\n", soft_wrap=True)
    console.print(f"Or in a terminal:  {cli} watch {batch.id} --url {url}", soft_wrap=True)
    console.print(f"A new link any time: {env}{cli} login-link   ·   Ctrl-C stops the server.\n", soft_wrap=True)
    await serving
