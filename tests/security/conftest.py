"""Bad input and abuse, each answered with a clear 4xx and no side effect (tests/security)."""

from __future__ import annotations

from tests.api.conftest import runtime as runtime  # closed only once no attempt is running
