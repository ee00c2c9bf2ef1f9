"""Logs: one JSON object per line when stderr is not a terminal (collectors), text on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

SCRIPT = """
import logging
from livebatch import logs
logs.configure("auto", "INFO")
logging.getLogger("livebatch.worker").info("item %s done", "7", extra={"batch_id": "b-1"})
logging.getLogger("uvicorn.error").info("Application startup complete.")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("livebatch.parts").exception("it broke")
logging.getLogger("livebatch.noise").debug("not shown at INFO")
"""


def test_logs_are_json_lines_when_stderr_is_not_a_terminal() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=30)
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["level"], e["logger"], e["message"]) for e in entries] == [
        ("info", "livebatch.worker", "item 7 done"),
        ("info", "uvicorn.error", "Application startup complete."),
        ("error", "livebatch.parts", "it broke"),
    ]
    assert entries[0]["batch_id"] == "b-1"  # fields given as `extra` become keys
    assert "ZeroDivisionError" in entries[2]["exception"]
    assert all(e["time"].endswith("+00:00") for e in entries)


def test_logs_are_text_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-c", SCRIPT], stderr=terminal, stdout=subprocess.DEVNULL)
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(30) == 0
    finally:
        os.close(controller)
    lines = output.decode().splitlines()
    assert any(line.endswith("INFO    livebatch.worker: item 7 done") for line in lines), lines
    assert not any(line.startswith("{") for line in lines)
