"""``python manage.py create_payment``: charge a card through the running API,
with the retrying client a real caller would use.

It talks HTTP to a server (``runserver`` in another terminal), like any
client: ``idempotency.client.IdempotentClient`` sends one Idempotency-Key,
retries connection errors, timeouts, 409, 429, 502, 503 and 504 with that key,
and the server makes sure the payment is created once. The key is printed, so
that a run that gave up can be repeated with ``--key`` and get the payment
the first run created, never a second one.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser

from example_project.payments.management.commands.demo_setup import DEMO_TOKEN
from example_project.payments.models import Currency
from idempotency.client import IdempotentClient, new_key


class Command(BaseCommand):
    help = "Create a payment against the running example server with IdempotentClient."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
        parser.add_argument("--token", default=DEMO_TOKEN, help="API token (see demo_setup)")
        parser.add_argument("--amount", type=int, required=True, help="in cents: 1999")
        parser.add_argument("--currency", default=Currency.EUR, choices=Currency.values)
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--key", help="the Idempotency-Key of an earlier run to repeat (default: a new one)"
        )
        parser.add_argument("--retries", type=int, default=3)
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds per attempt")

    def handle(self, *args: Any, **options: Any) -> None:
        key = options["key"] or new_key()
        self.stdout.write(f"Idempotency-Key: {key}")
        payload = {
            "amount": options["amount"],
            "currency": options["currency"],
            "description": options["description"],
        }
        try:
            with IdempotentClient(
                base_url=options["url"],
                retries=options["retries"],
                timeout=options["timeout"],
                headers={"Authorization": f"Token {options['token']}"},
            ) as client:
                response = client.post("/api/payments/", json=payload, idempotency_key=key)
        except httpx.HTTPError as error:
            # The payment may or may not exist: only the same key can tell.
            raise CommandError(
                f"{error!r} on every attempt; run the command again with --key {key}."
            ) from error
        if response.status_code != 201:
            raise CommandError(f"HTTP {response.status_code}: {response.text}")
        payment = response.json()
        amount = f"{payment['amount'] / 100:.2f} {payment['currency']}"
        if response.idempotent_replayed:
            self.stdout.write(
                f"Replayed: the server had already created payment {payment['id']} "
                f"({amount}) for this key; nothing was charged again."
            )
        else:
            self.stdout.write(f"Created payment {payment['id']}: {amount}, {payment['status']}.")
