"""`livebatch run-batch` in a real terminal of 80 columns (a pseudo-terminal with that window size, no
COLUMNS variable): the progress line keeps its bar and every count instead of "generat… ET…"."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Callable

from rich.cells import cell_len

from tests.cli.conftest import LIVEBATCH, SUMMARY_LINE

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], env: dict[str, str], *, columns: int, rows: int = 24, timeout: float = 120) -> str:
    """What the command wrote to a terminal `columns` wide, escape sequences and all."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    process = subprocess.Popen(
        [LIVEBATCH, *args], stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal's other end closed: the command is done
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(leader)
    return output.decode(errors="replace")


def test_the_progress_line_fits_80_columns_with_its_bar_and_counts(env_for: Callable[..., dict[str, str]]) -> None:
    env = env_for(LIVEBATCH_OFFLINE_LATENCY_MS="150", TERM="xterm-256color")
    env.pop("COLUMNS")  # the terminal's own width, as a person's shell has it
    output = run_in_terminal(["run-batch", "--count", "12"], env, columns=80)
    frames = [line for line in re.split(r"[\r\n]+", ANSI.sub("", output)) if line.startswith("generating")]
    assert frames, output[-2000:]
    for line in frames:
        assert cell_len(line) <= 80, line
        assert "…" not in line, f"cut short: {line!r}"
        assert "━" in line, f"no bar: {line!r}"
    counted = [line for line in frames if "ETA" in line]  # every line after the first, drawn before any count
    assert len(counted) >= len(frames) - 1
    for line in counted:
        assert re.search(r"━ \d+/12 \( *\d+%\) ✓\d+ ◔\d+ ✕\d+ ○\d+ ETA \S+ +\d:\d\d:\d\d$", line), line
    assert re.search(r"12/12 \(100%\).*✓12 ◔0 ✕0 ○0 ETA —", frames[-1]), frames[-1]
    summary = SUMMARY_LINE.search(ANSI.sub("", output).replace("\r", ""))
    assert summary is not None and summary["status"] == "completed", output[-2000:]
