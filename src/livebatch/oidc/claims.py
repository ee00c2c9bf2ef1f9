"""What livebatch reads from the provider's tokens: who (email, name) and whether they are faculty. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from livebatch.users.models import Role

# Where providers put roles when nobody says otherwise: Entra ID and Keycloak clients send `roles`,
# Okta and Google Workspace (through groups) send `groups`.
DEFAULT_ROLE_CLAIMS = ("roles", "groups")


@dataclass(frozen=True, slots=True)
class Profile:
    email: str | None
    email_verified: bool
    name: str | None


def profile(claims: Mapping[str, Any]) -> Profile:
    email = claims.get("email")
    name = claims.get("name") or " ".join(
        str(claims[part]) for part in ("given_name", "family_name") if isinstance(claims.get(part), str)
    )
    return Profile(
        email=email if isinstance(email, str) and email else None,
        # Some providers send the string "true" (Cognito did); anything else is not a verified address.
        email_verified=claims.get("email_verified") in (True, "true"),
        name=str(name)[:200] if name else None,
    )


def role_values(claims: Mapping[str, Any], claim: str | None) -> list[str] | None:
    """The values of the role claim (a string or a list of strings), or None when the token has none."""
    for name in (claim,) if claim else DEFAULT_ROLE_CLAIMS:
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [str(v) for v in value]
    return None


def role(claims: Mapping[str, Any], claim: str | None, faculty_values: Iterable[str]) -> Role:
    values = role_values(claims, claim) or []
    return Role.faculty if set(values) & set(faculty_values) else Role.student
