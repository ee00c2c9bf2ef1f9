"""Server-Sent Events framing, pure: no I/O, so a frame is encoded once and sent to every stream."""

from __future__ import annotations

import re

# The line ends of the SSE grammar, and only they: `str.splitlines` also splits on U+2028, U+0085 and others,
# which a browser keeps inside a field, so a payload split there would arrive with a newline in it.
_LINE_END = re.compile(r"\r\n|\r|\n")


def frame(event: str, data: str, *, event_id: int | None = None, retry_ms: int | None = None) -> bytes:
    """One SSE message. `data` may hold newlines; each line becomes its own `data:` field."""
    lines: list[str] = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in _LINE_END.split(data.removesuffix("\n")))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()
