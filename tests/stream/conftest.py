"""One `livebatch serve` shared by the stream tests (each makes its own batches); tests that need other
settings start their own with `serve`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from livebatch.db import Database
from tests.conftest import Backend
from tests.stream.servers import Served, serve


@pytest.fixture(scope="package")
def served(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(backend, tmp_path_factory.mktemp("served")) as server:
        yield server


@pytest.fixture
async def served_db(served: Served) -> AsyncIterator[Database]:
    async with served.database() as db:
        yield db
