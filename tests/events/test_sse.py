from __future__ import annotations

import pytest

from livebatch.events.sse import comment, frame


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"event": "item.started", "data": '{"a":1}'}, b'event: item.started\ndata: {"a":1}\n\n'),
        ({"event": "x", "data": "{}", "event_id": 7}, b"id: 7\nevent: x\ndata: {}\n\n"),
        ({"event": "x", "data": "{}", "event_id": 0, "retry_ms": 2000}, b"id: 0\nretry: 2000\nevent: x\ndata: {}\n\n"),
        ({"event": "x", "data": "line 1\nline 2"}, b"event: x\ndata: line 1\ndata: line 2\n\n"),
        ({"event": "x", "data": ""}, b"event: x\ndata: \n\n"),
    ],
)
def test_frame(kwargs: dict[str, object], expected: bytes) -> None:
    assert frame(**kwargs) == expected  # type: ignore[arg-type]


def test_comment() -> None:
    assert comment("ping") == b": ping\n\n"
