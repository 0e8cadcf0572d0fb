from __future__ import annotations

from django.db import models


class Order(models.Model):
    """What the benchmark's create endpoint inserts, one row per request."""

    amount = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
