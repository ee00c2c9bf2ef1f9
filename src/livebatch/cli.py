"""`livebatch`: serve, work, run a batch headless, watch one, and manage users, courses and the schema."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from livebatch import logs
from livebatch.config import Settings
from livebatch.errors import LivebatchError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
course_app = typer.Typer(no_args_is_help=True, help="Courses a batch can be for.")
app.add_typer(course_app, name="course")
webhook_app = typer.Typer(no_args_is_help=True, help="The webhook a user's batches notify when they end or pause.")
app.add_typer(webhook_app, name="webhook")

DEMO_USER = "faculty@livebatch.local"
DEMO_COURSE = "course-uuid-1"
# soft_wrap: a line is never broken at the terminal's width, so scripts can read the batch id and summary.
console = Console(stderr=False, highlight=False, soft_wrap=True)


def _settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            # The variable is the field; a place inside its value (a model of LIVEBATCH_PRICES) goes with the message.
            field, *inside = [str(part) for part in error["loc"]] or [""]
            where = "".join(f"{part}: " for part in inside)
            message = error["msg"].removeprefix("Value error, ")
            console.print(f"LIVEBATCH_{field.upper()}: {where}{message}", style="red", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    logs.configure(settings.log_format, settings.log_level)
    return settings


def main() -> None:
    app()


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (run before starting a scaled-out deployment)."""
    from livebatch.migrate import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url)
    console.print("schema is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool | None,
        typer.Option("--worker/--no-worker", help="Also run item work (default: only when embedded)."),
    ] = None,
) -> None:
    """Start the web app and API (on SQLite, also the work and the schema)."""
    from livebatch import serving
    from livebatch.app import create_app

    settings = _settings()
    serving.run(create_app(settings, worker=worker), settings, host=host, port=port)


@app.command()
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this worker's Prometheus metrics on this port (0: any free one; default: none)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Interface for the metrics endpoint.")] = "127.0.0.1",
) -> None:
    """Run item work from the Redis queue (scaled out: needs LIVEBATCH_REDIS_URL)."""
    settings = _settings()
    if not settings.redis_url:
        console.print("[red]livebatch worker needs LIVEBATCH_REDIS_URL; the embedded server does its own work.")
        raise typer.Exit(2)
    asyncio.run(_work_until_signalled(settings, metrics_port, metrics_host))


async def _work_until_signalled(settings: Settings, metrics_port: int | None, metrics_host: str) -> None:
    import logging

    from livebatch.parts import Parts

    logger = logging.getLogger("livebatch.worker")
    parts = Parts(settings, worker=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    signalled = False
    try:
        # The metrics port first: a port already taken fails the start before this worker takes any work.
        port = parts.metrics.serve_process_metrics(metrics_port, metrics_host) if metrics_port is not None else None
        await parts.start()
        logger.info("worker up", extra={"max_concurrency": settings.max_concurrency, "metrics_port": port})
        await stop.wait()
        signalled = True
    finally:
        # Signalled: finish the attempts in flight first. Failed: close at once.
        await (parts.stop() if signalled else parts.aclose())
        parts.metrics.close()
    logger.info("worker stopped")


@app.command("run-batch")
def run_batch(
    count: Annotated[int, typer.Option("--count", "-n", help="Items to generate.")] = 20,
    user: Annotated[str, typer.Option(help="Owner (a faculty user, created if new).")] = DEMO_USER,
    course: Annotated[str, typer.Option(help="Course id (the demo course is added when missing).")] = DEMO_COURSE,
    batch: Annotated[str | None, typer.Option(help="Continue this existing batch instead of creating one.")] = None,
    easy: int = 30,
    medium: int = 50,
    hard: int = 20,
    budget: Annotated[
        float | None, typer.Option(help="Pause the batch once it has cost this much (in LIVEBATCH_CURRENCY).")
    ] = None,
    budget_tokens: Annotated[
        int | None, typer.Option(help="Pause the batch once it has used this many tokens.")
    ] = None,
    error_rate_guard: Annotated[
        bool,
        typer.Option(
            "--error-rate-guard/--no-error-rate-guard", help="Pause when more than half of the last 20 attempts fail."
        ),
    ] = True,
) -> None:
    """Create a batch (or continue one) and run it here, headless, with a progress bar.

    Exit status: 0 when the batch finished (completed, with or without item errors), 1 when it ended
    failed or cancelled, 2 when it could not start (bad options or settings).
    """
    from livebatch.headless import Guards, run_headless

    settings = _settings()
    code = asyncio.run(
        run_headless(
            settings,
            console,
            count=count,
            user=user,
            course=course,
            batch_id=batch,
            mix=(easy, medium, hard),
            guards=Guards(cost=budget, tokens=budget_tokens, error_rate=error_rate_guard),
        )
    )
    raise typer.Exit(code)


@app.command()
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Prune batches finished longer ago than this: 30d, 12h, 90m.")
    ],
) -> None:
    """Delete the event logs of batches finished long ago (all but each one's last event).

    A client that then resumes from a pruned event gets `batch.reset` and a fresh snapshot, not a gap.
    """
    age = _duration(older_than)
    settings = _settings()
    batches, events, before = asyncio.run(_prune(settings, age))
    console.print(f"pruned {events} events of {batches} batches finished before {before}")


