"""Prepares the provider's database: its tables, the test users and the registered clients.

Usage: python idp_setup.py '<json>' with {"users": [{"username", "password", "email", "name", "groups"}],
"clients": [{"client_id", "client_secret", "redirect_uris"}]}. Run again, it updates what it made."""

import json
import sys

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def main(spec):
    call_command("migrate", verbosity=0, interactive=False)
    for entry in spec.get("users", []):
        user, _ = User.objects.get_or_create(username=entry["username"])
        user.email = entry["email"]
        first, _, last = entry["name"].partition(" ")
        user.first_name, user.last_name = first, last
        user.set_password(entry["password"])
        user.save()
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in entry.get("groups", [])])
    for entry in spec.get("clients", []):
        app = Application.objects.filter(client_id=entry["client_id"]).first() or Application(
            client_id=entry["client_id"]
        )
        app.name = entry["client_id"]
        app.client_type = Application.CLIENT_CONFIDENTIAL
        app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
        app.client_secret = entry["client_secret"]
        app.redirect_uris = " ".join(entry["redirect_uris"])
        app.algorithm = Application.RS256_ALGORITHM
        app.skip_authorization = True  # a school's own app: no consent screen
        app.save()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
