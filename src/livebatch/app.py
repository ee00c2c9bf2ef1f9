"""The FastAPI application: routes, the error shape, limits, health and metrics, and the lifespan
that builds (and tears down) the process's runtime."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livebatch import __version__
from livebatch.batches import api as batches_api
from livebatch.batches import stream
from livebatch.config import Settings
from livebatch.errors import LivebatchError, PayloadTooLarge, error_body
from livebatch.runtime import Runtime
from livebatch.users import api as users_api
from livebatch.web import pages

logger = logging.getLogger("livebatch.app")

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


def create_app(
    settings: Settings | None = None, *, worker: bool | None = None, runtime: Runtime | None = None
) -> FastAPI:
    """The app. `worker` (default: only when embedded) makes this process also run item work;
    a given `runtime` is used as is and left for the caller to close."""
    settings = settings or (runtime.settings if runtime else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            yield  # set below, so that a client that runs no lifespan (httpx.ASGITransport) finds it too
            return
        if settings.is_sqlite:
            from livebatch.migrate import upgrade_async  # Alembic only where it runs: embedded

            await upgrade_async(settings.effective_database_url)
        rt = Runtime(settings, worker=settings.redis_url is None if worker is None else worker)
        await rt.start()
        app.state.runtime = rt
        try:
            yield
        finally:
            if rt.worker:
                # Stopped on purpose (SIGTERM, Ctrl+C): like `livebatch worker`, let the attempts in flight
                # finish and hand back what was received but not started, so that a restart neither waits
                # for leases to expire nor counts those attempts as failed.
                logger.info("stopping: finishing the attempts in flight")
                if not await rt.drain(rt.generation_deadline_s + 5):
                    logger.warning("attempts still running at exit; their items are retried once their lease expires")
            await rt.aclose()

    app = FastAPI(
        title="livebatch",
        version=__version__,
        summary="Launch a batch of AI-generated exam items and watch it live.",
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime  # also without a lifespan run (httpx's ASGITransport runs none)
    logging.getLogger("uvicorn.error").addFilter(stream.QUIET_CUT_OFFS)  # added once, however many apps
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(batches_api.router)
    app.include_router(users_api.router)
    app.include_router(pages.router)
    app.mount("/static", pages.static_files(), name="static")
    _add_operations(app)
    _add_error_handlers(app)
    return app


def _add_operations(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "A dependency is unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database (and Redis, when configured) answer within a couple of seconds."""
        rt: Runtime = request.app.state.runtime

        async def database() -> None:
            async with rt.db.read_session() as session:
                await session.execute(text("SELECT 1"))

        checks = {"database": await _probe(database)}
        ping = getattr(rt.bus, "ping", None)
        if ping is not None:
            checks["redis"] = await _probe(ping)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
        )

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics: this process's, then the cluster's from the database."""
        rt: Runtime = request.app.state.runtime
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                async with rt.db.read_session() as session:
                    body = await rt.metrics.render(session)
        except Exception as exc:
            # The database is away: this process's own figures are still worth scraping.
            logger.warning("metrics without the database figures (%s)", type(exc).__name__)
            body = rt.metrics.render_process()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


READY_TIMEOUT_S = 2.0


async def _probe(check: Callable[[], Awaitable[object]]) -> str:
    """ "ok", or why not: a dependency that does not answer in time counts as down."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await check()
    except TimeoutError:
        return "unavailable: no answer"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _add_error_handlers(app: FastAPI) -> None:
    # An error on a page is a page (a sign-in redirect, 403, 404), never JSON.
    @app.exception_handler(LivebatchError)
    async def _livebatch_error(request: Request, exc: LivebatchError) -> Response:
        if pages.is_page(request):
            return pages.error_page(request, exc.status_code, exc.message)
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        message = describe_validation(exc.errors())
        if pages.is_page(request):
            return pages.error_page(request, 422, message)
        return JSONResponse(error_body("VALIDATION_ERROR", message), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if pages.is_page(request):
            return pages.error_page(request, exc.status_code, str(exc.detail))
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        if pages.is_page(request):
            return pages.error_page(request, 500, "Something went wrong on our side.")
        return JSONResponse(error_body("INTERNAL", "Something went wrong on our side."), status_code=500)


def describe_validation(errors: Any) -> str:
    """One readable line per problem: `body.targetCount: Input should be greater than or equal to 1`."""
    parts = []
    for error in list(errors)[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "The request is not valid."


class BodySizeLimit:
    """Refuses bodies over `max_bytes` (413): by Content-Length, or, for a chunked body, once as much has
    been read (the body is read here, up to the limit, and handed on to the app whole)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            # Read here rather than raise from the app's receive: FastAPI turns any error while it reads a
            # body into a 400 "There was an error parsing the body", which would hide the 413.
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left before sending its body
                body += message.get("body", b"")
                if len(body) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            receive = _replay(bytes(body), receive)
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        too_large = PayloadTooLarge(f"The request body is over {self.max_bytes} bytes.")
        response = JSONResponse(error_body(too_large.code, too_large.message), status_code=413)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the body read already, then whatever the connection says next (a disconnect)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
