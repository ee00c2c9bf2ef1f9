"""Which URLs a webhook may be sent to. Pure: the caller resolves names and passes the addresses.

Only http and https, with a host, without credentials in the URL. Unless the operator allows it
(`LIVEBATCH_WEBHOOK_ALLOW_PRIVATE`), no loopback, private, link-local, multicast or otherwise reserved address:
a URL naming one is refused when it is set, and a name that resolves to one is refused at delivery (so that a
webhook cannot be pointed at the machine's own services or the cloud's metadata endpoint).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".localdomain")


class UnsafeUrl(ValueError):
    pass


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _literal_address(host: str) -> str | None:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return host


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, stripped, if a webhook may be sent to it; else `UnsafeUrl` saying why."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"The URL is not valid: {exc}.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("The URL must start with http:// or https://.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("The URL must not hold a user name or password; deliveries are signed instead.")
    if port == 0:
        raise UnsafeUrl("The URL's port must not be 0.")
    if any(c.isspace() for c in url):
        raise UnsafeUrl("The URL must not contain spaces.")
    if not url.isprintable():  # a NUL would also fail in PostgreSQL, as a 500
        raise UnsafeUrl("The URL must not contain control characters.")
    if not allow_private:
        literal = _literal_address(host)
        if literal is not None and not is_public_address(literal):
            raise UnsafeUrl(f"{host} is not a public address (loopback, private or reserved).")
        if host.lower() == "localhost" or host.lower().endswith(_LOCAL_NAMES):
            raise UnsafeUrl(f"{host} is a local name.")
    return url


def refused_addresses(addresses: list[str], *, allow_private: bool) -> list[str]:
    """Of the addresses a host resolved to, those a webhook must not be sent to."""
    return [] if allow_private else [a for a in addresses if not is_public_address(a)]
