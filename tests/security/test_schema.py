"""Every operation of the app's own OpenAPI schema under schemathesis, in process, signed in as a faculty
member: data that fits the schema and data that does not, with random batch ids and with the id of a real
batch. No answer is a 5xx, every answer matches the schema (status, content type, body), and nothing is
written (but the caller's own webhook, by the operation that sets it).

The progress stream is included, bounded: the only real batch has finished, so its stream replays to
`batch.complete` and ends (an unknown id is a 404, a bad Last-Event-ID a 422), and schemathesis reads at
most a few events of a stream anyway. Runs are derandomized, so a failure here is reproducible."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.schemas import OpenApiSchema

from livebatch.app import create_app
from livebatch.config import Settings
from livebatch.db import Database
from livebatch.parts import Parts
from tests.batches.conftest import start_batch
from tests.checks import wait_for_status
from tests.conftest import JWT_SECRET, Person
from tests.security.support import row_counts

EXAMPLES = 25  # per operation and kind of data: sized for the time budget of `make test`
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # Data the schema allows may still break a rule no JSON schema can say: a difficulty mix that adds
            # up to 100, a course that exists, a Last-Event-ID within this batch's log, a cursor this API gave
            # out. The API answers those with 422; everything else a valid request meets is in the defaults.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429"]},
        },
        "max-stream-events": 5,
    }
)


# The one operation whose valid data changes a row: setting one's own webhook (a URL the schema allows may pass
# its rules). It may write its own table, nothing else.
MAY_WRITE = {("PUT", "/api/v1/me/webhook"): {"webhooks"}}


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every documented operation, read from the app's schema (no parts needed)."""
    app = create_app(Settings(data_dir=Path("/nonexistent"), jwt_secret=SecretStr(JWT_SECRET)))
    return sorted((method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops)


OPERATIONS = _operations()


@dataclass
class Api:
    schema: OpenApiSchema
    batch_id: str


@pytest.fixture
async def finished_batch(settings: Settings, people: dict[str, Person]) -> AsyncIterator[str]:
    rt = Parts(settings, worker=True)
    await rt.start()
    try:
        batch_id = await start_batch(rt, people["faculty"], 2)
        assert (await wait_for_status(rt, batch_id)).status == "completed"
    finally:
        await rt.aclose()
    yield str(batch_id)


@pytest.fixture
def api(settings: Settings, finished_batch: str) -> Iterator[Api]:
    """The app, its parts started by schemathesis's ASGI client (lifespan) on a loop of its own."""
    app = create_app(settings, worker=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    assert isinstance(schema, OpenApiSchema)
    try:
        yield Api(schema, finished_batch)
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_every_operation_answers_within_its_schema_and_writes_nothing(
    method: str, path: str, api: Api, people: dict[str, Person], db: Database
) -> None:
    operation = api.schema[path][method]
    cases = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    if "{batch_id}" in path:
        real = {"batch_id": api.batch_id}
        cases += [operation.as_strategy(mode, path_parameters=real) for mode in GenerationMode]
    headers = people["faculty"].headers
    before = await row_counts(db)

    @given(case=st.one_of(cases))
    @hypothesis_settings(
        max_examples=EXAMPLES * len(cases) // 2,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(headers=headers)

    fuzz()
    own = MAY_WRITE.get((method, path), set())
    after = await row_counts(db)
    assert {t: n for t, n in after.items() if t not in own} == {t: n for t, n in before.items() if t not in own}
