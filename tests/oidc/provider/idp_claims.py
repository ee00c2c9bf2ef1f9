"""What this provider says about a user: the standard claims, and `groups` (the Django groups), which is
where a school's provider carries roles. Access tokens are JWTs for the API audience `IDP_API_AUDIENCE`, signed
with the same key as ID tokens, as the large providers issue them."""

import json
import os
import time
import uuid

from jwcrypto import jwt
from oauth2_provider.models import Application
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.utils import jwk_from_pem


def _user_claims(user):
    return {
        "email": user.email,
        "email_verified": True,
        "name": user.get_full_name() or user.username,
        "groups": sorted(group.name for group in user.groups.all()),
    }


class Validator(OAuth2Validator):
    oidc_claim_scope = None  # every claim in every token: simpler for a test provider than per-scope claims

    def get_additional_claims(self, request):
        return _user_claims(request.user)


def jwt_access_token(request):
    key = jwk_from_pem(oauth2_settings.OIDC_RSA_PRIVATE_KEY)
    now = int(time.time())
    claims = {
        "iss": os.environ["IDP_ISSUER"],
        "aud": os.environ["IDP_API_AUDIENCE"],
        "sub": str(request.user.pk),
        "client_id": request.client_id,
        "scope": " ".join(request.scopes),
        "iat": now,
        "nbf": now,
        "exp": now + int(request.expires_in),
        "jti": str(uuid.uuid4()),
        **_user_claims(request.user),
    }
    header = {"typ": "at+jwt", "alg": Application.RS256_ALGORITHM, "kid": key.thumbprint()}
    token = jwt.JWT(header=json.dumps(header), claims=json.dumps(claims))
    token.make_signed_token(key)
    return token.serialize()
