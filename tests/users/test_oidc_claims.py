"""What livebatch reads from an identity provider's claims, and the settings that say where to read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from livebatch.config import Settings
from livebatch.oidc.claims import profile, role
from livebatch.users.models import Role


@pytest.mark.parametrize(
    ("claims", "claim", "values", "expected"),
    [
        ({"roles": ["faculty"]}, None, ("faculty",), Role.faculty),  # Entra ID app roles, Keycloak mappers
        ({"groups": ["staff", "faculty"]}, None, ("faculty",), Role.faculty),  # Okta, Google groups
        ({"roles": ["student"], "groups": ["faculty"]}, None, ("faculty",), Role.student),  # `roles` speaks first
        ({"groups": "faculty staff"}, None, ("faculty",), Role.faculty),  # a space-separated string
        ({"edu_role": ["Teacher"]}, "edu_role", ("Teacher", "Lecturer"), Role.faculty),
        ({"roles": ["faculty"]}, "edu_role", ("faculty",), Role.student),  # the configured claim only
        ({"roles": ["Faculty"]}, None, ("faculty",), Role.student),  # values match exactly
        ({}, None, ("faculty",), Role.student),
        ({"roles": 7}, None, ("faculty",), Role.student),
    ],
)
def test_the_role_claim_makes_faculty_only_with_a_configured_value(
    claims: dict[str, Any], claim: str | None, values: tuple[str, ...], expected: Role
) -> None:
    assert role(claims, claim, values) == expected


def test_the_profile_takes_the_email_the_name_and_only_a_real_verification() -> None:
    assert profile({"email": "a@x.edu", "email_verified": True, "name": "Ada L"}) == profile(
        {"email": "a@x.edu", "email_verified": "true", "given_name": "Ada", "family_name": "L"}
    )
    unverified = profile({"email": "a@x.edu", "email_verified": "yes"})
    assert unverified.email_verified is False and unverified.name is None
    assert profile({"email": ""}).email is None


def test_oidc_settings_go_together_and_read_the_faculty_values_from_text() -> None:
    base: dict[str, Any] = {"data_dir": Path("/nonexistent")}
    with pytest.raises(ValidationError, match="go together"):
        Settings(**base, oidc_issuer="https://idp.example.edu")
    with pytest.raises(ValidationError, match="http"):
        Settings(**base, oidc_issuer="idp.example.edu", oidc_client_id="lb")
    settings = Settings(
        **base, oidc_issuer="https://idp.example.edu", oidc_client_id="lb", oidc_faculty_values="faculty, Teacher ,"
    )
    assert settings.oidc_enabled and settings.faculty_values == ("faculty", "Teacher")
    assert not Settings(**base).oidc_enabled  # the embedded default: one-time links only
