"""`/signin?next=…` shows a command to copy into a shell, built from the query string: pasted, it must pass the
path as one argument and run nothing of it, whatever the path holds; a path with control characters or a
backslash (which browsers read as `/`, so `/\\evil.example` is another site) is not shown at all (the default
page is)."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import httpx

from livebatch.terminal import cli_command

DEFAULT = "/faculty/generate/batches"


def _command(page: str) -> str:
    found = re.search(r'<pre class="command"><code>(.*?)</code></pre>', page, flags=re.DOTALL)
    assert found is not None, page
    return html.unescape(found.group(1))


async def test_the_sign_in_command_passes_a_hostile_path_as_one_argument_and_runs_nothing(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    hostile = [
        f"/faculty/x';touch {marker};'",
        f"/faculty/$(touch {marker})",
        f"/faculty/`touch {marker}`",
        f'/faculty/x";touch {marker};"',
        f"/faculty/x'\\''; touch {marker} #",
    ]
    for path in hostile:
        response = await client.get("/signin", params={"next": path})
        assert response.status_code == 200
        command = _command(response.text)
        assert command.startswith(f"{cli_command()} login-link --next ")
        # Pasted into a shell, with the CLI swapped for printf: the arguments it would get, and nothing run.
        pasted = "printf '%s\\n'" + command.removeprefix(cli_command())
        done = subprocess.run(["bash", "-c", pasted], capture_output=True, text=True, timeout=10, check=True)
        shown = DEFAULT if "\\" in path else path
        assert done.stdout.splitlines() == ["login-link", "--next", shown], (path, command)
        assert not marker.exists(), f"pasting the command for {path!r} ran part of it"


async def test_a_path_with_control_characters_shows_the_default_command(client: httpx.AsyncClient) -> None:
    for path in ("/faculty/x\ntouch /tmp/pwned", "/faculty/x\rhidden", "/faculty/\x1b[2Jx"):
        response = await client.get("/signin", params={"next": path})
        assert response.status_code == 200
        assert _command(response.text) == f"{cli_command()} login-link --next '{DEFAULT}'"
