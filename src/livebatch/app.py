"""The FastAPI application: it composes. The parts come from `Parts` (parts.py), built in the lifespan
(or given, by a test or `livebatch demo`); the routers, the error shape and the body limit are added here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from livebatch import __version__, operations
from livebatch.batches import api as batches_api
from livebatch.batches.stream import BatchStreams
from livebatch.config import Settings
from livebatch.db import is_read_only_error
from livebatch.deps import WebParts
from livebatch.errors import LivebatchError, PayloadTooLarge, Unavailable, error_body
from livebatch.events.transport import detachable, install_log_filter
from livebatch.oidc import signin as oidc_signin
from livebatch.oidc.provider import IdentityProvider
from livebatch.parts import Parts
from livebatch.users import api as users_api
from livebatch.web import pages
from livebatch.web import settings as settings_page
from livebatch.webhooks import api as webhooks_api

logger = logging.getLogger("livebatch.app")

READ_ONLY_MESSAGE = "The database takes no changes right now (it is read-only); nothing was saved. Try again shortly."
READ_ONLY_RETRY_AFTER_S = 5

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
}


def create_app(settings: Settings | None = None, *, worker: bool | None = None, parts: Parts | None = None) -> FastAPI:
    """The app. `worker` (default: only when embedded) makes this process also run item work; given
    `parts` are used as they are and left for the caller to start and close."""
    settings = settings or (parts.settings if parts else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if parts is not None:
            yield  # set below, so that a client that runs no lifespan (httpx.ASGITransport) finds them too
            return
        if settings.is_sqlite:
            from livebatch.migrate import upgrade_async  # Alembic only where it runs: embedded

            await upgrade_async(settings.effective_database_url)
        built = Parts(settings, worker=settings.redis_url is None if worker is None else worker)
        await built.start()
        app.state.web = web_parts(built)
        try:
            yield
        finally:
            await built.stop()

    app = _App(
        title="livebatch",
        version=__version__,
        summary="Launch a batch of AI-generated exam items and watch it live.",
        lifespan=lifespan,
    )
    if parts is not None:
        app.state.web = web_parts(parts)  # also without a lifespan run (httpx's ASGITransport runs none)
    install_log_filter()
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.include_router(batches_api.router)
    app.include_router(users_api.router)
    app.include_router(oidc_signin.router(settings))
    app.include_router(webhooks_api.router)
    app.include_router(pages.router)
    app.include_router(settings_page.router)
    app.mount("/static", pages.static_files(), name="static")
    app.include_router(operations.router)
    if settings.serve_metrics:
        app.include_router(operations.metrics_router)
    _add_error_handlers(app)
    return app


class _App(FastAPI):
    """A progress stream, once opened (authorised, validated), runs outside the middleware and writes to its
    connection directly when the server allows it (events/transport.py: `detachable`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await detachable(super().__call__, scope, receive, send)


def web_parts(parts: Parts) -> WebParts:
    """What the endpoints may ask for (deps.py), from the process's parts."""
    streams = BatchStreams(
        db=parts.db, bus=parts.bus, metrics=parts.metrics, settings=parts.settings, slots=parts.stream_slots
    )
    return WebParts(
        settings=parts.settings,
        clock=parts.now,
        db=parts.db,
        bus=parts.bus,
        transactions=parts.transactions,
        limits=parts.limits,
        streams=streams,
        metrics=parts.metrics,
        oidc=IdentityProvider(parts.settings) if parts.settings.oidc_enabled else None,
    )


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

    # A database error is answered here rather than by `_unexpected`: Starlette raises again what reaches
    # that one, and uvicorn then closes the connection under a client that has its answer and may send
    # the next request on it.
    @app.exception_handler(DBAPIError)
    async def _database_error(request: Request, exc: DBAPIError) -> Response:
        if not is_read_only_error(exc.orig):
            return await _unexpected(request, exc)
        logger.warning("a write refused on %s %s: the database is read-only", request.method, request.url.path)
        answer = await _livebatch_error(request, Unavailable(READ_ONLY_MESSAGE))
        answer.headers["Retry-After"] = str(READ_ONLY_RETRY_AFTER_S)
        return answer


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
