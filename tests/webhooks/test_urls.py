"""Which URLs a webhook may be sent to (webhooks/urls.py)."""

from __future__ import annotations

import pytest

from livebatch.webhooks.urls import UnsafeUrl, check_url, is_public_address, refused_addresses


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/hooks/livebatch",
        "http://hooks.example.com:8080/x?token=abc",
        "  https://example.org/padded  ",
        "https://93.184.215.14/hook",
        "https://[2606:4700:4700::1111]/hook",
    ],
)
def test_public_http_and_https_urls_are_accepted(url: str) -> None:
    assert check_url(url, allow_private=False) == url.strip()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/x", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("example.org/hook", "http:// or https://"),
        ("https:///path-only", "no host"),
        ("https://user:pw@example.org/x", "user name or password"),
        ("https://example.org:0/x", "port"),
        ("https://example.org:99999/x", "not valid"),
        ("https://exa mple.org/x", "spaces"),
        ("https://example.org/" + "x" * 2048, "longer than"),
        ("http://127.0.0.1:8000/hook", "not a public address"),
        ("http://10.0.0.7/hook", "not a public address"),
        ("http://192.168.1.1/hook", "not a public address"),
        ("http://172.16.0.1/hook", "not a public address"),
        ("http://169.254.169.254/latest/meta-data", "not a public address"),  # the cloud's metadata endpoint
        ("http://0.0.0.0/hook", "not a public address"),
        ("http://[::1]/hook", "not a public address"),
        ("http://[fe80::1]/hook", "not a public address"),
        ("http://[::ffff:127.0.0.1]/hook", "not a public address"),
        ("http://100.64.0.1/hook", "not a public address"),  # carrier-grade NAT
        ("http://localhost:8000/hook", "local name"),
        ("http://api.localhost/hook", "local name"),
        ("http://printer.local/hook", "local name"),
    ],
)
def test_unsafe_urls_are_refused_with_the_reason(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://localhost/hook", "http://10.0.0.7/x"])
def test_an_operator_may_allow_private_addresses(url: str) -> None:
    assert check_url(url, allow_private=True) == url
    with pytest.raises(UnsafeUrl, match="http:// or https://"):
        check_url("file:///etc/passwd", allow_private=True)  # the scheme rule holds regardless


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("::1", False),
        ("fe80::1%eth0", False),
        ("224.0.0.1", False),  # multicast
        ("::ffff:10.0.0.1", False),
        ("::ffff:93.184.215.14", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_a_name_that_resolves_to_a_private_address_is_refused_at_delivery() -> None:
    assert refused_addresses(["93.184.215.14", "10.0.0.5"], allow_private=False) == ["10.0.0.5"]
    assert refused_addresses(["93.184.215.14"], allow_private=False) == []
    assert refused_addresses(["10.0.0.5"], allow_private=True) == []
