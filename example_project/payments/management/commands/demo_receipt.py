"""``python manage.py demo_receipt``: deliver one receipt task twice, one email goes out.

Without ``--broker`` the task runs here, twice, the way a worker runs it
(``Task.apply``): the first run sends the email (printed by the console email
backend), the second returns the stored result and sends nothing. With
``--broker`` it publishes the task twice to a running worker
(``celery -A example_project worker -l INFO``) and waits for both results.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from example_project.payments.management.commands.demo_setup import DEMO_USERNAME
from example_project.payments.models import Payment
from example_project.payments.tasks import send_payment_receipt


class Command(BaseCommand):
    help = "Deliver the payment receipt task twice: one email, the same result twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--payment", type=int, help="a payment id (default: a new one)")
        parser.add_argument(
            "--broker", action="store_true", help="publish to a running worker instead"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        payment_id = options["payment"] or self._new_payment().pk
        results = []
        for delivery in ("first", "second"):
            if options["broker"]:
                result = send_payment_receipt.delay(payment_id).get(timeout=60)
            else:
                result = send_payment_receipt.apply(args=(payment_id,)).get()
            results.append(result)
            self.stdout.write(f"{delivery} delivery: {result}")
        self.stdout.write(
            "the same result twice; one email" if results[0] == results[1] else "results differ"
        )

    def _new_payment(self) -> Payment:
        owner, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        return Payment.objects.create(owner=owner, amount=1250, description="Receipt demo")
