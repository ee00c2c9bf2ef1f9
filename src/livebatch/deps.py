"""What an endpoint may ask for, as FastAPI `Annotated` dependencies: each names one narrow part.

`app.py` builds the parts once per process and leaves them on `app.state.web`; nothing else reads
`app.state`, and no endpoint sees more than the parts it names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.batches.service import Limits
from livebatch.batches.stream import BatchStreams
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.events.bus import Bus
from livebatch.metrics import Metrics
from livebatch.oidc.provider import IdentityProvider
from livebatch.uow import Transactions, UnitOfWork

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class WebParts:
    settings: Settings
    clock: Clock
    db: Database
    bus: Bus
    transactions: Transactions
    limits: Limits
    streams: BatchStreams
    metrics: Metrics
    oidc: IdentityProvider | None = None  # the school's identity provider, when LIVEBATCH_OIDC_* configure one


def _parts(request: Request) -> WebParts:
    parts: WebParts = request.app.state.web
    return parts


Parts = Annotated[WebParts, Depends(_parts)]


def _settings(parts: Parts) -> Settings:
    return parts.settings


def _clock(parts: Parts) -> Clock:
    return parts.clock


def _database(parts: Parts) -> Database:
    return parts.db


def _bus(parts: Parts) -> Bus:
    return parts.bus


def _limits(parts: Parts) -> Limits:
    return parts.limits


def _streams(parts: Parts) -> BatchStreams:
    return parts.streams


def _metrics(parts: Parts) -> Metrics:
    return parts.metrics


def _identity_provider(parts: Parts) -> IdentityProvider | None:
    return parts.oidc


async def _session(parts: Parts) -> AsyncIterator[AsyncSession]:
    async with parts.db.session() as session:
        yield session


async def _read_session(parts: Parts) -> AsyncIterator[AsyncSession]:
    async with parts.db.read_session() as session:
        yield session


async def _unit_of_work(parts: Parts) -> AsyncIterator[UnitOfWork]:
    async with parts.transactions.begin() as uow:
        yield uow


SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Clock, Depends(_clock)]
DatabaseDep = Annotated[Database, Depends(_database)]
BusDep = Annotated[Bus, Depends(_bus)]
LimitsDep = Annotated[Limits, Depends(_limits)]
StreamsDep = Annotated[BatchStreams, Depends(_streams)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
IdentityProviderDep = Annotated[IdentityProvider | None, Depends(_identity_provider)]
# scope="function": the session closes when the endpoint returns, not when the response has been sent,
# so an SSE stream or a streamed export holds no pooled connection for its whole life.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(_read_session, scope="function")]
UnitOfWorkDep = Annotated[UnitOfWork, Depends(_unit_of_work, scope="function")]
