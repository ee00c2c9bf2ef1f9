"""Faults livebatch must survive, each with a test that asserts what is left afterwards (tests/reliability).

The fixtures come from where they were first needed: the in-process pipeline (`open_parts`), the console
script (`run_cli`, `env_for`), the scaled-out cluster, a private `redis-server` and a TCP proxy in front of
the shared PostgreSQL (`cluster`, `private_redis`, `pg_proxy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from livebatch.config import Settings
from tests.batches.conftest import open_parts as open_parts
from tests.cli.conftest import env_for as env_for
from tests.cli.conftest import run_cli as run_cli
from tests.conftest import Backend, LiveFactory, LiveProcess
from tests.fakes.llm_server import FakeLLM
from tests.scaled.conftest import cluster as cluster
from tests.scaled.conftest import pg_proxy as pg_proxy
from tests.scaled.conftest import private_redis as private_redis
from tests.web.conftest import browser as browser  # Chromium, driven by Playwright (one per session)
from tests.web.conftest import private_server as private_server  # a server whose provider is the fake LLM
from tests.web.conftest import private_site as private_site


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A real chat-completions server on loopback; queue behaviours with `fake_llm.queue(...)`."""
    llm = FakeLLM().start()
    yield llm
    llm.stop()


@pytest.fixture
def scaled_only(backend: Backend) -> None:
    if not backend.scaled:
        pytest.skip("needs PostgreSQL and Redis: runs with --backend=scaled (make test-scaled)")


@pytest.fixture
def embedded_only(backend: Backend) -> None:
    if backend.scaled:
        pytest.skip("a fault of the embedded deployment (SQLite, one process): runs without --backend")


Serve = Callable[..., LiveProcess]


@pytest.fixture
def serve(live_process: LiveFactory, backend: Backend) -> Serve:
    """`serve(settings, port=0)`: `livebatch serve` doing its own work (also scaled out) on that port, or on
    one the system picks; a restart passes the port of the server it replaces, where its clients return."""

    def start(settings: Settings, port: int = 0) -> LiveProcess:
        worker = ["--worker"] if backend.scaled else []
        return live_process(settings, "serve", "--host", "127.0.0.1", "--port", str(port), *worker, port=port)

    return start
