"""A real OpenID Connect provider for the tests: django-oauth-toolkit (tests/oidc/provider), in a process of its
own with its own SQLite file, on a free loopback port; and a person at its sign-in form, driven over HTTP.

Its users: `ada` (group `faculty`), `sam` (no group). Its clients: `livebatch` (the one livebatch is configured
with) and `other-app` (another application of the same school, whose tokens livebatch must refuse). Loopback
redirect URIs match on any port (RFC 8252), so one registration serves every livebatch the tests start.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import free_port

PROVIDER_DIR = Path(__file__).parent / "provider"
CLIENT_ID, CLIENT_SECRET = "livebatch", "livebatch-client-secret-0123456789"
OTHER_ID, OTHER_SECRET = "other-app", "other-app-client-secret-0123456789"
API_AUDIENCE = "livebatch-api"
REDIRECT_PATH = "/auth/oidc/callback"
PASSWORDS = {"ada": "ada-password-1", "sam": "sam-password-1"}
USERS = [
    {"username": "ada", "password": PASSWORDS["ada"], "email": "ada.idp@uni.example", "name": "Ada Lovelace",
     "groups": ["faculty"]},
    {"username": "sam", "password": PASSWORDS["sam"], "email": "sam.idp@uni.example", "name": "Sam Student",
     "groups": []},
]  # fmt: skip
CLIENTS = [
    {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [f"http://127.0.0.1{REDIRECT_PATH}"]},
    {"client_id": OTHER_ID, "client_secret": OTHER_SECRET, "redirect_uris": ["http://127.0.0.1/other/callback"]},
]


def new_signing_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


@dataclass
class IdentityProviderProcess:
    """The provider's process; `restart(signing_key=...)` rotates its key on the same issuer."""

    workdir: Path
    port: int = field(default_factory=free_port)
    signing_key: str = field(default_factory=new_signing_key)
    inactive_keys: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/o"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LIVEBATCH_", "DJANGO_"))}
        return env | {
            "PYTHONPATH": str(PROVIDER_DIR),
            "DJANGO_SETTINGS_MODULE": "idp_settings",
            "IDP_SECRET_KEY": "test-provider-" + "x" * 40,
            "IDP_DATABASE": str(self.workdir / "provider.sqlite3"),
            "IDP_ISSUER": self.issuer,
            "IDP_SIGNING_KEY": self.signing_key,
            "IDP_INACTIVE_KEYS": json.dumps(self.inactive_keys),
            "IDP_API_AUDIENCE": API_AUDIENCE,
        }

    def start(self, timeout: float = 60.0) -> IdentityProviderProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        spec = json.dumps({"users": USERS, "clients": CLIENTS})
        subprocess.run(
            [sys.executable, str(PROVIDER_DIR / "idp_setup.py"), spec],
            env=self._env(), cwd=PROVIDER_DIR, check=True, timeout=timeout, capture_output=True,
        )  # fmt: skip
        log = (self.workdir / "provider.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "idp_asgi:application", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self._env(), cwd=PROVIDER_DIR, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the identity provider exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"the identity provider is not up after {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def restart(self, *, signing_key: str, inactive_keys: list[str]) -> None:
        self.stop()
        self.signing_key, self.inactive_keys = signing_key, inactive_keys
        self.start()

    def log(self) -> str:
        path = self.workdir / "provider.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


async def sign_in_at_provider(authorize_url: str, username: str) -> str:
    """What a person does at the provider: follow livebatch's redirect, fill in the sign-in form, and come
    back. Returns the URL the provider sends the browser back to (livebatch's callback, with code and state)."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
        response = await browser.get(authorize_url)
        while response.status_code in (301, 302, 303) and not _is_callback(response):
            response = await browser.get(urljoin(str(response.url), response.headers["location"]))
        if not _is_callback(response):
            form = response.text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
            next_path = re.search(r'name="next" value="([^"]*)"', form)
            assert token and next_path, form[:2000]
            data = {
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password": PASSWORDS[username],
                "next": next_path.group(1).replace("&amp;", "&"),
            }
            origin = f"{response.url.scheme}://{response.url.netloc.decode()}"
            response = await browser.post(str(response.url), data=data, headers={"Origin": origin})
            while response.status_code in (301, 302, 303) and not _is_callback(response):
                response = await browser.get(urljoin(str(response.url), response.headers["location"]))
        assert _is_callback(response), (response.status_code, response.text[:2000])
        return response.headers["location"]


def _is_callback(response: httpx.Response) -> bool:
    location = response.headers.get("location", "")
    return response.status_code in (302, 303) and urlsplit(location).path in (REDIRECT_PATH, "/other/callback")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def tokens_for(provider: IdentityProviderProcess, username: str, *, client: str = CLIENT_ID) -> dict[str, Any]:
    """The provider's tokens for `username` through the code flow with PKCE, as the client `client` (as an API
    client of the school, or another of its applications, would get them)."""
    secret = CLIENT_SECRET if client == CLIENT_ID else OTHER_SECRET
    redirect = f"http://127.0.0.1:9{REDIRECT_PATH}" if client == CLIENT_ID else "http://127.0.0.1:9/other/callback"
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code", "client_id": client, "redirect_uri": redirect, "scope": "openid email profile",
        "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge, "code_challenge_method": "S256",
    }  # fmt: skip
    authorize = str(httpx.URL(f"{provider.issuer}/authorize/", params=params))
    back = await sign_in_at_provider(authorize, username)
    data = {"grant_type": "authorization_code", "code": query(back)["code"], "redirect_uri": redirect}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{provider.issuer}/token/", data=data | {"code_verifier": verifier}, auth=(client, secret)
        )
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    return tokens
