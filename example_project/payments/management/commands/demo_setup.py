"""``python manage.py demo_setup``: the demo user and its API token.

Safe to run again: it creates the superuser ``demo`` (password ``demo``) if
there is none, and makes its token ``DEMO_TOKEN`` whatever it was, so that the
README's curl examples work as written.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
# Fixed so that the README can show it; never use a known token outside a demo.
DEMO_TOKEN = "demo-token-for-the-example-project-only"


class Command(BaseCommand):
    help = "Create the demo superuser demo/demo and print its API token."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "demo_setup creates a superuser with a known password and token; "
                "it only runs with DEBUG on."
            )
        user, created = get_user_model().objects.get_or_create(
            username=DEMO_USERNAME,
            defaults={"is_staff": True, "is_superuser": True, "email": "demo@example.com"},
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        Token.objects.filter(user=user).exclude(key=DEMO_TOKEN).delete()
        Token.objects.get_or_create(key=DEMO_TOKEN, defaults={"user": user})
        if options["verbosity"] >= 1:
            if created:
                self.stdout.write(
                    f"Created superuser {DEMO_USERNAME!r} with password {DEMO_PASSWORD!r} "
                    "(the admin is at /admin/)."
                )
            else:
                self.stdout.write(f"Superuser {DEMO_USERNAME!r} already exists.")
        self.stdout.write(f"API token: {DEMO_TOKEN}")
