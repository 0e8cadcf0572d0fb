from __future__ import annotations

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "example_project.payments"
    label = "payments"
    verbose_name = "Payments"
    default_auto_field = "django.db.models.BigAutoField"
