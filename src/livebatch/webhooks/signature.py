"""The signature of a webhook delivery, as Stripe and GitHub sign theirs: pure, with no clock of its own.

    Livebatch-Signature: t=1767225600,v1=5f0c…(64 hex)

`t` is the Unix time of the attempt; `v1` is the hex HMAC-SHA256, keyed with the webhook's secret (the whole
string, `whsec_…`, as UTF-8), of `f"{t}."` followed by the raw request body. A receiver recomputes it over
the body bytes it received (before parsing them), compares in constant time, and refuses a `t` too far from
its own clock (replays). Several `v1` may come in one header; one that matches is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Livebatch-Signature"
SCHEME = "v1"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The header is missing or malformed, the signature does not match, or its time is out of bounds."""


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value for this body, sent at `timestamp`."""
    return f"t={timestamp},{SCHEME}={digest(secret, timestamp, body)}"


def parse(header: str) -> tuple[int, list[str]]:
    """The header's timestamp and its `v1` signatures (other schemes are ignored)."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed part {part.strip()!r} in {HEADER}")
        if name == "t":
            if not value.isdigit():
                raise SignatureError(f"{HEADER} has a timestamp that is not a number")
            timestamp = int(value)
        elif name == SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError(f"{HEADER} has no timestamp")
    if not signatures:
        raise SignatureError(f"{HEADER} has no {SCHEME} signature")
    return timestamp, signatures


def verify(secret: str, header: str, body: bytes, *, now: int, tolerance_s: int = DEFAULT_TOLERANCE_S) -> int:
    """Checks a received delivery; returns its timestamp, or raises `SignatureError` saying why not."""
    timestamp, signatures = parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"the timestamp is {now - timestamp}s away from now (tolerance {tolerance_s}s)")
    expected = digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, s) for s in signatures):
        raise SignatureError("no signature matches the body")
    return timestamp
