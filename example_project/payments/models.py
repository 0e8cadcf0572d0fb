from __future__ import annotations

from django.conf import settings
from django.db import models

from idempotency.versioning import VersionedModel


class Currency(models.TextChoices):
    EUR = "EUR", "Euro"
    USD = "USD", "US dollar"
    GBP = "GBP", "Pound sterling"


class Status(models.TextChoices):
    PENDING = "pending", "pending"
    SUCCEEDED = "succeeded", "succeeded"  # paid: the processor's receipt arrived
    REFUNDED = "refunded", "refunded"


class Payment(VersionedModel):
    """A card payment: the kind of thing a client must never create twice.

    Versioned: a save made from an old read raises StaleObjectError (answered
    409 by the idempotent views) instead of overwriting a newer change. Its
    status moves pending -> succeeded -> refunded through transition().
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payments"
    )
    amount = models.PositiveIntegerField(help_text="In the currency's minor unit (cents).")
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    processor_reference = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.amount / 100:.2f} {self.currency} ({self.description or 'no description'})"

    @property
    def refunded(self) -> bool:
        return self.status == Status.REFUNDED


class Receipt(models.Model):
    """What the card processor's webhook records for a settled payment."""

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="receipts")
    processor_reference = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"receipt {self.processor_reference} for payment {self.payment_id}"
