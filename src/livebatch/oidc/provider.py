"""The identity provider as livebatch sees it: its discovery document and signing keys, fetched over HTTP and
kept, and the verification of the JWTs it signs (ID tokens at sign-in, access tokens on the API).

Keys are fetched when first needed and kept; a token signed with a key id not in the set fetches the set
again (a provider rotating its key publishes the new one), at most every `LIVEBATCH_OIDC_JWKS_REFRESH_S`, so
a stream of tokens with made-up key ids cannot make livebatch hammer the provider. No request ever waits on a
fetch that the cache can answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from livebatch.config import Settings

# The algorithms of the provider's signatures livebatch accepts; HS* is livebatch's own tokens, and "none" never.
ALGORITHMS = ("RS256", "ES256")
# Keys are read again after this long even when every key id is known, so that a key the provider withdrew
# stops being trusted.
JWKS_MAX_AGE_S = 3600.0
FETCH_TIMEOUT_S = 10.0


class ProviderUnavailable(Exception):
    """The provider's discovery document or keys could not be fetched or read."""


class TokenRejected(Exception):
    """A token of the provider that does not pass; the message says why, for the 401."""


@dataclass(frozen=True, slots=True)
class Metadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]


class IdentityProvider:
    """One per process: the configured provider, its metadata and its keys."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        assert settings.oidc_issuer and settings.oidc_client_id, "OIDC is not configured"
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.audience = settings.oidc_audience or settings.oidc_client_id
        self.leeway_s = settings.oidc_leeway_s
        self.refresh_s = settings.oidc_jwks_refresh_s
        self._transport = transport
        self._metadata: Metadata | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how often the key set was read (a test counts it)

    async def _get_json(self, url: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, transport=self._transport) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
                response.raise_for_status()
                return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"{url}: {exc or type(exc).__name__}") from None

    async def metadata(self) -> Metadata:
        if self._metadata is None:
            doc = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if not isinstance(doc, dict):
                raise ProviderUnavailable("the discovery document is not a JSON object")
            # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was fetched for.
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise ProviderUnavailable(f"the discovery document names the issuer {doc.get('issuer')!r}")
            try:
                self._metadata = Metadata(
                    issuer=str(doc["issuer"]),
                    authorization_endpoint=str(doc["authorization_endpoint"]),
                    token_endpoint=str(doc["token_endpoint"]),
                    jwks_uri=str(doc["jwks_uri"]),
                    token_auth_methods=tuple(doc.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])),
                )
            except KeyError as exc:
                raise ProviderUnavailable(f"the discovery document lacks {exc.args[0]!r}") from None
        return self._metadata

    async def _refresh_keys(self, *, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._fetched_at is not None:
                age = now - self._fetched_at
                if age < self.refresh_s or (not force and age < JWKS_MAX_AGE_S):
                    return  # another request just fetched them, or they are fresh enough
            jwks_uri = (await self.metadata()).jwks_uri
            doc = await self._get_json(jwks_uri)
            try:
                key_set = jwt.PyJWKSet.from_dict(doc)
            except jwt.PyJWKSetError as exc:
                raise ProviderUnavailable(f"{jwks_uri}: {exc}") from None
            self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
            self._fetched_at = now
            self.fetches += 1

    async def signing_key(self, kid: str) -> jwt.PyJWK:
        if self._fetched_at is None or time.monotonic() - self._fetched_at >= JWKS_MAX_AGE_S:
            await self._refresh_keys(force=False)
        if kid not in self._keys:
            await self._refresh_keys(force=True)
        key = self._keys.get(kid)
        if key is None:
            raise TokenRejected("The token is signed with a key the identity provider does not publish.")
        return key

    def claims_unverified(self, token: str) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """The header and the claims of a token, unchecked: only to route it, never to trust it."""
        try:
            return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise TokenRejected("The token is malformed.") from None

    def is_ours(self, token: str) -> bool:
        """Whether a bearer token is for this provider to judge: it claims the provider's `iss`, or it is signed
        with a public-key algorithm (livebatch's own tokens are HMAC). It is verified after, never trusted here."""
        try:
            header, claims = self.claims_unverified(token)
        except TokenRejected:
            return False
        if isinstance(claims.get("iss"), str) and str(claims["iss"]).rstrip("/") == self.issuer:
            return True
        return str(header.get("alg", "")).upper().startswith(("RS", "ES", "PS", "ED"))

    async def verify(self, token: str, *, audience: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of a token the provider signed for `audience`, checked: signature (RS256/ES256, a published
        key), `iss`, `aud`, `exp`, `nbf`, `iat` with the leeway, and for an ID token its `nonce`."""
        header, unverified = self.claims_unverified(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise TokenRejected(f"The token is signed with {alg!r}; the identity provider's must be RS256 or ES256.")
        if not isinstance(unverified.get("iss"), str) or str(unverified["iss"]).rstrip("/") != self.issuer:
            raise TokenRejected("The token was issued by another identity provider.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("The token names no signing key (kid).")
        key = await self.signing_key(kid)
        if key.algorithm_name not in ALGORITHMS or key.algorithm_name != alg:
            raise TokenRejected(f"The token's algorithm {alg!r} does not match its key's.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=unverified["iss"],
                leeway=self.leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("The token has expired; sign in again.") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("The token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("The token is meant for another audience.") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("The token's signature does not match.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"The token lacks the {exc.claim!r} claim.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("The token is malformed.") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRejected("The ID token's nonce is not the one this sign-in sent.")
        # OpenID Connect Core 1.0, 3.1.3.7: with several audiences, `azp` must be this client.
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != audience:
            raise TokenRejected("The token is meant for another audience.")
        return claims
