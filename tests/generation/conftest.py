from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.llm_server import FakeLLM


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    """A real chat-completions server on loopback; queue behaviours with `fake_llm.queue(...)`."""
    llm = FakeLLM().start()
    yield llm
    llm.stop()
