"""The app in process with a clock the test can move, and `livebatch` commands run as subprocesses
on the same database and secret."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest

from livebatch.clock import utcnow
from livebatch.config import Settings
from livebatch.parts import Parts
from tests.conftest import settings_env

PUBLIC_URL = "http://testserver"  # the in-process app's own origin, printed in sign-in links


class Clock:
    """Real time plus an offset, so that a test can step past an expiry without waiting for it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def parts(settings: Settings, clock: Clock) -> AsyncIterator[Parts]:
    rt = Parts(settings, worker=False, clock=clock)
    await rt.start()
    yield rt
    await rt.aclose()


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


async def livebatch(settings: Settings, *args: str) -> Ran:
    """`livebatch ARGS` in a subprocess, configured like the app under test."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livebatch",
        *args,
        env=settings_env(settings) | {"LIVEBATCH_PUBLIC_URL": PUBLIC_URL, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())