def _duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `45s` as a duration; anything else exits 2 with the form it takes."""
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    number, unit = text.strip()[:-1], text.strip()[-1:]
    if not number.isdigit() or unit not in units:
        console.print(f"--older-than: {text!r} is not a duration like 30d, 12h, 90m or 45s", style="red", markup=False)
        raise typer.Exit(2)
    return timedelta(**{units[unit]: int(number)})


@app.command()
def watch(
    batch_id: Annotated[str, typer.Argument(help="The batch to follow.")],
    url: Annotated[str | None, typer.Option(help="Server base URL (default: LIVEBATCH_PUBLIC_URL).")] = None,
    token: Annotated[str | None, typer.Option(envvar="LIVEBATCH_TOKEN", help="Bearer token.")] = None,
    user: Annotated[str, typer.Option(help="Without a token: mint one locally for this user.")] = DEMO_USER,
) -> None:
    """Follow a running batch on a server until it ends, listing failures as they happen."""
    from livebatch.headless import watch_remote

    settings = _settings()
    bearer = token or asyncio.run(_mint(settings, user, role=None))
    code = asyncio.run(watch_remote(console, url or settings.public_url, bearer, batch_id))
    raise typer.Exit(code)


@app.command()
def failures(
    batch_id: Annotated[str, typer.Argument(help="The batch whose failed items to show.")],
    url: Annotated[str | None, typer.Option(help="Server base URL (default: LIVEBATCH_PUBLIC_URL).")] = None,
    token: Annotated[str | None, typer.Option(envvar="LIVEBATCH_TOKEN", help="Bearer token.")] = None,
    user: Annotated[str, typer.Option(help="Without a token: mint one locally for this user.")] = DEMO_USER,
) -> None:
    """Show a batch's failed items grouped by cause, with each group's key for `retry-failed --group`."""
    from livebatch.headless import show_failures

    settings = _settings()
    bearer = token or asyncio.run(_mint(settings, user, role=None))
    raise typer.Exit(asyncio.run(show_failures(console, url or settings.public_url, bearer, batch_id)))


@app.command("retry-failed")
def retry_failed(
    batch_id: Annotated[str, typer.Argument(help="The batch to retry.")],
    kind: Annotated[
        list[str] | None,
        typer.Option(help="Only failures of this kind (validation, timeout, rate_limited, ...); repeatable."),
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option(help="Only this group (a key from `failures`); repeatable.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Server base URL (default: LIVEBATCH_PUBLIC_URL).")] = None,
    token: Annotated[str | None, typer.Option(envvar="LIVEBATCH_TOKEN", help="Bearer token.")] = None,
    user: Annotated[str, typer.Option(help="Without a token: mint one locally for this user.")] = DEMO_USER,
) -> None:
    """Run a finished batch's failed items again on a server: all of them, or only these kinds or groups."""
    from livebatch.headless import retry_remote

    settings = _settings()
    bearer = token or asyncio.run(_mint(settings, user, role=None))
    base = url or settings.public_url
    raise typer.Exit(asyncio.run(retry_remote(console, base, bearer, batch_id, kinds=kind or [], groups=group or [])))


@app.command("token")
def token_command(
    user: Annotated[str, typer.Option("--user", help="Email of the local user (created if new).")],
    role: Annotated[
        str | None, typer.Option(help="faculty, student or admin (default: the user's, or faculty).")
    ] = None,
) -> None:
    """Print a bearer token for a local user."""
    settings = _settings()
    print(asyncio.run(_mint(settings, user, role=role)))


@app.command("login-link")
def login_link(
    user: Annotated[str, typer.Option(help="Email of the local user.")] = DEMO_USER,
    next_path: Annotated[str, typer.Option("--next", help="Page to land on.")] = "/faculty/generate/batches",
    create: Annotated[
        bool, typer.Option("--create", help="Create the user, as a faculty member, if there is none.")
    ] = False,
) -> None:
    """Print a one-time, short-lived sign-in link that sets the session cookie and redirects."""
    from livebatch.users.models import NEXT_PATH_CHARS

    if len(next_path) > NEXT_PATH_CHARS:
        console.print(f"--next: at most {NEXT_PATH_CHARS} characters, not {len(next_path)}.", style="red", markup=False)
        raise typer.Exit(2)
    settings = _settings()
    print(asyncio.run(_login_link(settings, user, next_path, create=create)))


