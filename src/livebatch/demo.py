"""`make demo`: the server on the embedded default, a demo batch running, and a link to watch it."""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import replace
from datetime import timedelta

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
from livebatch.users.models import Role
from livebatch.users.service import create_sign_in_link, ensure_user

DEMO_USER = "faculty@livebatch.local"
DEMO_PRICES = {OFFLINE_MODEL: ModelPrice(input=0.15, output=0.60)}


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
    while not _free(host, port):
        port += 1
    if settings.public_url == Settings.model_fields["public_url"].default:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
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
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=3))
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
    console.print(f"\n[bold]livebatch[/] is serving on {settings.public_url} (data in {settings.data_dir})")
    console.print(f"Demo batch {batch.id}: {count} items for {DEMO_COURSES[0][2]}, running now.")
    prices = ", ".join(f"{m}: {p.input:g}/{p.output:g} per million tokens" for m, p in settings.prices.items())
    console.print(f"Prices ({settings.currency}, LIVEBATCH_PRICES): {prices}\n", markup=False)
    console.print("[bold]Open this sign-in link to watch it live[/] (it works once, for a few minutes):")
    console.print(f"  {settings.public_url}/auth/login?token={secret}\n", soft_wrap=True)
    console.print(f"Or in a terminal:  .venv/bin/livebatch watch {batch.id} --url {settings.public_url}")
    console.print("A new link any time: .venv/bin/livebatch login-link   ·   Ctrl-C stops the server.\n")
    await serving
