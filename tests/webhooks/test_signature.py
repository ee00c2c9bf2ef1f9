"""The webhook signature scheme (webhooks/signature.py): a known vector, then every way a check fails."""

from __future__ import annotations

import pytest

from livebatch.webhooks.signature import SignatureError, new_secret, parse, sign, verify

SECRET = "whsec_test"
T = 1_767_225_600
BODY = b'{"id":"d1"}'
# printf '1767225600.{"id":"d1"}' | openssl dgst -sha256 -hmac whsec_test
V1 = "35a088a69a10894f3a183c40b865f2cad97d009df0cb9254b4aa6fd199dadaf6"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_as_openssl_computes_it() -> None:
    assert sign(SECRET, T, BODY) == f"t={T},v1={V1}"
    assert verify(SECRET, f"t={T},v1={V1}", BODY, now=T) == T


@pytest.mark.parametrize(
    ("header", "body", "now", "why"),
    [
        (f"t={T},v1={V1}", b'{"id":"d2"}', T, "no signature matches"),  # the body was changed
        (f"t={T + 1},v1={V1}", BODY, T, "no signature matches"),  # the timestamp was changed
        (f"t={T},v1={'0' * 64}", BODY, T, "no signature matches"),
        (f"t={T},v1={V1}", BODY, T + 301, "away from now"),  # a replay, five minutes later
        (f"t={T},v1={V1}", BODY, T - 301, "away from now"),  # a clock far behind
        (f"v1={V1}", BODY, T, "no timestamp"),
        (f"t={T}", BODY, T, "no v1 signature"),
        (f"t={T},v0={V1}", BODY, T, "no v1 signature"),  # another scheme is not ours
        (f"t=soon,v1={V1}", BODY, T, "not a number"),
        ("", BODY, T, "malformed"),
        (V1, BODY, T, "malformed"),
    ],
)
def test_a_delivery_that_does_not_check_out_is_refused_with_the_reason(
    header: str, body: bytes, now: int, why: str
) -> None:
    with pytest.raises(SignatureError, match=why):
        verify(SECRET, header, body, now=now)


def test_another_secret_does_not_verify_and_any_of_several_signatures_does() -> None:
    with pytest.raises(SignatureError):
        verify("whsec_other", sign(SECRET, T, BODY), BODY, now=T)
    # During a rotation a sender may sign with the old and the new secret; one match is enough.
    both = f"t={T},v1={'f' * 64},v1={V1}"
    assert parse(both) == (T, ["f" * 64, V1])
    assert verify(SECRET, both, BODY, now=T + 299) == T


def test_secrets_are_prefixed_long_and_never_repeat() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(s.startswith("whsec_") and len(s) >= 40 for s in secrets)