@course_app.command("add")
def course_add(
    course_id: Annotated[str, typer.Option("--id", help="Course id, as batches name it.")],
    title: Annotated[str, typer.Option(help="Title shown on the pages.")],
    code: Annotated[str | None, typer.Option(help="Short code, e.g. CVP-301.")] = None,
) -> None:
    """Add a course, or rename it if it exists."""
    settings = _settings()
    asyncio.run(_put_course(settings, course_id, title, code))
    console.print(f"course {course_id}: {title}")


@webhook_app.command("set")
def webhook_set(
    user: Annotated[str, typer.Option(help="Email of the local user (created as faculty if new).")],
    url: Annotated[str, typer.Option(help="http:// or https:// URL that deliveries are POSTed to.")],
    rotate_secret: Annotated[bool, typer.Option(help="Replace the signing secret (printed once).")] = False,
) -> None:
    """Set a user's webhook URL; a new webhook's signing secret (or a rotated one) is printed, once."""
    settings = _settings()
    shown_url, secret = asyncio.run(_set_webhook(settings, user, url, rotate_secret))
    console.print(f"webhook of {user}: {shown_url}", markup=False, soft_wrap=True)
    if secret is not None:
        console.print(f"signing secret (shown once, keep it): {secret}", markup=False, soft_wrap=True)
    else:
        console.print("signing secret unchanged (--rotate-secret makes a new one)")


@webhook_app.command("show")
def webhook_show(user: Annotated[str, typer.Option(help="Email of the local user.")]) -> None:
    """Show a user's webhook URL and its latest deliveries (dead ones included)."""
    from livebatch.terminal import format_deliveries

    settings = _settings()
    found = asyncio.run(_show_webhook(settings, user))
    if found is None:
        console.print(f"no webhook for {user}", markup=False)
        raise typer.Exit(1)
    webhook, deliveries = found
    console.print(f"webhook of {user}: {webhook['url']} (since {webhook['createdAt']})", markup=False, soft_wrap=True)
    for line in format_deliveries(deliveries):
        console.print(line, markup=False, soft_wrap=True)


@webhook_app.command("remove")
def webhook_remove(user: Annotated[str, typer.Option(help="Email of the local user.")]) -> None:
    """Remove a user's webhook (deliveries still due are then marked dead)."""
    settings = _settings()
    if not asyncio.run(_remove_webhook(settings, user)):
        console.print(f"no webhook for {user}", markup=False)
        raise typer.Exit(1)
    console.print(f"webhook of {user} removed", markup=False)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    count: Annotated[int, typer.Option(help="Items in the demo batch (about two minutes' worth).")] = 80,
) -> None:
    """Serve on SQLite, launch a demo batch, and print a sign-in link to its live progress page."""
    from livebatch.demo import run_demo

    settings = _settings()
    try:
        asyncio.run(run_demo(settings, console, port=port, count=count))
    except KeyboardInterrupt:
        pass


# --- small async helpers -------------------------------------------------------------------------------


async def _with_session(settings: Settings, work: Any) -> Any:
    from livebatch.db import Database
    from livebatch.migrate import upgrade_async

    if settings.is_sqlite:
        await upgrade_async(settings.effective_database_url)
    db = Database(settings.effective_database_url)
    try:
        async with db.session() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await db.dispose()


async def _mint(settings: Settings, email: str, *, role: str | None) -> str:
    from livebatch.auth import mint_token
    from livebatch.clock import utcnow
    from livebatch.users.models import Role
    from livebatch.users.service import ensure_user, set_role

    async def work(session: Any) -> str:
        user = await ensure_user(session, email, Role(role) if role else Role.faculty)
        if role is not None:
            set_role(user, Role(role))  # revokes the tokens minted with the old role
            await session.flush()
        return mint_token(settings, user, now=utcnow())

    try:
        token: str = await _with_session(settings, work)
    except (ValueError, LivebatchError) as exc:  # an unknown role; not an email address
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    return token


