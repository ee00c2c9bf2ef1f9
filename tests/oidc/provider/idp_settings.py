"""Django settings of the identity provider the OIDC tests sign in with: django-oauth-toolkit, a maintained
OAuth 2 / OpenID Connect provider, with its own SQLite file. Everything that varies per run (the database, the
issuer, the signing keys) comes from the environment the test fixture starts it with."""

import json
import os

BASE = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = os.environ["IDP_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "idp_urls"
LOGIN_URL = "/accounts/login/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(BASE, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["IDP_DATABASE"]}}
# Fast hashing: the test users' passwords protect nothing.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

OAUTH2_PROVIDER = {
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": os.environ["IDP_ISSUER"],
    "OIDC_RSA_PRIVATE_KEY": os.environ["IDP_SIGNING_KEY"],
    # Keys still published in the JWKS after a rotation, so that tokens signed before it stay verifiable.
    "OIDC_RSA_PRIVATE_KEYS_INACTIVE": json.loads(os.environ.get("IDP_INACTIVE_KEYS", "[]")),
    "PKCE_REQUIRED": True,
    "SCOPES": {"openid": "OpenID Connect", "profile": "Your name", "email": "Your email address"},
    "OAUTH2_VALIDATOR_CLASS": "idp_claims.Validator",
    # The provider's access tokens are JWTs (as Entra ID's, Okta's or Keycloak's are), signed with its key.
    "ACCESS_TOKEN_GENERATOR": "idp_claims.jwt_access_token",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "ACCESS_TOKEN_EXPIRE_SECONDS": 600,
}
