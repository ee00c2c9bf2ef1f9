"""Sign-in through the school's OpenID Connect provider: its keys and tokens (`provider`, `claims`), the
browser's code flow (`signin`) and its access tokens on the API (`bearer`)."""
