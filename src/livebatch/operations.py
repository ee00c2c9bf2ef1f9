"""What an operator's tools ask a process: is it up (`/healthz`), can it serve (`/readyz`), its figures
(`/metrics`, only with `LIVEBATCH_SERVE_METRICS`: they say how busy the service is and which batches run, and
are no business of the public)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.responses import Response

from livebatch.batches import reads
from livebatch.db import DatabaseReadOnly
from livebatch.deps import BusDep, DatabaseDep, MetricsDep

logger = logging.getLogger("livebatch.app")
router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])
READY_TIMEOUT_S = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is unreachable"}})
async def readyz(db: DatabaseDep, bus: BusDep) -> JSONResponse:
    """The database (and Redis, when configured) answer within a couple of seconds, and the database takes
    writes: a read-only database is not ready, though it still answers reads."""
    checks = {"database": await _probe(db.check_writable)}
    ping = getattr(bus, "ping", None)
    if ping is not None:
        checks["redis"] = await _probe(ping)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


@metrics_router.get("/metrics", response_class=Response)
async def metrics(db: DatabaseDep, figures: MetricsDep) -> Response:
    """Prometheus metrics: this process's, then the cluster's from the database."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with db.read_session() as session:
                cluster = await reads.cluster_figures(session)
        body = figures.render(items=cluster.items, batches=cluster.batches, queue_depth=cluster.queue_depth)
    except Exception as exc:
        # The database is away: this process's own figures are still worth scraping.
        logger.warning("metrics without the database figures (%s)", type(exc).__name__)
        body = figures.render_process()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _probe(check: Callable[[], Awaitable[object]]) -> str:
    """ "ok", or why not: a dependency that does not answer in time counts as down."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await check()
    except TimeoutError:
        return "unavailable: no answer"
    except DatabaseReadOnly as exc:
        return f"unavailable: read-only ({exc})"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"