async def _login_link(settings: Settings, email: str, next_path: str, *, create: bool = False) -> str:
    from datetime import timedelta

    from livebatch.clock import utcnow
    from livebatch.errors import BadRequest
    from livebatch.users.models import Role
    from livebatch.users.service import check_next_path, create_sign_in_link, ensure_user, find_user

    async def work(session: Any) -> str:
        check_next_path(next_path)
        # A mistyped address must not become a new faculty account that can generate items.
        if not create and await find_user(session, email) is None:
            raise BadRequest(f"No user {email.strip().lower()}: check the address, or add --create to create them.")
        user = await ensure_user(session, email, Role.faculty)
        ttl = timedelta(seconds=settings.login_link_ttl_s)
        return await create_sign_in_link(session, user, next_path=next_path, now=utcnow(), ttl=ttl)

    try:
        secret: str = await _with_session(settings, work)
    except LivebatchError as exc:  # not an email address; a `--next` that leaves the site
        console.print(f"[red]{exc}")
        raise typer.Exit(2) from None
    return f"{settings.public_url.rstrip('/')}/auth/login?token={secret}"


async def _prune(settings: Settings, age: timedelta) -> tuple[int, int, str]:
    """Prunes every batch finished more than `age` ago, a transaction each; (batches, events, the cut-off)."""
    import livebatch.courses.models
    import livebatch.users.models  # noqa: F401 (the tables batch_jobs refers to, for the ORM's mapping)
    from livebatch.batches import retention
    from livebatch.clock import iso, utcnow
    from livebatch.db import Database
    from livebatch.events.bus import LocalBus
    from livebatch.migrate import upgrade_async
    from livebatch.uow import Transactions

    class _Nowhere:
        async def enqueue(self, item_ids: Any) -> None:  # pruning dispatches no work
            raise AssertionError("pruning dispatched work")

    if settings.is_sqlite:
        await upgrade_async(settings.effective_database_url)
    before = utcnow() - age
    db = Database(settings.effective_database_url)
    # Pruning announces nothing (a finished batch has no live stream) and queues nothing: a local bus will do.
    transactions = Transactions(db, LocalBus(), _Nowhere())
    batches = events = 0
    try:
        while True:
            async with transactions.begin() as uow:
                found = await retention.prunable(uow, finished_before=before)
            for batch_id in found:
                async with transactions.begin() as uow:
                    deleted = await retention.prune_batch(uow, batch_id, finished_before=before)
                    await uow.commit()
                batches, events = batches + (deleted > 0), events + deleted
            if len(found) < retention.PAGE:
                return batches, events, iso(before)
    finally:
        await db.dispose()


async def _put_course(settings: Settings, course_id: str, title: str, code: str | None) -> None:
    from livebatch.courses.service import put_course

    try:
        await _with_session(settings, lambda session: put_course(session, course_id, title, code))
    except LivebatchError as exc:
        console.print(f"[red]{exc.message}")
        raise typer.Exit(2) from None


async def _set_webhook(settings: Settings, email: str, url: str, rotate: bool) -> tuple[str, str | None]:
    from livebatch.clock import utcnow
    from livebatch.users.models import Role
    from livebatch.users.service import ensure_user
    from livebatch.webhooks.service import set_webhook

    async def work(session: Any) -> tuple[str, str | None]:
        user = await ensure_user(session, email, Role.faculty)
        webhook, secret = await set_webhook(
            session, user.id, url, now=utcnow(), allow_private=settings.webhook_allow_private, rotate_secret=rotate
        )
        return webhook.url, secret

    try:
        result: tuple[str, str | None] = await _with_session(settings, work)
    except LivebatchError as exc:  # a URL that is refused; not an email address
        console.print(exc.message, style="red", markup=False)
        raise typer.Exit(2) from None
    return result


async def _find_user(session: Any, email: str) -> Any:
    from livebatch.users.repository import get_user_by_email
    from livebatch.users.service import normalize_email

    return await get_user_by_email(session, normalize_email(email))


async def _show_webhook(settings: Settings, email: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    from livebatch.webhooks import service
    from livebatch.webhooks.schemas import DeliveryRead, WebhookRead

    async def work(session: Any) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        user = await _find_user(session, email)
        webhook = await service.find_webhook(session, user.id) if user is not None else None
        if webhook is None:
            return None
        deliveries = [DeliveryRead.of(d).model_dump() for d in await service.recent_deliveries(session, user.id)]
        return WebhookRead.of(webhook).model_dump(), deliveries

    try:
        found: tuple[dict[str, Any], list[dict[str, Any]]] | None = await _with_session(settings, work)
    except LivebatchError as exc:
        console.print(exc.message, style="red", markup=False)
        raise typer.Exit(2) from None
    return found


async def _remove_webhook(settings: Settings, email: str) -> bool:
    from livebatch.webhooks import service

    async def work(session: Any) -> bool:
        user = await _find_user(session, email)
        if user is None or await service.find_webhook(session, user.id) is None:
            return False
        await service.remove_webhook(session, user.id)
        return True

    try:
        removed: bool = await _with_session(settings, work)
    except LivebatchError as exc:
        console.print(exc.message, style="red", markup=False)
        raise typer.Exit(2) from None
    return removed
