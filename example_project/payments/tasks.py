"""A Celery task that is safe to deliver twice: the payment receipt email.

Keyed by the payment (a business key, so a duplicate publish is covered as
well as a redelivery); the email goes out on commit, that is once, together
with the stored result. docs/tasks.md explains the recipe.
"""

from __future__ import annotations

from celery import shared_task
from django.core.mail import send_mail
from django.db import transaction

from example_project.payments.models import Payment
from idempotency import idempotent_function


@shared_task(bind=True, acks_late=True, max_retries=10)
@idempotent_function(key="payment_id", scope="receipts", on_in_progress="retry")
def send_payment_receipt(self: object, payment_id: int) -> dict[str, object]:
    payment = Payment.objects.select_related("owner").get(pk=payment_id)
    recipient = payment.owner.email or f"{payment.owner.get_username()}@example.com"
    # After the commit of this run's writes and its stored result: a run that
    # fails or loses its lock sends nothing, and a replay sends nothing again.
    transaction.on_commit(
        lambda: send_mail(
            f"Your receipt for {payment}",
            f"We received {payment}. Reference: {payment.processor_reference or payment.pk}.",
            "payments@example.com",
            [recipient],
        )
    )
    return {"payment": payment.pk, "sent_to": recipient}
