"""The identity provider, one per test session (starting it migrates its database: seconds on a loaded
machine); a test that rotates its key restores it. Chromium comes from the pages' fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc.support import IdentityProviderProcess
from tests.web.conftest import browser as browser  # Chromium, driven by Playwright (one per session)


@pytest.fixture(scope="session")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityProviderProcess]:
    provider = IdentityProviderProcess(tmp_path_factory.mktemp("identity-provider")).start()
    try:
        yield provider
    finally:
        provider.stop()
