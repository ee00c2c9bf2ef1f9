"""Bad input and abuse, each answered with a clear 4xx and no side effect (tests/security)."""

from __future__ import annotations

from tests.api.conftest import parts as parts  # closed only once no attempt is running
from tests.cli.conftest import env_for as env_for  # the console script, configured by its environment
from tests.cli.conftest import run_cli as run_cli
from tests.oidc.conftest import identity_provider as identity_provider  # django-oauth-toolkit, in its own process
from tests.web.conftest import browser as browser  # Chromium, driven by Playwright (one per session)
from tests.web.conftest import private_server as private_server  # a server whose provider is the fake LLM
from tests.web.conftest import private_site as private_site
