from __future__ import annotations

from django.db import models


class Charge(models.Model):
    """A side effect the test views write, so tests can count executions."""

    amount = models.IntegerField()
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
