"""A real model: llama.cpp's `llama-server` with Gemma 3 270M on loopback, started as `make demo-local-llm`
starts it (`scripts/llm/serve.sh`). `make test-llm` builds both once and names them in `LLAMA_SERVER` and
`LLM_MODEL`; without them (a plain `pytest`, `make test`) these tests are skipped, with that reason."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

SCRIPTS = Path(__file__).parents[2] / "scripts" / "llm"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LLAMA_SERVER") and os.environ.get("LLM_MODEL"):
        return
    skip = pytest.mark.skip(reason="a real model: run with make test-llm (builds llama-server, about 6 min once)")
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@dataclass
class LlamaServer:
    port: int
    log_path: Path
    load_s: float

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def metric(self, name: str) -> float:
        """One sample of llama-server's own /metrics (Prometheus text), e.g. `llamacpp:tokens_predicted_total`."""
        for line in httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text.splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == name:
                return float(value)
        raise AssertionError(f"{name} not in llama-server's /metrics")


@pytest.fixture(scope="package")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    log_path = tmp_path_factory.mktemp("llm") / "llama-server.log"
    port = free_port()
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [SCRIPTS / "serve.sh", os.environ["LLAMA_SERVER"], os.environ["LLM_MODEL"], str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = started + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama-server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama-server not up after 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield LlamaServer(port, log_path, load_s=time.monotonic() - started)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
