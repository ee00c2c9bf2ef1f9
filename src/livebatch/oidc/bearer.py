"""An API call with an access token of the identity provider: verified against its keys, then answered for
the livebatch user of that identity, as found in the database (its role there: set at its last sign-in)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from livebatch.config import Settings
from livebatch.errors import Unauthorized, Unavailable
from livebatch.oidc import claims as claims_of
from livebatch.oidc.provider import IdentityProvider, ProviderUnavailable, TokenRejected
from livebatch.users import service
from livebatch.users.models import Role, User


async def identify(
    session: AsyncSession, provider: IdentityProvider, settings: Settings, token: str
) -> tuple[User, str]:
    """The user and role of a provider-signed bearer token; Unauthorized when it does not pass."""
    try:
        claims = await provider.verify(token, audience=provider.audience)
    except TokenRejected as exc:
        raise Unauthorized(str(exc)) from None
    except ProviderUnavailable:
        raise Unavailable("The identity provider's signing keys cannot be fetched right now; try again.") from None
    user = await service.get_user_by_identity(session, provider.issuer, str(claims["sub"]))
    if user is None:
        raise Unauthorized("No livebatch account for this identity yet: sign in once on the pages (/signin).")
    role = user.role
    # A token that carries roles speaks for now: one without the faculty role is not faculty, whatever the
    # database remembers from the last sign-in.
    values = claims_of.role_values(claims, settings.oidc_role_claim)
    if values is not None and claims_of.role(claims, settings.oidc_role_claim, settings.faculty_values) != role:
        role = Role.student.value if role == Role.faculty else role
    return user, role
