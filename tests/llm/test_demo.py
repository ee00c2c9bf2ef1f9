"""`make demo-local-llm` as a person runs it (`scripts/llm/demo.sh`, what the target runs once the server and
the model are built): it starts llama-server, prints a sign-in link, and the batch behind the link is
written by the model; Ctrl-C stops the demo and the model server with it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.checks import TERMINAL
from tests.llm.conftest import SCRIPTS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = SCRIPTS.parents[1]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+)/auth/login\?token=\S+")
LLAMA_PORT = re.compile(r"llama-server is up on 127\.0\.0\.1:(\d+)")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEBATCH_")}
    env |= {"COUNT": "2", "LIVEBATCH_DATA_DIR": str(tmp_path / "data"), "LLM_LOG": str(tmp_path / "llama.log")}
    output = tmp_path / "demo.log"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [SCRIPTS / "demo.sh", os.environ["LLAMA_SERVER"], os.environ["LLM_MODEL"]],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to be sent Ctrl-C as a terminal would
        )
    try:
        yield process, output
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_for(pattern: re.Pattern[str], output: Path, process: subprocess.Popen[bytes], timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(output.read_text(errors="replace"))
        if found:
            return found
        assert process.poll() is None, f"the demo exited with {process.returncode}:\n{output.read_text()}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern.pattern!r} after {timeout}s:\n{output.read_text()}")


def tokens_written(port: int) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(r"^llamacpp:tokens_predicted_total (\S+)$", metrics, re.MULTILINE)
    assert found is not None, metrics
    return float(found.group(1))


def test_the_demo_prints_a_sign_in_link_to_a_batch_the_model_writes_and_stops_on_ctrl_c(
    demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, output = demo
    llama_port = int(wait_for(LLAMA_PORT, output, process, timeout=120).group(1))
    link = wait_for(LINK, output, process, timeout=120)
    with httpx.Client(base_url=link.group(1), timeout=30) as browser:
        signed_in = browser.get(link.group(0))
        assert signed_in.status_code == 303, signed_in.text
        page = signed_in.headers["location"]
        assert re.fullmatch(r"/faculty/generate/batch/[0-9a-f-]{36}", page)
        assert browser.get(page).status_code == 200  # the live progress page, signed in by the link's cookie
        batch_url = "/api/v1/generation" + page.removeprefix("/faculty/generate")
        deadline = time.monotonic() + 900
        while (batch := browser.get(batch_url).json())["status"] not in TERMINAL:
            assert time.monotonic() < deadline, batch
            time.sleep(1)
    assert batch["total_items"] == 2
    assert batch["completed_items"] + batch["failed_items"] == 2
    assert tokens_written(llama_port) > 0, "the model wrote the batch's items"

    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    process.wait(60)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{llama_port}/health", timeout=2)  # the model server went with it
