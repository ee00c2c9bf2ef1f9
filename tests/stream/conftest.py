"""Servers shared by the stream tests (each test makes its own batches): `served` with fast settings,
and `constrained`, with every bound set tight."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from livebatch.db import Database
from tests.conftest import Backend
from tests.fakes.llm_server import FakeLLM
from tests.stream.servers import Served, serve


@pytest.fixture(scope="package")
def served(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(backend, tmp_path_factory.mktemp("served")) as server:
        yield server


# Notices one stream may fall behind before it is cut off.
STREAM_BUFFER = 64
STREAMS_PER_USER = 3


@pytest.fixture(scope="package")
def constrained(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Small stream buffers, three streams per user, and one database connection for everything."""
    with serve(
        backend,
        tmp_path_factory.mktemp("constrained"),
        stream_buffer=STREAM_BUFFER,
        progress_interval_ms=0,  # a snapshot after every change: more bytes per item
        stream_send_timeout_s=60,  # so that a full buffer, not the send timeout, is what cuts a stream
        max_streams_per_user=STREAMS_PER_USER,
        db_pool_size=1,
        db_max_overflow=0,
        offline_latency_ms=5,
        heartbeat_s=30,
    ) as server:
        yield server


@pytest.fixture
async def served_db(served: Served) -> AsyncIterator[Database]:
    async with served.database() as db:
        yield db


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLM]:
    """The provider of the modules' scripted servers: a real local server speaking OpenAI's protocol."""
    llm = FakeLLM().start()
    yield llm
    llm.stop()
