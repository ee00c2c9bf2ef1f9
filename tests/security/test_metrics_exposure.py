"""`/metrics` tells whoever asks how busy the service is and how many batches run: it is served only when an
operator turns it on (`LIVEBATCH_SERVE_METRICS`), and the shipped nginx front never passes it through."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from livebatch.app import create_app
from livebatch.config import Settings
from livebatch.parts import Parts
from tests.conftest import SettingsFactory
from tests.stream.support import assert_error

NGINX = Path(__file__).parents[2] / "deploy" / "nginx.conf"


async def _get(settings: Settings, path: str) -> httpx.Response:
    parts = Parts(settings, worker=False)
    await parts.start()
    try:
        app = create_app(parts=parts)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
            return await http.get(path)
    finally:
        await parts.aclose()


async def test_metrics_are_not_served_unless_turned_on(make_settings: SettingsFactory) -> None:
    assert Settings.model_fields["serve_metrics"].default is False
    off = await _get(make_settings(serve_metrics=False), "/metrics")
    assert_error(off, 404, "NOT_FOUND")
    assert "livebatch_" not in off.text
    on = await _get(make_settings(serve_metrics=True), "/metrics")
    assert on.status_code == 200 and "livebatch_open_streams" in on.text


def test_the_shipped_nginx_front_does_not_pass_metrics_through() -> None:
    text = NGINX.read_text()
    block = re.search(r"location\s+=\s+/metrics\s*\{([^}]*)\}", text)
    assert block is not None, "deploy/nginx.conf must answer /metrics itself"
    assert re.search(r"\breturn\s+404\s*;|\bdeny\s+all\s*;", block.group(1))
    assert "proxy_pass" not in block.group(1)
