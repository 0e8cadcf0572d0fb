from __future__ import annotations

from django.conf import settings
from django.db import models


class Currency(models.TextChoices):
    EUR = "EUR", "Euro"
    USD = "USD", "US dollar"
    GBP = "GBP", "Pound sterling"


class Status(models.TextChoices):
    PENDING = "pending", "pending"
    SUCCEEDED = "succeeded", "succeeded"


class Payment(models.Model):
    """A card payment: the kind of thing a client must never create twice."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="payments"
    )
    amount = models.PositiveIntegerField(help_text="In the currency's minor unit (cents).")
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.EUR)
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    processor_reference = models.CharField(max_length=64, blank=True)
    refunded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.amount / 100:.2f} {self.currency} ({self.description or 'no description'})"


class Receipt(models.Model):
    """What the card processor's webhook records for a settled payment."""

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="receipts")
    processor_reference = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"receipt {self.processor_reference} for payment {self.payment_id}"
